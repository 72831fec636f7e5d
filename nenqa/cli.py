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
    """Parse, chunk, embed and index the corpus; unchanged chunks are not rewritten."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from ingest.errors import IngestError
    from ingest.pipeline import default_sources, parse_sources, summarize, sync_index
    from retriever.embeddings import ChromaEmbeddingFunction, load_embedder
    from retriever.store import ChunkStore, IndexUnavailableError

    settings = get_settings()
    started = time.perf_counter()
    try:
        corpus = parse_sources(paths or default_sources(settings.data_dir))
    except IngestError as error:
        _fail(f"{error} (the index was not changed)")
    embedder = load_embedder(settings)
    try:
        store = ChunkStore(
            settings, ChromaEmbeddingFunction(embedder), embedder.model_id, rebuild=rebuild
        )
    except IndexUnavailableError as error:
        _fail(str(error))
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    ) as progress:
        task = progress.add_task("embedding new chunks", total=None)
        counts = sync_index(
            corpus,
            store,
            embedder,
            batch_size=settings.embedding_batch_size,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
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
    from retriever.model_prep import prepare_default_model

    path = prepare_default_model(get_settings().model_cache_dir, force=force)
    out.print(str(path))


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


if __name__ == "__main__":
    app()
