"""``/admin/documents``: list, add, remove and reindex the indexed documents, behind an admin key.

- Keys: ``NENQA_ADMIN_KEYS`` (a comma list), sent as ``X-Admin-Key: <key>`` or
  ``Authorization: Bearer <key>`` (``AdminKeyDep``). No key is 401; a key that is not an admin
  key is 403; while no admin key is configured every admin request is 403.
- A document is added from a path on the server, which must lie inside ``NENQA_DATA_DIR``, so
  an admin key cannot make the server read arbitrary files. Provenance (path, sha256) is
  recorded as ``nenqa docs add`` records it; the rules are those of ``ingest.corpus``.
- After a change the service is reloaded (chunk table, lexical index, quotable sentences)
  before the response returns, so the next question sees the change.
- Writes are serialised in this process; with several worker processes, send admin requests
  to one of them or use the ``nenqa docs`` commands.

Errors are ``ingest``'s exceptions, mapped to statuses in ``server/errors.py``:

| problem                                   | status |
|-------------------------------------------|--------|
| no admin key / not an admin key / disabled | 401 / 403 / 403 |
| unknown document id, nothing to reindex   | 404    |
| document id registered from another path, chunks no document owns | 409 |
| bad input file (names file, line, reason), path outside the data folder | 422 |
| index or model still loading              | 503    |
"""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi import APIRouter, Request

from answer.publication import publish_generation
from ingest.corpus import (
    changed,
    paths_in_data_folder,
    reindex_paths,
    remove_documents,
    update_documents,
)
from ingest.pipeline import DocumentChange, inventory
from ingest.registry import DocumentRegistry
from ingest.translation import ChatTranslator, renderer_for
from nenqa.settings import Settings
from retriever.store import make_client
from server.admin_schemas import (
    AddDocuments,
    ChangeList,
    ChangeOut,
    DocumentList,
    DocumentOut,
    RemovedDocument,
    TranslationOut,
    UnregisteredDocument,
)
from server.api.deps import AdminKeyDep, ServiceDep
from server.generations import serve_current_generation
from server.state import ServiceState

router = APIRouter(prefix="/admin", tags=["admin"])
_write_lock = threading.Lock()


@router.get(
    "/documents",
    response_model=DocumentList,
    summary="The indexed documents, their provenance and state",
)
def list_documents(_: AdminKeyDep, service: ServiceDep) -> DocumentList:
    settings = service.settings
    report = inventory(service.searcher.store, _registry(settings), settings.data_dir)
    return DocumentList(
        documents=[
            DocumentOut(
                **{
                    **record.as_json(),
                    "status": report.status(record),
                    "indexed_chunks": report.indexed.get(record.doc_id, 0),
                }
            )
            for record in report.records
        ],
        unregistered=[
            UnregisteredDocument(doc_id=d, path=str(p), indexed_chunks=n)
            for d, p, n in report.unregistered
        ],
        orphan_chunks=report.orphans,
    )


@router.post(
    "/documents",
    response_model=ChangeList,
    summary="Add or update documents from files in the data folder",
)
def add(_: AdminKeyDep, body: AddDocuments, request: Request, service: ServiceDep) -> ChangeList:
    paths = paths_in_data_folder(body.paths, service.settings.data_dir)
    return _write(request, service, paths, reembed=False)


@router.delete(
    "/documents/{doc_id}",
    response_model=RemovedDocument,
    summary="Remove a document: all of its chunks, nothing else",
)
def remove(_: AdminKeyDep, doc_id: str, request: Request, service: ServiceDep) -> RemovedDocument:
    with _write_lock:
        (removal,) = remove_documents([doc_id], service.searcher.store, _registry(service.settings))
        if removal.chunks:
            _reload(request, service)
    return RemovedDocument(doc_id=doc_id, removed_chunks=removal.chunks)


@router.post(
    "/documents/{doc_id}/reindex",
    response_model=ChangeList,
    summary="Parse one document again from its recorded path and embed it again",
)
def reindex_one(_: AdminKeyDep, doc_id: str, request: Request, service: ServiceDep) -> ChangeList:
    settings = service.settings
    paths = reindex_paths(None, _registry(settings), settings.data_dir, [doc_id])
    return _write(request, service, paths, reembed=True)


@router.post(
    "/reindex",
    response_model=ChangeList,
    summary="Parse every document again and embed it again",
)
def reindex_all(_: AdminKeyDep, request: Request, service: ServiceDep) -> ChangeList:
    settings = service.settings
    paths = reindex_paths(service.searcher.store, _registry(settings), settings.data_dir)
    return _write(request, service, paths, reembed=True)


def _write(
    request: Request, service: ServiceState, paths: list[Path], *, reembed: bool
) -> ChangeList:
    settings = service.settings
    embedder = service.searcher.embedder
    # The server never starts a model: units are translated only with NENQA_LLM_BASE_URL set.
    renderer = renderer_for(
        settings,
        translator=(
            (lambda: ChatTranslator.from_settings(settings))
            if settings.translate_at_ingest
            else None
        ),
    )
    with _write_lock:
        changes = update_documents(
            paths,
            settings.data_dir,
            service.searcher.store,
            _registry(settings),
            embedder,
            model_id=embedder.model_id,
            reembed=reembed,
            batch_size=settings.embedding_batch_size,
            renderer=renderer,
        )
        if changed(changes):
            _reload(request, service)
    return ChangeList(
        changes=[_change_out(change) for change in changes],
        translation=TranslationOut(**renderer.report.as_dict()),
    )


def _reload(request: Request, service: ServiceState) -> None:
    """Save the change's generation files (tables, scope text, sentences: from the previous
    generation's and the change), publish it and serve it here at once; the other workers and
    servers on the index notice it within ``generation_poll_s`` and only open those files."""
    publish_generation(service.searcher.store, service.searcher.embedder)
    serve_current_generation(request.app)


def _registry(settings: Settings) -> DocumentRegistry:
    return DocumentRegistry(make_client(settings), settings.collection)


def _change_out(change: DocumentChange) -> ChangeOut:
    return ChangeOut(
        doc_id=change.doc_id,
        action=change.action,
        added=change.added,
        removed=change.removed,
        unchanged=change.unchanged,
        label=change.record.label,
        kind=change.record.kind,
    )
