"""The one place for configuration: environment variables prefixed ``NENQA_``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from nenqa.resources import PROJECT_ROOT, bundled_dir, default_index_dir

__all__ = ["PROJECT_ROOT", "Settings", "get_settings"]


class Settings(BaseSettings):
    """Settings read once at start-up and passed down; env prefix ``NENQA_``."""

    model_config = SettingsConfigDict(env_prefix="NENQA_", env_file=None, extra="ignore")

    # Corpus and index
    data_dir: Path = Field(default_factory=lambda: bundled_dir("data"))
    index_dir: Path = Field(default_factory=default_index_dir)
    collection: str = "nenqa"
    chroma_url: str | None = Field(
        default=None, description="http://host:port of a Chroma server; embedded when unset"
    )
    chroma_timeout_s: float = Field(
        default=30.0, gt=0, description="how long to wait for the Chroma server to answer"
    )
    generation_poll_s: float = Field(
        default=1.0,
        ge=0,
        description="how often a server checks the index for a newer generation (0: never)",
    )

    # Embedding model: a sentence-transformers name or path; unset = the prepared offline default.
    embedding_model: str | None = None
    model_cache_dir: Path = Path.home() / ".cache" / "nenqa"
    embedding_batch_size: int = 32
    # Torch threads for query-time embedding. One thread keeps latency steady when the cores
    # are shared (OpenMP threads spin-wait for a descheduled sibling); ingest uses all cores.
    torch_threads: int = Field(default=1, ge=1)

    # Retrieval
    top_k: int = 5
    dense_candidates: int = 40
    lexical_candidates: int = 40
    rrf_k: int = 60

    # Server
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma list; when set, every /v1 request needs one"
    )
    admin_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma list; the /admin endpoints need one and are closed while unset",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma list of widget origins allowed by CORS"
    )
    rate_limit_per_minute: int = Field(
        default=120, ge=0, description="requests per API key (or client address); 0 = no limit"
    )
    max_question_chars: int = Field(default=2000, ge=1, le=2000)
    max_body_bytes: int = Field(default=65536, ge=1024)

    # Answers: "extractive" quotes the evidence (offline); "llm" asks an OpenAI-compatible API.
    answer_mode: Literal["extractive", "llm"] = "extractive"
    answer_top_k: int = Field(default=6, ge=1, le=50, description="evidence chunks per answer")
    answer_max_sentences: int = Field(default=3, ge=1, le=8)
    # Abstain unless the best evidence sentence reaches both thresholds; calibrated on
    # eval/qa.jsonl (see docs/benchmarks.md).
    abstain_min_similarity: float = 0.78
    abstain_min_overlap: float = 0.20
    scope_probe: Path | None = Field(
        default=None,
        description="the scope probe's weights (answer.scope_probe); unset = the bundled "
        "data/scope_probe.json, which applies only under the default embedding model",
    )
    scope_probe_enabled: bool = True
    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1"
    )
    llm_model: str = "nenqa-local"
    llm_api_key: SecretStr = SecretStr("not-needed")
    llm_timeout_s: float = 60.0
    llm_fallback_extractive: bool = Field(
        default=False,
        description="when the LLM endpoint fails or times out, answer llm-mode questions in the "
        "extractive mode (the answer's `fallback` says why) instead of 502/504",
    )
    llm_max_tokens: int = 512

    # Translation at ingest: each quotable unit of a new document is rendered into the other
    # language once (shipped renderings file, then this cache, then the LLM above).
    translation_cache: Path | None = Field(
        default=None,
        description="JSONL cache of renderings by unit ID and language; unset = "
        "model_cache_dir/translations.jsonl",
    )
    translation_cache_enabled: bool = True
    translate_at_ingest: bool = Field(
        default=True,
        description="render a new document's units with the LLM at ingest (the endpoint above, "
        "else the prepared local model); false = originals only, a later run fills them in",
    )

    @property
    def translation_cache_path(self) -> Path | None:
        """Where renderings are cached, or ``None`` when the cache is off."""
        if not self.translation_cache_enabled:
            return None
        return self.translation_cache or self.model_cache_dir / "translations.jsonl"

    @field_validator("api_keys", "admin_keys", "cors_origins", mode="before")
    @classmethod
    def _split_comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
