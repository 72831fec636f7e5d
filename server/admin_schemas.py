"""The admin API's request and response models (``/admin/documents``), in the OpenAPI schema."""

from __future__ import annotations

from pydantic import BaseModel, Field


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


class TranslationOut(BaseModel):
    """Where the renderings of the added documents' quotable units came from."""

    units: int = Field(description="units that needed a rendering in the other language")
    shipped: int = Field(description="rendered from a renderings file beside the source")
    cached: int
    translated: int = Field(description="rendered by the LLM and passing the translation check")
    failed_checks: int = Field(description="model renderings refused by the translation check")
    missing: int = Field(description="units without a rendering; a later add fills them in")
    twins: int = Field(description="rendering chunks indexed")
    translator_error: str | None = None


class ChangeList(BaseModel):
    changes: list[ChangeOut]
    translation: TranslationOut | None = None


class RemovedDocument(BaseModel):
    doc_id: str
    removed_chunks: int
