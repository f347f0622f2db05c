"""Reading rows of an image array, in memory or in a file on disk.

A ``.npy`` file (or an uncompressed ``.npz`` member) is opened as a read-only memory map. Rows read
*through* the map stay in the process's resident memory as long as the kernel keeps them cached,
so a pass over a 10-million-image file would count its 7.8 GB against the process. Here a memory
map's rows are read from its file with ``preadv`` instead: they pass through the page cache, which
the kernel reclaims freely, and the process holds only the rows it asked for.
"""

from __future__ import annotations

import mmap
import os
from typing import Any

import numpy as np
import torch

__all__ = ["Subset", "file_rows", "read_range", "read_rows"]


def file_rows(images: Any) -> tuple[str, int, int] | None:
    """(file, byte offset of row 0, bytes per row) of a C-ordered memory map, or of a C-ordered view
    that starts where its memory map starts (a reshape, say: (N, D) read as (N, H, W)); None for
    anything else (read as usual, through indexing)."""
    if not isinstance(images, np.memmap) or not images.flags.c_contiguous or images.ndim < 1 or not hasattr(os, "preadv"):
        return None
    root = images
    while isinstance(root.base, np.memmap):  # a view of a view: back to the array the file was mapped as
        root = root.base
    if not isinstance(root.base, mmap.mmap) or root.filename is None or not root.flags.c_contiguous \
            or root.ctypes.data != images.ctypes.data:
        return None
    return str(root.filename), int(root.offset), int(images.itemsize * np.prod(images.shape[1:], dtype=np.int64))


def _pread(fd: int, view: memoryview, position: int) -> None:
    """Fill ``view`` with the file's bytes from ``position`` on (several reads when the kernel
    returns fewer bytes than asked)."""
    while len(view):
        got = os.preadv(fd, [view], position)
        if got <= 0:
            raise OSError(f"the file ended {len(view)} bytes before the rows it should hold")
        view, position = view[got:], position + got


def _runs(idx: np.ndarray) -> list[tuple[int, int, int]]:
    """(first output row, first index, length) of each run of consecutive indices in sorted idx."""
    if len(idx) == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(idx)]])
    return [(int(a), int(idx[a]), int(b - a)) for a, b in zip(starts, stops)]


def _read_sorted(images: Any, idx: np.ndarray) -> np.ndarray:
    """Rows idx (n,), sorted ascending, as a new array (n, ...) of images' dtype."""
    where = file_rows(images)
    if where is None:
        return np.asarray(images[idx])
    if len(idx) and (idx[0] < 0 or idx[-1] >= len(images)):
        raise IndexError(f"rows {idx[0]} to {idx[-1]} asked of an array of {len(images)} rows")
    path, offset, row = where
    out = np.empty((len(idx), *images.shape[1:]), images.dtype)
    if row == 0 or len(idx) == 0:
        return out
    buffer = memoryview(out.reshape(-1).view(np.uint8).data)
    fd = os.open(path, os.O_RDONLY)
    try:
        for first, index, length in _runs(idx):
            _pread(fd, buffer[first * row:(first + length) * row], offset + index * row)
    finally:
        os.close(fd)
    return out


def read_rows(images: Any, idx: np.ndarray) -> np.ndarray:
    """Images idx (n,) of an (N, H, W) array, in memory or on disk -> (n, H, W) of the same dtype.

    Rows are read in increasing order (runs of consecutive rows in one read), which keeps reads
    from a file close to sequential.
    """
    idx = np.asarray(idx)
    order = np.argsort(idx, kind="stable")
    # uint8 unless the rows say otherwise (vectors are floats); a torch dtype in numpy's terms
    dtype = torch.empty(0, dtype=images.dtype, device="cpu").numpy().dtype if torch.is_tensor(images) \
        else getattr(images, "dtype", np.uint8)
    rows = np.empty((len(idx), *images.shape[1:]), dtype)
    rows[order] = np.asarray(images[idx[order]]) if torch.is_tensor(images) else _read_sorted(images, idx[order])
    return rows


def read_range(images: Any, start: int, stop: int | None) -> Any:
    """Rows start:stop of ``images``: a tensor's or an in-memory array's own slice (no copy), or
    a new array read from a memory map's file."""
    if file_rows(images) is None:
        return images[start:stop]
    begin, end, _ = slice(start, stop).indices(len(images))
    return _read_sorted(images, np.arange(begin, max(begin, end), dtype=np.int64))


class Subset:
    """Rows ``pick`` of ``images``, read a slice at a time when sliced (nothing is read up front)."""

    def __init__(self, images: Any, pick: np.ndarray):
        self.images, self.pick = images, np.asarray(pick)
        self.shape = (len(self.pick), *images.shape[1:])
        self.dtype = images.dtype

    def __len__(self) -> int:
        return len(self.pick)

    def __getitem__(self, index: slice) -> np.ndarray:
        return read_rows(self.images, self.pick[index])
