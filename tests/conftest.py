"""Shared fixtures; model-loading ones are session-scoped so each model loads once."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from retriever.embeddings import Embedder

# Tests never reach a model hub; set before huggingface_hub is first imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The default embedding model, prepared into the configured model cache if needed."""
    from nenqa.settings import Settings
    from retriever.embeddings import load_embedder

    return load_embedder(Settings(embedding_model=None))


@pytest.fixture(scope="session")
def indexed_settings(tmp_path_factory, embedder):
    """Settings pointing at a fresh index of the default corpus, built once per session."""
    from ingest.pipeline import default_sources, parse_sources, sync_index
    from nenqa.settings import Settings
    from retriever.embeddings import ChromaEmbeddingFunction
    from retriever.store import ChunkStore

    settings = Settings(index_dir=tmp_path_factory.mktemp("index"), embedding_model=None)
    store = ChunkStore(settings, ChromaEmbeddingFunction(embedder), embedder.model_id)
    sync_index(parse_sources(default_sources(settings.data_dir)), store, embedder)
    return settings


@pytest.fixture(scope="session")
def searcher(indexed_settings):
    """The hybrid searcher over the session index (model and index loaded once)."""
    from retriever.search import load_searcher

    return load_searcher(indexed_settings)
