"""The ``nenqa`` command line: ingest, search, serve; ``nenqa docs`` and ``nenqa eval`` live in
``cli.docs`` and ``cli.evaluate``.

Heavy imports (torch, chromadb) happen inside the commands so ``nenqa --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.console import console, fail, out
from cli.docs import NO_TRANSLATE_HELP, docs_app, parse_or_fail, render_or_report, write_documents
from cli.evaluate import eval_app
from cli.local_llm import start_local_llm
from nenqa.settings import Settings, get_settings

app = typer.Typer(
    help="nenqa: evidence-grounded answers about NEN drug trials.", no_args_is_help=True
)
app.add_typer(eval_app, name="eval")
app.add_typer(docs_app, name="docs")


@app.command()
def ingest(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Review .md / trials .jsonl files or folders; default: the corpus."),
    ] = None,
    rebuild: Annotated[
        bool, typer.Option(help="Drop the index and embed everything again.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    no_translate: Annotated[bool, typer.Option("--no-translate", help=NO_TRANSLATE_HELP)] = False,
) -> None:
    """Parse, chunk, embed and index the corpus; unchanged chunks are not rewritten.

    Each source is recorded in the document registry, as `nenqa docs add` does. Each quotable
    unit is indexed with its rendering in the other language (see `nenqa docs add`).
    """
    import time

    from ingest.pipeline import default_sources, summarize

    settings = get_settings()
    started = time.perf_counter()
    corpus = parse_or_fail(settings, paths or default_sources(settings.data_dir))
    translation = render_or_report(settings, corpus, translate=not no_translate, quiet=quiet)
    # The corpus folder may move (a new checkout, a read-only copy): its records follow it.
    changes = write_documents(
        settings, corpus, reembed=False, rebuild=rebuild, quiet=quiet, relocate=True
    )
    counts = tuple(
        sum(getattr(c, key) for c in changes) for key in ("added", "removed", "unchanged")
    )
    summary = summarize(corpus, counts, started)
    table = Table(title="ingest summary")
    row = {**summary.as_dict()}
    seconds = row.pop("seconds")
    row |= {
        "rendered (data/cache/model)": (
            f"{translation.shipped}/{translation.cached}/{translation.translated}"
        ),
        "failed checks": translation.failed_checks,
        "missing": translation.missing,
        "seconds": seconds,
    }
    for key in row:
        table.add_column(key, justify="right")
    table.add_row(*(str(v) for v in row.values()))
    console.print(table)


@app.command()
def search(
    question: Annotated[
        str | None, typer.Argument(help="A question in Chinese or English.")
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=50, help="How many results.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="Read one question per line on stdin, print JSON lines.")
    ] = False,
) -> None:
    """Search the evidence; with no question, an interactive prompt."""
    searcher = _searcher(get_settings())
    if jsonl:
        for line in sys.stdin:
            if line.strip():
                _print_json(line.strip(), searcher.search(line.strip(), k))
        return
    if question is None:
        _interactive(searcher, k)
        return
    if not question.strip():
        fail("the question is empty", 2)
    results = searcher.search(question, k)
    if as_json:
        _print_json(question, results)
    else:
        _print_table(question, results)


@app.command("prepare-model")
def prepare_model(force: Annotated[bool, typer.Option(help="Convert again.")] = False) -> None:
    """Prepare the offline default embedding model (dequantized multilingual-e5-small)."""
    from nenqa.models.embedding import prepare_default_model

    path = prepare_default_model(get_settings().model_cache_dir, force=force)
    out.print(str(path))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: NENQA_HOST).")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port (default: NENQA_PORT, 8000).")
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(help="Default answer mode: extractive or llm (default: NENQA_ANSWER_MODE)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes, forked after the model and index load once; more than 1 "
            "needs NENQA_CHROMA_URL.",
        ),
    ] = 1,
    llm: Annotated[
        str | None,
        typer.Option(
            "--llm",
            help="'local': start the prepared local model (make llm) on a free loopback port, "
            "use it for the llm mode, and stop it on exit.",
        ),
    ] = None,
) -> None:
    """Start the chat API (FastAPI + uvicorn); the index and model load once at start-up.

    With --workers N the service loads once, then N workers forked from this process share it
    and one port; Ctrl-C or SIGTERM stops them all, and a worker that dies is replaced.
    """
    import uvicorn

    from server.app import create_app

    settings = get_settings()
    if mode is not None:
        if mode not in {"extractive", "llm"}:
            fail(f"unknown answer mode {mode!r}; use extractive or llm", 2)
        settings = settings.model_copy(update={"answer_mode": mode})
    if llm not in {None, "local"}:
        fail(f"unknown --llm {llm!r}; use local (or set NENQA_LLM_BASE_URL instead)", 2)
    host = host or settings.host
    port = settings.port if port is None else port
    stack = ExitStack()  # stops the local LLM when uvicorn returns (Ctrl-C, SIGTERM)
    if workers == 1:
        with stack:
            if not settings.chroma_url:  # no other process may write it meanwhile
                hold_embedded_index(stack, settings)
            if llm == "local":
                settings = start_local_llm(stack, settings)
            uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
        return
    if not settings.chroma_url:
        fail(
            f"--workers {workers} needs a Chroma server: the embedded index can be opened by one "
            "process only. Start `chroma run --path DIR --host 127.0.0.1 --port 8001`, set "
            "NENQA_CHROMA_URL=http://127.0.0.1:8001 and ingest into it, or use --workers 1.",
            2,
        )
    from server.prefork import serve_workers

    with stack:
        if llm == "local":
            settings = start_local_llm(stack, settings)
        # The service loads once here; the workers are forked from this process and share it.
        code = serve_workers(settings, workers=workers, host=host, port=port, log_level=log_level)
    if code:
        raise typer.Exit(code)


def hold_embedded_index(stack: ExitStack, settings: Settings) -> None:
    """Hold the embedded index for this server's lifetime, or end with the way out: for
    writing when its admin API can change it, else shared with other servers that only read."""
    from retriever.generation import IndexBusyError, writer_lock

    holder = "a running `nenqa serve`"
    shared = not settings.admin_keys
    try:
        stack.enter_context(writer_lock(settings.index_dir, holder, shared=shared))
    except IndexBusyError as error:
        fail(str(error))


def _searcher(settings: Settings):
    from retriever.search import load_searcher
    from retriever.store import IndexUnavailableError

    try:
        return load_searcher(settings)
    except IndexUnavailableError as error:
        fail(str(error))


def _print_json(question: str, results) -> None:
    record = {"question": question, "results": [e.as_json() for e in results]}
    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _print_table(question: str, results) -> None:
    table = Table(title=question, show_lines=True)
    for column in ("#", "kind", "section", "refs", "score", "text"):
        table.add_column(column, overflow="fold")
    for rank, evidence in enumerate(results, start=1):
        chunk = evidence.chunk
        table.add_row(
            str(rank),
            chunk.kind,
            chunk.section,
            ",".join(map(str, chunk.refs)),
            f"{evidence.score:.4f}",
            chunk.text,
        )
    out.print(table)


def _interactive(searcher, k: int) -> None:
    console.print("Ask about the review (empty line or Ctrl-D to quit).")
    while True:
        try:
            question = input("nenqa> ").strip()
        except EOFError:
            break
        if not question:
            break
        _print_table(question, searcher.search(question, k))


if __name__ == "__main__":
    app()
