"""Atomic file writes (a reader sees the old file or the new one, never a part of either), and
the checksum of a file as written.

Every file mixvae writes that someone may read while it is being written (the model, the
configuration, checkpoints, metrics, evaluation results, the report, the dataset cache) goes
through here. A write goes to a temporary file in the same folder, is flushed to disk, then
renamed over the target; the new file gets the permissions the process's umask allows, like
any file made with ``open``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

__all__ = ["TEMP_SUFFIX", "atomic_open", "atomic_write", "remove_temp_files"]

TEMP_SUFFIX = ".tmp"


def atomic_write(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_open(path) as handle:
        handle.write(data)


@contextmanager
def atomic_open(path: Path | str) -> Iterator[IO[bytes]]:
    """A binary handle whose contents replace ``path`` when the ``with`` block ends without error.

    The folder is created when missing. When the block raises, the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask, as open() gives
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temp_files(folder: Path | str) -> list[Path]:
    """Delete the temporary files an interrupted atomic write left in ``folder``; return them."""
    folder = Path(folder)
    gone = []
    if folder.is_dir():
        for p in folder.glob(f".*{TEMP_SUFFIX}"):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def file_sha256(path: Path | str) -> str:
    """The sha256 of a file's bytes, read a MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
