"""Atomic writes: permissions exactly as open() gives them, and writes into a folder that exists."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mixvae.atomic import TEMP_SUFFIX, atomic_open, atomic_write


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
