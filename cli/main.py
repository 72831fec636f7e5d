"""The ``nenqa`` command line: ingest, search, eval, serve.

Heavy imports (torch, chromadb) happen inside the commands so ``nenqa --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nenqa.settings import Settings, get_settings

app = typer.Typer(
    help="nenqa: evidence-grounded answers about NEN drug trials.", no_args_is_help=True
)
eval_app = typer.Typer(help="Score retrieval and answers on eval/qa.jsonl.")
app.add_typer(eval_app, name="eval")
docs_app = typer.Typer(
    help="Manage the indexed documents: list, add, remove, reindex.", no_args_is_help=True
)
app.add_typer(docs_app, name="docs")

console = Console(stderr=True)
out = Console()


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


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
) -> None:
    """Parse, chunk, embed and index the corpus; unchanged chunks are not rewritten.

    Each source is recorded in the document registry, as `nenqa docs add` does.
    """
    import time

    from ingest.pipeline import default_sources, summarize

    settings = get_settings()
    started = time.perf_counter()
    corpus = _docs_parse(settings, paths or default_sources(settings.data_dir))
    # The corpus folder may move (a new checkout, a read-only copy): its records follow it.
    changes = _docs_write(
        settings, corpus, reembed=False, rebuild=rebuild, quiet=quiet, relocate=True
    )
    counts = tuple(
        sum(getattr(c, key) for c in changes) for key in ("added", "removed", "unchanged")
    )
    summary = summarize(corpus, counts, started)
    table = Table(title="ingest summary")
    for key in ("documents", "chunks", "references", "trials", "added", "removed", "unchanged"):
        table.add_column(key, justify="right")
    table.add_column("seconds", justify="right")
    table.add_row(*(str(v) for v in summary.as_dict().values()))
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
        _fail("the question is empty", 2)
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
        typer.Option(min=1, max=64, help="Worker processes; more than 1 needs NENQA_CHROMA_URL."),
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
    """Start the chat API (FastAPI + uvicorn); the index and model load once at start-up."""
    import os
    from contextlib import ExitStack

    import uvicorn

    from server.app import create_app

    settings = get_settings()
    if mode is not None:
        if mode not in {"extractive", "llm"}:
            _fail(f"unknown answer mode {mode!r}; use extractive or llm", 2)
        settings = settings.model_copy(update={"answer_mode": mode})
    if llm not in {None, "local"}:
        _fail(f"unknown --llm {llm!r}; use local (or set NENQA_LLM_BASE_URL instead)", 2)
    host = host or settings.host
    port = settings.port if port is None else port
    stack = ExitStack()  # stops the local LLM when uvicorn returns (Ctrl-C, SIGTERM)
    if workers == 1:
        with stack:
            if llm == "local":
                settings = _start_local_llm(stack, settings)
            uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
        return
    if not settings.chroma_url:
        _fail(
            f"--workers {workers} needs a Chroma server: the embedded index can be opened by one "
            "process only. Start `chroma run --path DIR --host 127.0.0.1 --port 8001`, set "
            "NENQA_CHROMA_URL=http://127.0.0.1:8001 and ingest into it, or use --workers 1.",
            2,
        )
    with stack:
        if llm == "local":
            settings = _start_local_llm(stack, settings)
            os.environ["NENQA_LLM_BASE_URL"] = str(settings.llm_base_url)
            os.environ["NENQA_LLM_MODEL"] = settings.llm_model
            os.environ["NENQA_LLM_MAX_TOKENS"] = str(settings.llm_max_tokens)
            os.environ["NENQA_LLM_TIMEOUT_S"] = str(settings.llm_timeout_s)
        # Each worker builds its app from the environment, so the overrides travel through it.
        os.environ["NENQA_ANSWER_MODE"] = settings.answer_mode
        uvicorn.run(
            "server.app:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
        )


def _start_local_llm(stack, settings: Settings, *, sigterm_exit_code: int = 0) -> Settings:
    """Start the prepared local model until ``stack`` closes; the settings that point at it."""
    import signal

    from nenqa.models.llm_prep import LocalLLMError
    from nenqa.models.llm_server import local_llm

    # uvicorn re-raises a SIGTERM after its graceful shutdown; exiting through SystemExit
    # (instead of the default handler's immediate death) lets ``stack`` stop the model.
    # ``nenqa serve`` stopped this way exits 0; a terminated eval exits 143.
    def exit_through_stack(signum: int, frame: object) -> None:
        raise SystemExit(sigterm_exit_code)

    signal.signal(signal.SIGTERM, exit_through_stack)
    console.print("starting the local LLM (llama.cpp on 127.0.0.1; up to a minute) ...")
    try:
        server, local = stack.enter_context(local_llm(settings))
    except LocalLLMError as error:
        _fail(str(error))
    console.print(
        f"local LLM {local.llm_model} at {server.base_url} (pid {server.pid}; "
        f"log {server.log_path})",
        highlight=False,
        soft_wrap=True,
    )
    return local


@eval_app.callback(invoke_without_command=True)
def eval_all(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(help="Evaluate a running deployment (e.g. http://127.0.0.1:8000)."),
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="Answer mode to ask for (extractive, llm).")
    ] = None,
    judge: Annotated[
        str, typer.Option(help="Support judge: deterministic (offline) or llm (both then run).")
    ] = "deterministic",
    judge_url: Annotated[
        str | None,
        typer.Option(
            help="OpenAI-compatible endpoint of the LLM judge (default: NENQA_LLM_BASE_URL, "
            "else the local model, started for the run; see make llm)."
        ),
    ] = None,
    judge_model: Annotated[str | None, typer.Option(help="Model name of the LLM judge.")] = None,
    api_key: Annotated[
        str | None, typer.Option(help="API key for --url (sent as a Bearer token).")
    ] = None,
    qa: Annotated[Path, typer.Option(help="The evaluation set.")] = Path("eval/qa.jsonl"),
    out_dir: Annotated[Path, typer.Option("--out", help="Where report files go.")] = Path(
        "eval/out"
    ),
    ids: Annotated[
        str | None, typer.Option(help="Only these items, comma-separated (q001,q005).")
    ] = None,
    baseline: Annotated[
        bool, typer.Option(help="Also run the tutorial recipe (in-process runs only).")
    ] = True,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when a metric misses eval/thresholds.toml.")
    ] = False,
    thresholds: Annotated[Path, typer.Option(help="Thresholds for --check.")] = Path(
        "eval/thresholds.toml"
    ),
) -> None:
    """All metrics: citations (ALCE), faithfulness, numbers, key facts, abstention, retrieval."""
    if ctx.invoked_subcommand is not None:
        return
    from contextlib import ExitStack

    from eval.check_thresholds import ThresholdsError, check_thresholds, load_thresholds
    from eval.judges import JudgeUnavailableError
    from eval.qa_schema import QASetError
    from eval.run import EvalRunError, run_eval
    from retriever.store import IndexUnavailableError

    settings = get_settings()
    stack = ExitStack()
    # No endpoint given or configured: the llm mode and the LLM judge use the local model.
    if not settings.llm_base_url and (
        (judge == "llm" and not judge_url) or (mode == "llm" and not url)
    ):
        settings = _start_local_llm(stack, settings, sigterm_exit_code=128 + 15)
    try:
        limits = load_thresholds(thresholds) if check else {}
        report = run_eval(
            settings,
            qa,
            out_dir,
            url=url,
            mode=mode,
            judge=judge,
            judge_url=judge_url,
            judge_model=judge_model,
            with_baseline=baseline,
            ids=[i.strip() for i in ids.split(",") if i.strip()] if ids else None,
            api_key=api_key,
            console=console,
        )
    except (
        EvalRunError,
        JudgeUnavailableError,
        QASetError,
        ThresholdsError,
        IndexUnavailableError,
    ) as error:
        _fail(str(error))
    finally:
        stack.close()
    _print_eval_summary(report, limits)
    console.print(f"reports in {out_dir}/ (report.json, report.md, comparison.png)")
    if check:
        problems = check_thresholds(report, limits)
        for problem in problems:
            console.print(f"[bold red]below threshold:[/] {problem}", highlight=False)
        if problems:
            raise typer.Exit(1)
        console.print(f"every threshold in {thresholds} is met")


def _print_eval_summary(report: dict, limits: dict[str, dict[str, float]]) -> None:
    table = Table(title=f"nenqa eval ({report['run']['items']} questions)")
    for column in ("metric", "value", "threshold"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, value in report.items():
        if isinstance(value, float | int) and not isinstance(value, bool):
            bound = next(
                (f"{b} {limits[b][key]:g}" for b in ("min", "max") if key in limits.get(b, {})),
                "",
            )
            table.add_row(key, f"{value:.3f}", bound)
    console.print(table)
    failing = len(report["failures"])
    if failing:
        console.print(f"{failing} items miss something; see report.md")


@eval_app.command("retrieval")
def eval_retrieval(
    qa: Annotated[Path, typer.Option(help="The evaluation set.")] = Path("eval/qa.jsonl"),
    out_dir: Annotated[Path, typer.Option("--out", help="Where report files go.")] = Path(
        "eval/out"
    ),
    baseline: Annotated[
        bool, typer.Option(help="Also run the tutorial recipe (1000/200 splitter, dense top 4).")
    ] = True,
) -> None:
    """Recall@1/3/5/10 of gold references and key facts, MRR@10, nDCG@10; writes JSON."""
    from eval.retrieval import run_retrieval_eval

    settings = get_settings()
    report = run_retrieval_eval(settings, qa, out_dir, with_baseline=baseline, console=console)
    out.print_json(json.dumps(report["summary"], ensure_ascii=False))


def _searcher(settings: Settings):
    from retriever.search import load_searcher
    from retriever.store import IndexUnavailableError

    try:
        return load_searcher(settings)
    except IndexUnavailableError as error:
        _fail(str(error))


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


# --- nenqa docs: the document registry ---------------------------------------------------


@docs_app.command("list")
def docs_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The documents in the index: provenance, chunk counts and state."""
    from ingest.pipeline import inventory

    settings = get_settings()
    with _index_guard(settings):
        store, registry, _ = _docs_index(settings)
        if store is None:
            records, report = registry.records(), None
        else:
            report = inventory(store, registry, settings.data_dir)
            records = report.records
    if as_json:
        listing = {
            "documents": [
                {**r.as_json(), "indexed_chunks": report.indexed.get(r.doc_id, 0) if report else 0}
                for r in records
            ],
            "unregistered": [
                {"doc_id": d, "path": str(p), "indexed_chunks": n}
                for d, p, n in (report.unregistered if report else [])
            ],
            "orphan_chunks": report.orphans if report else 0,
        }
        out.print_json(json.dumps(listing, ensure_ascii=False))
        return
    table = Table(title=f"documents in {settings.chroma_url or settings.index_dir}")
    for column in ("doc_id", "kind", "label", "chunks", "refs", "status", "added", "sha256"):
        table.add_column(column, overflow="fold")
    table.add_column("path", overflow="fold")
    for r in records:
        indexed = report.indexed.get(r.doc_id, 0) if report else 0
        status = r.status if indexed == r.chunks or r.status != "complete" else "incomplete"
        chunks = str(r.chunks) if indexed == r.chunks else f"{indexed}/{r.chunks}"
        row = (r.doc_id, r.kind, r.label, chunks, str(r.references), status, r.added_at)
        table.add_row(*row, r.sha256[:12], r.path)
    for doc_id, path, count in report.unregistered if report else []:
        table.add_row(doc_id, "", "", str(count), "", "unregistered", "", "", str(path))
    out.print(table)
    if report and report.unregistered:
        console.print(
            "unregistered: indexed by `nenqa ingest`; `nenqa docs add PATH` records them "
            "(without embedding anything again)"
        )
    if report and report.orphans:
        console.print(
            f"{report.orphans} chunks belong to no registered document (indexed with "
            "`nenqa ingest PATH`); `nenqa docs add PATH` records their files"
        )
    if any(r.status != "complete" for r in records):
        console.print(
            "a document marked writing or removing was interrupted: run the same "
            "`nenqa docs add`, `remove` or `reindex` again to finish it"
        )


@docs_app.command("add")
def docs_add(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Markdown, .txt, .pdf, trials .jsonl or ClinicalTrials.gov .json."),
    ],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Index documents and record their provenance; an unchanged file is a no-op."""
    settings = get_settings()
    corpus = _docs_parse(settings, paths)
    _docs_write(settings, corpus, reembed=False, rebuild=False, quiet=quiet)


@docs_app.command("remove")
def docs_remove(
    doc_ids: Annotated[list[str], typer.Argument(help="Document ids (see `nenqa docs list`).")],
) -> None:
    """Remove documents: all of their chunks and their records, nothing else."""
    from ingest.pipeline import remove_document
    from ingest.registry import UnknownDocumentError

    settings = get_settings()
    with _index_guard(settings, writing=True):
        store, registry, _ = _docs_index(settings)
        if store is None:
            _fail(f"the index at {settings.chroma_url or settings.index_dir} is empty")
        for doc_id in doc_ids:
            citing = [r.doc_id for r in registry.records() if r.cites == doc_id != r.doc_id]
            try:
                removed = remove_document(doc_id, store, registry)
            except UnknownDocumentError as error:
                _fail(str(error))
            console.print(f"removed {doc_id}: {removed} chunks")
            if citing:
                console.print(
                    f"note: {', '.join(citing)} cite reference numbers of {doc_id}; "
                    "their citations now name a document that is gone"
                )


@docs_app.command("reindex")
def docs_reindex(
    doc_ids: Annotated[
        list[str] | None, typer.Argument(help="Document ids; none means every document.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Parse documents again from their recorded paths and embed them again.

    With no ids every document is reindexed; after a change of embedding model that is the
    only choice, and the index is rebuilt for the new model.
    """
    from ingest.pipeline import inventory
    from retriever.embeddings import load_embedder

    settings = get_settings()
    with _index_guard(settings, writing=True):
        store, registry, built_with = _docs_index(settings)
        records = {r.doc_id: r for r in registry.records()}
        paths = [Path(r.path) for r in records.values()]
        if store is not None and not doc_ids:
            report = inventory(store, registry, settings.data_dir)
            if report.orphans:
                _fail(
                    f"{report.orphans} chunks in the index belong to no registered document "
                    "and would be lost; record their files first with `nenqa docs add PATH`"
                )
            paths += [path for _, path, _ in report.unregistered]
        elif doc_ids:
            unknown = [d for d in doc_ids if d not in records]
            if unknown:
                _fail(f"no registered document {unknown[0]!r}; `nenqa docs list` shows them")
            paths = [Path(records[d].path) for d in doc_ids]
        if not paths:
            _fail("no documents to reindex; add some with `nenqa docs add PATH`")
        corpus = _docs_parse(settings, paths)
        model_id = load_embedder(settings).model_id
        model_changed = built_with is not None and built_with != model_id
        if model_changed and doc_ids:
            _fail(
                f"the index was built with {built_with!r} and {model_id!r} is configured; "
                "`nenqa docs reindex` with no ids re-embeds every document with the new model"
            )
        if model_changed:
            for record in records.values():  # before the chunks go: a crash shows them unfinished
                registry.mark(record, "writing")
        _docs_write(settings, corpus, reembed=True, rebuild=model_changed, quiet=quiet)


def _docs_index(settings: Settings):
    """(chunk store or None when there is no index yet, registry, the index's model id)."""
    from ingest.registry import DocumentRegistry
    from retriever.store import ChunkStore, make_client

    client = make_client(settings)
    registry = DocumentRegistry(client, settings.collection)
    built_with = next(
        (
            (c.metadata or {}).get("embedding_model")
            for c in client.list_collections()
            if c.name == settings.collection
        ),
        None,
    )
    if built_with is None:
        return None, registry, None
    # Listing and removing need no model: open the collection with the model it was built with.
    return ChunkStore(settings, None, built_with), registry, built_with


def _index_guard(settings: Settings, *, writing: bool = False):
    """A context in which a Chroma failure ends the command with a message, not a traceback.

    An interrupted write is finished by running the same command again (docs/corpus.md).
    """
    from contextlib import contextmanager

    from retriever.store import IndexUnavailableError, chroma_errors

    @contextmanager
    def guard():
        try:
            with chroma_errors(settings, writing=writing):
                yield
        except IndexUnavailableError as error:  # its message says what to do next
            _fail(str(error))

    return guard()


def _docs_parse(settings: Settings, paths: list[Path]):
    from ingest.errors import IngestError
    from ingest.pipeline import parse_sources
    from ingest.trials import load_trials

    trials_file = settings.data_dir / "trials.jsonl"
    try:
        review_trials = load_trials(trials_file) if trials_file.exists() else []
        return parse_sources(paths, review_trials=review_trials)
    except IngestError as error:
        _fail(f"{error} (the index was not changed)")


def _docs_write(
    settings: Settings,
    corpus,
    *,
    reembed: bool,
    rebuild: bool,
    quiet: bool,
    relocate: bool = False,
):
    """Write the parsed sources and their registry records; returns the per-document changes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from ingest.pipeline import add_documents
    from ingest.registry import DocumentConflictError, DocumentRegistry
    from retriever.embeddings import ChromaEmbeddingFunction, load_embedder, set_torch_threads
    from retriever.store import ChunkStore, make_client

    embedder = load_embedder(settings)
    set_torch_threads(None)  # batch embedding gains from every core; queries use one
    with _index_guard(settings, writing=True):
        _, _, built_with = _docs_index(settings)
        if built_with not in (None, embedder.model_id) and not rebuild:
            _fail(
                f"the index was built with embedding model {built_with!r}, but "
                f"{embedder.model_id!r} is configured; `nenqa docs reindex` re-embeds every "
                "document with it"
            )
        store = ChunkStore(
            settings, ChromaEmbeddingFunction(embedder), embedder.model_id, rebuild=rebuild
        )
        registry = DocumentRegistry(make_client(settings), settings.collection)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=quiet,
        ) as progress:
            task = progress.add_task("embedding chunks", total=None)
            try:
                changes = add_documents(
                    corpus,
                    store,
                    registry,
                    embedder,
                    model_id=embedder.model_id,
                    reembed=reembed,
                    relocate=relocate,
                    batch_size=settings.embedding_batch_size,
                    on_progress=lambda done, total: progress.update(
                        task, completed=done, total=total
                    ),
                )
            except DocumentConflictError as error:
                _fail(f"{error} (the index was not changed)")
    table = Table(title="documents")
    for column in ("doc_id", "action", "added", "removed", "unchanged", "label", "kind"):
        table.add_column(column, justify="left" if column in {"doc_id", "label"} else "right")
    for change in changes:
        table.add_row(
            change.doc_id,
            change.action,
            str(change.added),
            str(change.removed),
            str(change.unchanged),
            change.record.label,
            change.record.kind,
        )
    console.print(table)
    return changes


if __name__ == "__main__":
    app()
