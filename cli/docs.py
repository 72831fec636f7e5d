"""``nenqa docs``: list, add, remove and reindex the indexed documents (``ingest.corpus``).

``nenqa ingest`` writes through ``write_documents`` too, so both record provenance alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cli.console import console, fail, out
from nenqa.settings import Settings, get_settings

if TYPE_CHECKING:
    from ingest.pipeline import DocumentChange, ParsedCorpus
    from ingest.registry import DocumentRegistry
    from ingest.translation import TranslationReport, Translator
    from retriever.store import ChunkStore

NO_TRANSLATE_HELP = "Use shipped and cached renderings only; never ask an LLM to translate."

docs_app = typer.Typer(
    help="Manage the indexed documents: list, add, remove, reindex.", no_args_is_help=True
)


@docs_app.command("list")
def docs_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The documents in the index: provenance, chunk counts and state."""
    from ingest.pipeline import inventory

    settings = get_settings()
    with index_guard(settings):
        store, registry, _ = open_index(settings)
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
        status = report.status(r) if report else r.status
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
    no_translate: Annotated[bool, typer.Option("--no-translate", help=NO_TRANSLATE_HELP)] = False,
) -> None:
    """Index documents and record their provenance; an unchanged file is a no-op.

    Each quotable unit gets a rendering in the other language (shipped file, cache, or the LLM:
    NENQA_LLM_BASE_URL, else the prepared local model, started only when a unit needs it).
    """
    settings = get_settings()
    corpus = parse_or_fail(settings, paths)
    render_or_report(settings, corpus, translate=not no_translate, quiet=quiet)
    write_documents(settings, corpus, reembed=False, rebuild=False, quiet=quiet)


@docs_app.command("remove")
def docs_remove(
    doc_ids: Annotated[list[str], typer.Argument(help="Document ids (see `nenqa docs list`).")],
) -> None:
    """Remove documents: all of their chunks and their records, nothing else."""
    from answer.publication import publish_generation
    from ingest.corpus import remove_documents
    from ingest.registry import UnknownDocumentError

    settings = get_settings()
    with index_guard(settings, writing=True):
        store, registry, _ = open_index(settings)
        if store is None:
            fail(f"the index at {settings.chroma_url or settings.index_dir} is empty")
        for doc_id in doc_ids:
            try:
                (removal,) = remove_documents([doc_id], store, registry)
            except UnknownDocumentError as error:
                fail(str(error))
            publish_generation(store)
            console.print(f"removed {doc_id}: {removal.chunks} chunks")
            if removal.cited_by:
                console.print(
                    f"note: {', '.join(removal.cited_by)} cite reference numbers of {doc_id}; "
                    "their citations now name a document that is gone"
                )


@docs_app.command("reindex")
def docs_reindex(
    doc_ids: Annotated[
        list[str] | None, typer.Argument(help="Document ids; none means every document.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    no_translate: Annotated[bool, typer.Option("--no-translate", help=NO_TRANSLATE_HELP)] = False,
) -> None:
    """Parse documents again from their recorded paths and embed them again.

    With no ids every document is reindexed; after a change of embedding model that is the
    only choice, and the index is rebuilt for the new model.
    """
    from ingest.corpus import (
        NothingToReindexError,
        OrphanChunksError,
        mark_every_document_writing,
        reindex_paths,
    )
    from ingest.registry import UnknownDocumentError
    from retriever.embeddings import load_embedder

    settings = get_settings()
    with index_guard(settings, writing=True):
        store, registry, built_with = open_index(settings)
        try:
            paths = reindex_paths(store, registry, settings.data_dir, doc_ids or ())
        except (UnknownDocumentError, OrphanChunksError, NothingToReindexError) as error:
            fail(str(error))
        corpus = parse_or_fail(settings, paths)
        render_or_report(settings, corpus, translate=not no_translate, quiet=quiet)
        model_id = load_embedder(settings).model_id
        model_changed = built_with is not None and built_with != model_id
        if model_changed and doc_ids:
            fail(
                f"the index was built with {built_with!r} and {model_id!r} is configured; "
                "`nenqa docs reindex` with no ids re-embeds every document with the new model"
            )
        if model_changed:  # before the chunks go: a crash shows them unfinished
            mark_every_document_writing(registry)
        write_documents(settings, corpus, reembed=True, rebuild=model_changed, quiet=quiet)


def open_index(settings: Settings) -> tuple[ChunkStore | None, DocumentRegistry, str | None]:
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


@contextmanager
def index_guard(settings: Settings, *, writing: bool = False) -> Iterator[None]:
    """A context in which a Chroma failure ends the command with a message, not a traceback.

    An interrupted write is finished by running the same command again (docs/corpus.md).
    """
    from retriever.generation import IndexBusyError, writer_lock
    from retriever.store import IndexUnavailableError, chroma_errors

    try:
        with ExitStack() as stack:
            if writing and not settings.chroma_url:  # one writer per embedded index
                stack.enter_context(writer_lock(settings.index_dir, "`nenqa docs`/`nenqa ingest`"))
            with chroma_errors(settings, writing=writing):
                yield
    except (IndexUnavailableError, IndexBusyError) as error:  # its message says what to do
        fail(str(error))


def parse_or_fail(settings: Settings, paths: Sequence[Path]) -> ParsedCorpus:
    """Parse ``paths`` (``ingest.corpus.parse_documents``); a bad file ends the command."""
    from ingest.corpus import parse_documents
    from nenqa.errors import IngestError

    try:
        return parse_documents(paths, settings.data_dir)
    except IngestError as error:
        fail(f"{error} (the index was not changed)")


def render_or_report(
    settings: Settings, corpus: ParsedCorpus, *, translate: bool, quiet: bool
) -> TranslationReport:
    """Give the corpus its renderings (``ingest.translation``) and print where they came from.

    An unreachable LLM does not stop the command: the units it would have rendered are counted
    as missing, and the next run fills them in.
    """
    from contextlib import ExitStack

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from ingest.translation import renderer_for

    with (
        ExitStack() as stack,
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=quiet,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("translating units", total=None)
        renderer = renderer_for(
            settings,
            translator=(
                (lambda: _translator(settings, stack))
                if translate and settings.translate_at_ingest
                else None
            ),
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
        report = renderer.render(corpus)
    if report.units:
        console.print(
            f"renderings: {report.units} units; {report.shipped} from data, {report.cached} "
            f"from the cache, {report.translated} by the model; {report.failed_checks} failed "
            f"the translation check, {report.missing} missing",
            highlight=False,
        )
    for problem in report.problems[:5]:
        console.print(f"  failed check: {problem}", highlight=False, soft_wrap=True)
    if report.missing:
        why = report.translator_error or "translation is off (--no-translate)"
        console.print(
            f"{report.missing} units lack a rendering ({why}); they are indexed in their "
            "original language, and a later run with the LLM reachable fills them in",
            highlight=False,
            soft_wrap=True,
        )
    return report


def _translator(settings: Settings, stack: ExitStack) -> Translator:
    """The configured endpoint, else the prepared local model started now (stopped with
    ``stack``); an unavailable model raises ``TranslatorUnavailableError``."""
    from ingest.translation import ChatTranslator, TranslatorUnavailableError

    if settings.llm_base_url:
        return ChatTranslator.from_settings(settings)
    from nenqa.models.llm_prep import LocalLLMError
    from nenqa.models.llm_server import local_llm

    console.print("starting the local LLM to translate (llama.cpp on 127.0.0.1) ...")
    try:
        _, local = stack.enter_context(local_llm(settings))
    except LocalLLMError as error:
        raise TranslatorUnavailableError(f"the local LLM cannot start: {error}") from error
    return ChatTranslator.from_settings(local)


def write_documents(
    settings: Settings,
    corpus: ParsedCorpus,
    *,
    reembed: bool,
    rebuild: bool,
    quiet: bool,
    relocate: bool = False,
) -> list[DocumentChange]:
    """Write the parsed sources and their registry records; returns the per-document changes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from answer.publication import publish_generation
    from ingest.corpus import EmbeddingModelChangedError, check_embedding_model
    from ingest.pipeline import add_documents
    from ingest.registry import DocumentConflictError, DocumentRegistry
    from retriever.embeddings import ChromaEmbeddingFunction, load_embedder, set_torch_threads
    from retriever.store import ChunkStore, make_client

    embedder = load_embedder(settings)
    set_torch_threads(None)  # batch embedding gains from every core; queries use one
    with index_guard(settings, writing=True):
        _, _, built_with = open_index(settings)
        if not rebuild:
            try:
                check_embedding_model(built_with, embedder.model_id)
            except EmbeddingModelChangedError as error:
                fail(str(error))
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
                fail(f"{error} (the index was not changed)")
        publish_generation(store, embedder)
    _print_changes(changes)
    return changes


def _print_changes(changes: Sequence[Any]) -> None:
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
