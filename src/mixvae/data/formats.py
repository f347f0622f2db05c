"""Array file formats: IDX files (gzipped or not), ``.npz`` archives and ``.npy`` arrays.

Every reader validates what it reads (:func:`mixvae.data.arrays.check_images`) and raises
:class:`DataError` naming the file.
"""

from __future__ import annotations

import gzip
import re
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mixvae import memory
from mixvae.data.arrays import DataError, Split, check_images, check_labels, one_line

# ---------------------------------------------------------------- IDX


def decompress(raw: bytes, where: str) -> bytes:
    """``raw`` gunzipped when it starts with the gzip magic number, else ``raw`` itself."""
    if not raw.startswith(b"\x1f\x8b"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{where} is not a valid gzip file ({one_line(err)}); expected a gzipped IDX file.") from None


def parse_idx(raw: bytes, ndim: int, where: str) -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file of unsigned bytes.

    Parameters
    ----------
    raw : bytes
        The file content.
    ndim : int
        Expected number of dimensions (3 for images, 1 for labels).
    where : str
        Used in error messages.

    Returns
    -------
    np.ndarray
        A writable ``uint8`` array of the shape given in the header.

    Raises
    ------
    DataError
        On a wrong magic number, a dtype other than ``0x08`` (unsigned
        byte), an unexpected number of dimensions or a size mismatch.
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        magic = raw[:4].hex() or "empty"
        raise DataError(f"{where} is not an IDX file (magic number {magic}); expected it to start with 0000.")
    if raw[2] != 0x08:
        raise DataError(f"{where} has IDX dtype code 0x{raw[2]:02x}; only 0x08 (unsigned byte) is supported.")
    if raw[3] != ndim:
        what = "images" if ndim == 3 else "labels"
        raise DataError(f"{where} has {raw[3]} IDX dimensions; expected {ndim} ({what}).")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{where} is truncated inside its IDX header ({len(raw)} bytes); expected at least {header}.")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(dims, dtype=object))
    if len(raw) - header != size:
        raise DataError(
            f"{where} has {len(raw) - header} data bytes; expected {size} for shape {dims} "
            "(truncated or corrupt IDX file)."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The IDX file at ``path`` (gzipped or not) as a ``uint8`` array (see :func:`parse_idx`)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path} ({one_line(err)}); expected a readable IDX file.") from None
    return parse_idx(decompress(raw, str(path)), ndim, str(path))


def idx_kind(name: str) -> str | None:
    """``"images"`` or ``"labels"`` for a file named like an IDX file of that kind, else ``None``."""
    lower = name.lower()
    if "images" in lower and "idx3" in lower:
        return "images"
    if "labels" in lower and "idx1" in lower:
        return "labels"
    return None


def _idx_split(name: str) -> str | None:
    tokens = set(re.split(r"[-_.\s]+", name.lower()))
    if "train" in tokens:
        return "train"
    if tokens & {"t10k", "test"}:
        return "test"
    return None


def _assign_idx_splits(folder: Path, files: list[Path]) -> dict[str, dict[str, Path]]:
    splits = {p: _idx_split(p.name) for p in files}
    if any(s is None for s in splits.values()):
        if any(s is not None for s in splits.values()):
            unsplit = next(p for p, s in splits.items() if s is None)
            raise DataError(
                f"cannot tell which split {unsplit} belongs to; expected IDX files in {folder} "
                "to be named with a train or t10k prefix."
            )
        splits = dict.fromkeys(files, "train")
    table: dict[str, dict[str, Path]] = {}
    for path, split in splits.items():
        kind = idx_kind(path.name)
        assert split is not None and kind is not None  # every file is an IDX file and has a split by now
        slot = table.setdefault(split, {})
        if kind in slot:
            raise DataError(
                f"found two {kind} files for split {split} in {folder} "
                f"({slot[kind].name} and {path.name}); expected one."
            )
        slot[kind] = path
    return table


def load_idx_folder(folder: Path, files: list[Path]) -> dict[str, Split]:
    """The splits of the IDX ``files`` of ``folder``, told apart by a train or t10k/test prefix."""
    table = _assign_idx_splits(folder, files)
    if "train" not in table:
        raise DataError(f"{folder} has test IDX files but no train images file; expected train-images-idx3-ubyte[.gz].")
    out: dict[str, Split] = {}
    for split, slot in table.items():
        if "images" not in slot:
            raise DataError(
                f"{slot['labels']} has no matching images file for split {split} in {folder}; expected *images*idx3*."
            )
        images = check_images(read_idx(slot["images"], 3), str(slot["images"]))
        labels = None
        if "labels" in slot:
            labels = check_labels(read_idx(slot["labels"], 1), len(images), str(slot["labels"]))
        out[split] = (images, labels)
    return out


# ---------------------------------------------------------------- npz / npy


_NPZ_STYLES = (("x_train", "y_train", "x_test", "y_test"), ("images", "labels"), ("x", "y"))
# What numpy and zipfile raise on corrupt .npz/.npy files (header parsing uses tokenize and ast).
NPZ_ERRORS = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    TypeError,
    NotImplementedError,
    RuntimeError,
    SyntaxError,
    tokenize.TokenError,
    zlib.error,
    struct.error,
)


def open_npz(path: Path) -> Any:
    """Open ``path`` as an ``NpzFile``; DataError if it is not a readable archive."""
    try:
        archive = np.load(path, allow_pickle=False)
    except NPZ_ERRORS as err:
        raise DataError(f"cannot read {path} ({one_line(err)}); expected an intact .npz archive.") from None
    if not hasattr(archive, "files"):
        raise DataError(f"{path} holds a single .npy array; expected a .npz archive (or rename it to .npy).")
    return archive


# an archive is refused when its arrays would take more than this share of the available memory
NPZ_MEMORY_SHARE = 0.5


def check_npz_fits(path: Path) -> None:
    """DataError naming the size and the way out when ``path``'s arrays that are read into memory
    (the compressed ones, inflated; stored uint8 images are memory-mapped, see
    :func:`stored_array`) would not fit in the memory available now."""

    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(info.file_size for info in archive.infolist()
                           if stored_array(path, info.filename.removesuffix(".npy")) is None)
    except (zipfile.BadZipFile, OSError):
        return  # not a zip archive: reading it gives the usual one-line error
    free = memory.available_memory()
    if free is not None and inflated > NPZ_MEMORY_SHARE * free:
        raise DataError(
            f"{path} holds {memory.format_bytes(inflated)} of arrays once read ({memory.format_bytes(path.stat().st_size)} on "
            f"disk), more than half of the {memory.format_bytes(free)} of memory available; save the images as an "
            "uncompressed .npy file (np.save('images.npy', x)), which mixvae reads from disk as a memory map."
        )


def _read_header(handle: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from the ``.npy`` header at the handle's position."""
    version = np.lib.format.read_magic(handle)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(handle)


def npz_header(path: Path, key: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) of array ``key`` of the archive ``path``, from its header alone
    (nothing else is read or inflated)."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as handle:
        return _read_header(handle)


def stored_array(path: Path, key: str) -> np.memmap | None:
    """Array ``key`` of the archive ``path`` as a read-only memory map, when it is stored without
    compression (``np.savez``) as C-ordered uint8 images; else None (it is then read into memory).

    An uncompressed archive member is a ``.npy`` file inside the zip file: its bytes lie in
    ``path`` at the member's offset after the zip entry's local header and the ``.npy`` header, so
    the images are read from disk as they are needed, as for a ``.npy`` file.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(f"{key}.npy")
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:  # compressed or encrypted
            return None
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            local = handle.read(30)  # the entry's local header: its name and extra field lengths vary
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                return None
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            handle.seek(info.header_offset + 30 + name_length + extra_length)
            shape, fortran, dtype = _read_header(handle)
            offset = handle.tell()
        if dtype != np.uint8 or fortran or len(shape) < 2 or offset + int(np.prod(shape)) > info.header_offset + \
                30 + name_length + extra_length + info.file_size:
            return None
        return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=shape)
    except NPZ_ERRORS:
        return None  # not readable as a stored member: reading it the usual way reports why


def load_npz(path: Path) -> dict[str, Split]:
    """The splits of a ``.npz`` archive, by one of the key styles in ``_NPZ_STYLES``."""
    check_npz_fits(path)
    with open_npz(path) as archive:
        try:
            return _npz_splits(path, archive)
        except DataError:
            raise
        except NPZ_ERRORS as err:
            raise DataError(f"cannot read {path} ({one_line(err)}); expected an intact .npz archive.") from None


def _npz_splits(path: Path, archive: Any) -> dict[str, Split]:
    keys = set(archive.files)
    for style in _NPZ_STYLES:
        if style[0] in keys:
            return _npz_style(path, archive, style)
    styles = ["/".join(style) for style in _NPZ_STYLES]
    expected = ", ".join(styles[:-1]) + " or " + styles[-1]
    raise DataError(f"{path} has keys [{', '.join(sorted(keys))}]; expected {expected} (labels optional).")


def _npz_style(path: Path, archive: Any, style: tuple[str, ...]) -> dict[str, Split]:
    pairs = [("train", style[0], style[1])]
    if len(style) == 4 and style[2] in archive.files:
        pairs.append(("test", style[2], style[3]))
    out: dict[str, Split] = {}
    for split, x_key, y_key in pairs:
        stored = stored_array(path, x_key)  # a memory map when stored uncompressed, as a .npy file is
        images = check_images(archive[x_key] if stored is None else stored, f"{path} (key '{x_key}')")
        labels = None
        if y_key in archive.files:
            labels = check_labels(archive[y_key], len(images), f"{path} (key '{y_key}')")
        out[split] = (images, labels)
    return out


def load_npy(path: Path) -> np.ndarray:
    """The images of a ``.npy`` array, memory-mapped read-only when already ``uint8``."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except NPZ_ERRORS as err:
        raise DataError(f"cannot read {path} ({one_line(err)}); expected a .npy image array.") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise DataError(f"{path} is a .npz archive, not a .npy array; expected a .npy array (or rename it to .npz).")
    return check_images(array, str(path))
