"""Atomic writes: permissions exactly as open() gives them, writes into a folder that exists, temporary
files cleared, and file checksums against hashlib."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from mixvae.atomic import TEMP_SUFFIX, atomic_open, atomic_write, file_sha256, remove_temp_files


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_permissions_are_what_open_gives(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "atomic", b"x")
        with open(tmp_path / "plain", "wb") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "atomic").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain").st_mode) == 0o666 & ~umask


def test_writes_go_into_an_existing_folder_and_replace_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run" / "metrics.jsonl"
    atomic_write(path, b"one")
    atomic_write(path, b"two")  # the folder exists now
    assert path.read_bytes() == b"two" and sorted(path.parent.iterdir()) == [path]


def test_the_temporary_file_is_hidden_beside_the_target_and_named_after_it(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    with atomic_open(path) as handle:
        handle.write(b"w")
        (tmp,) = tmp_path.iterdir()
        assert tmp.name.startswith(f".{path.name}.{os.getpid()}.") and tmp.name.endswith(TEMP_SUFFIX)
    assert path.read_bytes() == b"w"


@pytest.mark.parametrize("size", [0, 5, (1 << 20) + 7])
def test_file_sha256_is_hashlibs_over_the_whole_file(tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_a_temporary_file_removed_meanwhile_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = tmp_path / f".model.safetensors.1.abcd{TEMP_SUFFIX}"  # listed, then removed by another process
    monkeypatch.setattr(Path, "glob", lambda self, pattern: iter([gone]))
    assert remove_temp_files(tmp_path) == [gone]
