"""Atomic writes: a reader sees the old file or the new one, never a part of either; a write that
fails leaves the old file and no temporary file; the new file honours the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mixvae.atomic import TEMP_SUFFIX, atomic_open, atomic_write, remove_temp_files


def test_readers_see_the_old_file_until_the_block_ends(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"old contents")
    with atomic_open(path) as handle:
        handle.write(b"new")
        handle.flush()
        assert path.read_bytes() == b"old contents"  # not truncated, not half-written
        temps = list(tmp_path.glob(f".*{TEMP_SUFFIX}"))
        assert len(temps) == 1 and temps[0].read_bytes() == b"new"  # the write goes to a file beside it
        handle.write(b" contents")
    assert path.read_bytes() == b"new contents"
    assert sorted(tmp_path.iterdir()) == [path]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"old contents")
    with pytest.raises(KeyboardInterrupt), atomic_open(path) as handle:
        handle.write(b"half of the new")
        handle.flush()
        raise KeyboardInterrupt  # killed in the middle of a write
    assert path.read_bytes() == b"old contents"
    assert sorted(tmp_path.iterdir()) == [path]


def test_the_new_file_replaces_the_old_one_by_a_rename(tmp_path: Path) -> None:
    """A handle opened on the old file before the write still reads the old contents: the new file
    is another file renamed over the name, not the old one rewritten."""
    path = tmp_path / "eval.json"
    path.write_bytes(b"old contents")
    before = os.stat(path).st_ino
    with open(path, "rb") as reader:
        atomic_write(path, b"new contents")
        assert reader.read() == b"old contents"
    assert path.read_bytes() == b"new contents"
    assert os.stat(path).st_ino != before
    assert sorted(tmp_path.iterdir()) == [path]


def test_the_folder_is_made_and_the_umask_honoured(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "metrics.jsonl"
    old = os.umask(0o027)
    try:
        atomic_write(path, b"{}\n")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"{}\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640  # 0o666 & ~0o027, as open() would give


def test_remove_temp_files_removes_only_what_an_interrupted_write_leaves(tmp_path: Path) -> None:
    keep = [tmp_path / "step-00000001.pt", tmp_path / "notes.tmp"]
    left = tmp_path / f".step-00000002.pt.123.abcd{TEMP_SUFFIX}"
    for p in [*keep, left]:
        p.write_bytes(b"x")
    assert remove_temp_files(tmp_path) == [left]
    assert sorted(tmp_path.iterdir()) == sorted(keep)
    assert remove_temp_files(tmp_path / "missing") == []
