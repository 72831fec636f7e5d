"""Generations of the index, and the one writer an embedded index allows.

Every corpus change (``nenqa ingest``, ``nenqa docs``, the admin API) ends by publishing a new
generation: a number one higher than the last and the fingerprint of the chunks now indexed,
written into the Chroma collection's own metadata (``ChunkStore.publish``). Every process that
serves the index reads it from the same place (``ChunkStore.generation``), so each worker of
``nenqa serve --workers N`` over a Chroma server, and each server on the same index, notices a
change and reloads, whoever made it. A write that crashes publishes nothing: servers keep the
generation they have until the change is finished by running it again.

An embedded index (a Chroma ``PersistentClient`` directory) is safe in one process only: a
second process writing it corrupts it, and a server never sees another process's writes. So
every process that may write it holds ``writer_lock`` on the directory for as long as it may
write (``nenqa serve`` with admin keys for its lifetime, a ``nenqa`` write command while it
runs), and a second one is refused with a message naming the way out. A server without admin
keys only reads, so it holds the lock shared: other such servers may open the index, but no
writer, whose changes it would never see. A Chroma server serialises writers itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LOCK_FILE = "nenqa-writer.lock"


@dataclass(frozen=True)
class Generation:
    """One published state of the index: ``number`` grows with every change; ``fingerprint``
    identifies the chunks it holds (empty for an index published before generations)."""

    number: int
    fingerprint: str

    def as_json(self) -> dict[str, int | str]:
        return {"number": self.number, "fingerprint": self.fingerprint}


def fingerprint_of(chunk_ids: Iterable[str]) -> str:
    """The corpus fingerprint: chunk IDs hash their document, place and text, so the set of
    IDs names the indexed content (16 hex digits of sha256 over the sorted IDs)."""
    joined = "\n".join(sorted(chunk_ids)).encode("utf-8")
    return hashlib.sha256(joined).hexdigest()[:16]


class IndexBusyError(RuntimeError):
    """Another process holds the embedded index for writing; the message says how to proceed."""


# Locks this process holds, by lock file: (open file, how many holders). Re-entrant, so a
# command that holds the index can call code that asks for it again.
_held: dict[Path, tuple[IO[str] | None, int]] = {}
_held_lock = threading.Lock()


@contextmanager
def writer_lock(index_dir: Path, holder: str, *, shared: bool = False) -> Iterator[None]:
    """Hold the embedded index in ``index_dir`` for writing (``shared``: for reading, which
    keeps writers out); ``holder`` names this process in the message another process gets
    (``nenqa serve``). Raises ``IndexBusyError``."""
    path = (index_dir / LOCK_FILE).resolve()
    with _held_lock:
        if path in _held:
            handle, count = _held[path]
            _held[path] = (handle, count + 1)
        else:
            _held[path] = (_acquire(path, holder, shared), 1)
    try:
        yield
    finally:
        with _held_lock:
            handle, count = _held[path]
            if count > 1:
                _held[path] = (handle, count - 1)
            else:
                del _held[path]
                if handle is not None:
                    fcntl.flock(handle, fcntl.LOCK_UN)
                    handle.close()


def _acquire(path: Path, holder: str, shared: bool) -> IO[str] | None:
    """The locked lock file; ``None`` where it cannot be created (a read-only or full folder),
    where no process can write the index either and the write itself says why."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+", encoding="utf-8")
    except OSError:
        return None
    try:
        fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        other = handle.read().strip() or "another process"
        handle.close()
        raise IndexBusyError(
            f"the embedded index at {path.parent} is in use by {other}, and an embedded index "
            "can be written by one process at a time. Change its documents through that "
            "server's admin API (POST /admin/documents), stop it first, or serve the index "
            "from a Chroma server that several processes share (`chroma run --path DIR`, "
            "NENQA_CHROMA_URL)."
        ) from None
    try:  # a shared holder names itself too: the last one to arrive is named
        handle.seek(0)
        handle.truncate(0)
        handle.write(f"{holder} (pid {os.getpid()})")
        handle.flush()
    except OSError:  # a full disk: the lock holds, the holder's name is not written
        pass
    return handle
