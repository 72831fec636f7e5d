"""The one place for configuration: environment variables prefixed ``NENQA_``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Settings read once at start-up and passed down; env prefix ``NENQA_``."""

    model_config = SettingsConfigDict(env_prefix="NENQA_", env_file=None, extra="ignore")

    # Corpus and index
    data_dir: Path = PROJECT_ROOT / "data"
    index_dir: Path = PROJECT_ROOT / ".nenqa" / "index"
    collection: str = "nenqa"
    chroma_url: str | None = Field(
        default=None, description="http://host:port of a Chroma server; embedded when unset"
    )

    # Embedding model: a sentence-transformers name or path; unset = the prepared offline default.
    embedding_model: str | None = None
    model_cache_dir: Path = Path.home() / ".cache" / "nenqa"
    embedding_batch_size: int = 32

    # Retrieval
    top_k: int = 5
    dense_candidates: int = 40
    lexical_candidates: int = 40
    rrf_k: int = 60

    # Server
    host: str = "127.0.0.1"
    port: int = 8000


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
