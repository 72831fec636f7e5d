"""``/admin/documents``: list, add, remove and reindex the indexed documents, behind an admin key.

- Keys: ``NENQA_ADMIN_KEYS`` (a comma list), sent as ``X-Admin-Key: <key>`` or
  ``Authorization: Bearer <key>``. No key is 401; a key that is not an admin key is 403; while
  no admin key is configured every admin request is 403.
- A document is added from a path on the server, which must lie inside ``NENQA_DATA_DIR``, so
  an admin key cannot make the server read arbitrary files. Provenance (path, sha256) is
  recorded as ``nenqa docs add`` records it; the semantics are those of ``ingest.pipeline``.
- After a change the service is reloaded (chunk table, lexical index, quotable sentences)
  before the response returns, so the next question sees the change.
- Writes are serialised in this process; with several worker processes, send admin requests
  to one of them or use the ``nenqa docs`` commands.

| problem                                   | status |
|-------------------------------------------|--------|
| no admin key / not an admin key / disabled | 401 / 403 / 403 |
| unknown document id                       | 404    |
| document id registered from another path  | 409    |
| bad input file (names file, line, reason) | 422    |
| index or model still loading              | 503    |
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from ingest.errors import IngestError
from ingest.pipeline import (
    DocumentChange,
    add_documents,
    inventory,
    parse_sources,
    remove_document,
)
from ingest.registry import DocumentConflictError, DocumentRegistry, UnknownDocumentError
from ingest.trials import load_trials
from nenqa.settings import Settings
from retriever.store import make_client
from server.api.deps import ServiceDep
from server.state import ServiceState, load_service

admin_key_header = APIKeyHeader(name="X-Admin-Key", auto_error=False, description="admin key")
admin_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <admin key>")
_write_lock = threading.Lock()


class DocumentOut(BaseModel):
    doc_id: str
    path: str
    sha256: str
    kind: str = Field(description="review, markdown, text, pdf, trials or ctgov")
    label: str = Field(description="short name a citation uses when there are several documents")
    title: str
    cites: str = Field(description="document whose reference list the chunks' numbers are from")
    chunks: int
    indexed_chunks: int
    references: int
    trials: int
    embedding_model: str
    status: str = Field(description="complete, writing, removing, or incomplete")
    added_at: str
    updated_at: str


class UnregisteredDocument(BaseModel):
    doc_id: str
    path: str
    indexed_chunks: int


class DocumentList(BaseModel):
    documents: list[DocumentOut]
    unregistered: list[UnregisteredDocument] = Field(
        description="default-corpus documents indexed by `nenqa ingest` without a record"
    )
    orphan_chunks: int = Field(description="chunks of documents nothing records")


class AddDocuments(BaseModel):
    paths: list[str] = Field(
        min_length=1, description="files inside the server's data folder (NENQA_DATA_DIR)"
    )


class ChangeOut(BaseModel):
    doc_id: str
    action: str = Field(description="added, updated, reindexed or unchanged")
    added: int
    removed: int
    unchanged: int
    label: str
    kind: str


class ChangeList(BaseModel):
    changes: list[ChangeOut]


class RemovedDocument(BaseModel):
    doc_id: str
    removed_chunks: int


def build_router(settings: Settings) -> APIRouter:
    """The admin routes, checking keys against ``settings.admin_keys``."""
    digests = [hashlib.sha256(k.encode()).digest() for k in settings.admin_keys if k]

    def require_admin_key(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(admin_bearer)],
        header_key: Annotated[str | None, Security(admin_key_header)],
    ) -> None:
        presented = header_key or (bearer.credentials if bearer else None)
        if not presented:
            raise HTTPException(
                401,
                "the admin endpoints need an admin key: send 'X-Admin-Key: <key>' or "
                "'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not digests:
            raise HTTPException(403, "the admin endpoints are disabled: set NENQA_ADMIN_KEYS")
        digest = hashlib.sha256(presented.encode()).digest()
        if not any(hmac.compare_digest(digest, known) for known in digests):
            raise HTTPException(403, "this key is not an admin key")

    router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin_key)])

    @router.get(
        "/documents",
        response_model=DocumentList,
        summary="The indexed documents, their provenance and state",
    )
    def list_documents(service: ServiceDep) -> DocumentList:
        registry = _registry(service.settings)
        report = inventory(service.searcher.store, registry, service.settings.data_dir)
        documents = []
        for record in report.records:
            indexed = report.indexed.get(record.doc_id, 0)
            status = record.status
            if status == "complete" and indexed != record.chunks:
                status = "incomplete"
            documents.append(
                DocumentOut(**{**record.as_json(), "status": status, "indexed_chunks": indexed})
            )
        return DocumentList(
            documents=documents,
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
    def add(body: AddDocuments, request: Request, service: ServiceDep) -> ChangeList:
        data_dir = service.settings.data_dir.resolve()
        paths = []
        for raw in body.paths:
            path = Path(raw) if Path(raw).is_absolute() else data_dir / raw
            if not path.resolve().is_relative_to(data_dir):
                raise HTTPException(
                    422, f"{raw}: only files inside the data folder ({data_dir}) can be added"
                )
            paths.append(path)
        return _write(request, service, paths, reembed=False)

    @router.delete(
        "/documents/{doc_id}",
        response_model=RemovedDocument,
        summary="Remove a document: all of its chunks, nothing else",
    )
    def remove(doc_id: str, request: Request, service: ServiceDep) -> RemovedDocument:
        with _write_lock:
            try:
                removed = remove_document(
                    doc_id, service.searcher.store, _registry(service.settings)
                )
            except UnknownDocumentError as error:
                raise HTTPException(404, str(error)) from None
            if removed:
                _reload(request, service)
        return RemovedDocument(doc_id=doc_id, removed_chunks=removed)

    @router.post(
        "/documents/{doc_id}/reindex",
        response_model=ChangeList,
        summary="Parse one document again from its recorded path and embed it again",
    )
    def reindex_one(doc_id: str, request: Request, service: ServiceDep) -> ChangeList:
        record = _registry(service.settings).get(doc_id)
        if record is None:
            raise HTTPException(404, f"no registered document {doc_id!r}; see GET /admin/documents")
        return _write(request, service, [Path(record.path)], reembed=True)

    @router.post(
        "/reindex",
        response_model=ChangeList,
        summary="Parse every document again and embed it again",
    )
    def reindex_all(request: Request, service: ServiceDep) -> ChangeList:
        settings = service.settings
        report = inventory(service.searcher.store, _registry(settings), settings.data_dir)
        if report.orphans:
            raise HTTPException(
                409,
                f"{report.orphans} chunks belong to no registered document; record their "
                "files with POST /admin/documents first",
            )
        paths = [Path(r.path) for r in report.records] + [p for _, p, _ in report.unregistered]
        if not paths:
            raise HTTPException(404, "no documents to reindex")
        return _write(request, service, paths, reembed=True)

    return router


def _write(
    request: Request, service: ServiceState, paths: list[Path], *, reembed: bool
) -> ChangeList:
    settings = service.settings
    trials_file = settings.data_dir / "trials.jsonl"
    with _write_lock:
        try:
            review_trials = load_trials(trials_file) if trials_file.exists() else []
            corpus = parse_sources(paths, review_trials=review_trials)
            embedder = service.searcher.embedder
            changes = add_documents(
                corpus,
                service.searcher.store,
                _registry(settings),
                embedder,
                model_id=embedder.model_id,
                reembed=reembed,
                batch_size=settings.embedding_batch_size,
            )
        except DocumentConflictError as error:
            raise HTTPException(409, f"{error} (the index was not changed)") from None
        except IngestError as error:
            raise HTTPException(422, f"{error} (the index was not changed)") from None
        if any(change.added or change.removed for change in changes):
            _reload(request, service)
    return ChangeList(changes=[_change_out(change) for change in changes])


def _reload(request: Request, service: ServiceState) -> None:
    """Swap in a service rebuilt over the refreshed searcher; neither the model nor the
    sentences the old service embedded are loaded or embedded again."""
    service.searcher.refresh()
    request.app.state.service = load_service(
        service.settings, searcher=service.searcher, previous=service
    )


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
