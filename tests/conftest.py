"""Shared fixtures; model-loading ones are session-scoped so each model loads once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from retriever.embeddings import Embedder

# Tests never reach a model hub; set before huggingface_hub is first imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Nor start the local LLM to translate a document they ingest (minutes on 2 cores): the
# translation tests ask for it with their own scripted model and settings.
os.environ.setdefault("NENQA_TRANSLATE_AT_INGEST", "false")
# And never read or write the user's translation cache: a session caches in a temporary one.
os.environ.setdefault(
    "NENQA_TRANSLATION_CACHE",
    str(Path(tempfile.mkdtemp(prefix="nenqa-test-translations-")) / "translations.jsonl"),
)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The default embedding model, prepared into the configured model cache if needed."""
    from nenqa.settings import Settings
    from retriever.embeddings import load_embedder

    return load_embedder(Settings(embedding_model=None))


def rendered_default_corpus(data_dir):
    """The default corpus as ``nenqa ingest`` indexes it: parents and their twins, every
    rendering from the shipped files (no model, no cache)."""
    from ingest.pipeline import default_sources, parse_sources
    from ingest.translation import Renderer
    from nenqa.glossary import Glossary, load_glossary_table

    corpus = parse_sources(default_sources(data_dir))
    Renderer(Glossary(load_glossary_table(data_dir / "glossary.tsv"))).render(corpus)
    return corpus


@pytest.fixture(scope="session")
def indexed_settings(tmp_path_factory, embedder):
    """Settings pointing at a fresh index of the default corpus, built once per session."""
    from ingest.pipeline import sync_index
    from nenqa.settings import Settings
    from retriever.embeddings import ChromaEmbeddingFunction
    from retriever.store import ChunkStore

    settings = Settings(index_dir=tmp_path_factory.mktemp("index"), embedding_model=None)
    store = ChunkStore(settings, ChromaEmbeddingFunction(embedder), embedder.model_id)
    sync_index(rendered_default_corpus(settings.data_dir), store, embedder)
    store.publish()  # as `nenqa ingest` does
    return settings


@pytest.fixture(scope="session")
def searcher(indexed_settings):
    """The hybrid searcher over the session index (model and index loaded once)."""
    from retriever.search import load_searcher

    return load_searcher(indexed_settings)


@pytest.fixture(scope="session")
def service(indexed_settings, searcher):
    """The chat service over the session index (extractive mode; sentences embedded once)."""
    from server.state import load_service

    settings = indexed_settings.model_copy(update={"rate_limit_per_minute": 0})
    return load_service(settings, searcher=searcher)


@pytest.fixture(scope="session")
def scripted_llm(tmp_path_factory):
    """A scripted OpenAI-compatible server process on loopback (tests/scripted_llm.py)."""
    from tests.scripted_llm import ScriptedLLM

    rules = [{"when": "", "reply": "INSUFFICIENT_EVIDENCE"}]
    llm = ScriptedLLM(rules, tmp_path_factory.mktemp("llm"))
    yield llm
    llm.stop()


@pytest.fixture(scope="session")
def llm_service(service, scripted_llm):
    """``service`` with its llm mode talking to ``scripted_llm`` through langchain-openai."""
    from answer.llm import make_chat_model
    from server.state import with_llm

    settings = service.settings.model_copy(update={"llm_base_url": scripted_llm.base_url})
    llm_ready = with_llm(service, make_chat_model(settings))
    llm_ready.settings = settings
    return llm_ready


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A ``chroma run`` server on loopback (tests/chroma_support.py), stopped by its PID."""
    from tests.chroma_support import chroma_missing_reason, start_chroma_server

    reason = chroma_missing_reason()
    if reason:
        pytest.fail(f"{reason}; `make install` provides the chroma command")
    server = start_chroma_server(tmp_path_factory.mktemp("chroma"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chroma_settings(chroma_server, embedder, tmp_path_factory):
    """Settings (``chroma_url``) for the default corpus ingested into ``chroma_server``."""
    from ingest.pipeline import sync_index
    from nenqa.settings import Settings
    from retriever.embeddings import ChromaEmbeddingFunction
    from retriever.store import ChunkStore

    settings = Settings(
        chroma_url=chroma_server.url,
        index_dir=tmp_path_factory.mktemp("unused-embedded-index"),
        embedding_model=None,
    )
    store = ChunkStore(settings, ChromaEmbeddingFunction(embedder), embedder.model_id)
    sync_index(rendered_default_corpus(settings.data_dir), store, embedder)
    store.publish()  # as `nenqa ingest` does
    return settings
