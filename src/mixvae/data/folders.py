"""Folders of user data: image files (PNG/JPEG/BMP/GIF) or IDX files (:func:`load_folder`).

Owns reading one image file (:func:`read_image`), a folder's colour mode (:func:`folder_mode`: RGB
when any image has colour, unless grayscale is asked for), sub-folder names as labels, and
:class:`LazyImages` for image folders too large to hold in memory (:data:`LAZY_BYTES`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np

from mixvae.data.arrays import DataError, Split, one_line
from mixvae.data.builtin import builtin_name
from mixvae.data.formats import idx_kind, load_idx_folder

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif"})
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"})  # Pillow modes without colour

# ---------------------------------------------------------------- image files


def _find_image_files(folder: Path) -> list[Path]:
    """The image files under ``folder``; a file that is (or sits under) a link leading outside the
    folder is skipped with a warning: training, ``assign`` and the app read nothing outside it."""
    found: list[Path] = []
    outside: list[Path] = []
    root = folder.resolve()
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            (found if path.resolve().is_relative_to(root) else outside).append(path)
    if outside:
        warnings.warn(f"{len(outside)} image file(s) under {folder} link outside it and are skipped "
                      f"(the first: {outside[0].relative_to(folder)})", stacklevel=3)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def read_image(path: Path, image_size: int | tuple[int, int] | None, mode: str = "L") -> np.ndarray:
    """One image file as uint8 grayscale (H, W) (``mode`` "L", Pillow's luma) or RGB (H, W, 3)
    (``mode`` "RGB"), resized (bilinear) to ``image_size``: a side length, an (H, W) pair, or None
    to keep its size."""
    from PIL import Image  # Pillow only when an image file is read: `mixvae.data` stays light

    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    try:
        with Image.open(path) as pil:
            pil.load()
            gray = pil.convert(mode)
            if image_size is not None and gray.size != (image_size[1], image_size[0]):
                gray = gray.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
            return np.asarray(gray, dtype=np.uint8)
    except Exception as err:  # PIL raises many types for corrupt files  # noqa: BLE001
        reason = one_line(err) or type(err).__name__
        raise DataError(f"cannot read image {path} ({reason}); expected a valid PNG/JPEG/BMP/GIF file.") from None


def image_files(folder: Path) -> list[Path]:
    """The image files under ``folder``, sorted by path relative to it (hidden names skipped): the
    order in which a folder's images are loaded."""
    return _find_image_files(folder)


def folder_class_names(source: str | Path) -> list[str] | None:
    """The class names of a folder whose images each sit in one sub-folder: the sorted sub-folder
    names, indexed by the labels :func:`load_folder` gives. None for any other source."""

    if builtin_name(source) is not None:
        return None
    folder = Path(source).expanduser()
    if not folder.is_dir() or any(p.is_file() and idx_kind(p.name) for p in folder.iterdir()):
        return None
    parts = [p.relative_to(folder).parts for p in _find_image_files(folder)]
    if not parts or not all(len(x) == 2 for x in parts):
        return None
    return sorted({x[0] for x in parts})


def _has_colour(pil: Any) -> bool:
    """Whether an opened image has colour: not a gray mode, and for a palette image (a GIF, say) a
    palette with some entry whose R, G and B differ."""
    if pil.mode in GRAY_MODES:
        return False
    if pil.mode in ("P", "PA"):
        palette = pil.getpalette() or []
        return any(len(set(palette[i:i + 3])) > 1 for i in range(0, len(palette) - 2, 3))
    return True


def folder_mode(files: list[Path], grayscale: bool) -> str:
    """"RGB" when any of the image files has colour (and ``grayscale`` is False), else "L"; read
    from the file headers only."""
    from PIL import Image  # Pillow only when an image file is read: `mixvae.data` stays light

    if grayscale:
        return "L"

    for path in files:
        try:
            with Image.open(path) as pil:
                if _has_colour(pil):
                    return "RGB"
        except Exception:  # noqa: BLE001, S112  # an unreadable file is reported when it is read
            continue
    return "L"


def _folder_labels(folder: Path, files: list[Path]) -> np.ndarray | None:
    parents = [p.relative_to(folder).parts for p in files]
    if not all(len(parts) == 2 for parts in parents):
        return None
    classes = sorted({parts[0] for parts in parents})
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index[parts[0]] for parts in parents], dtype=np.int64)


def _skipped(folder: Path, bad: list[str], total: int) -> None:
    """Warn once of the files that cannot be read (DataError when none can)."""
    if len(bad) == total:
        raise DataError(bad[0] if total == 1 else f"none of the {total} image files under {folder} can be read; "
                                                  f"the first: {bad[0]}")
    if bad:
        warnings.warn(f"{len(bad)} of {total} image files under {folder} cannot be read and are skipped; the first: "
                      f"{bad[0]}", stacklevel=4)


def _openable(folder: Path, files: list[Path]) -> list[Path]:
    """The files whose header Pillow reads; the others are skipped with one warning, never the
    whole set (a file that opens but cannot be decoded is found when it is read)."""
    from PIL import Image  # Pillow only when an image file is read: `mixvae.data` stays light

    good, bad = [], []
    for path in files:
        try:
            with Image.open(path):
                good.append(path)
        except Exception as err:  # PIL raises many types for corrupt files  # noqa: BLE001
            bad.append(f"{path.relative_to(folder)} ({one_line(err) or type(err).__name__})")
    _skipped(folder, bad, len(files))
    return good


def _first_size(files: list[Path]) -> tuple[int, int]:
    """(H, W) of the first file whose header reads ((1, 1) when none does: reading them all then
    says why)."""
    from PIL import Image  # Pillow only when an image file is read: `mixvae.data` stays light

    for path in files:
        try:
            with Image.open(path) as pil:
                return pil.size[1], pil.size[0]
        except Exception:  # noqa: BLE001, S112  # an unreadable file is reported when it is read
            continue
    return 1, 1


def load_image_files(folder: Path, files: list[Path], image_size: int | None, grayscale: bool = False) -> Split:
    """The image ``files`` of ``folder`` read into memory, in colour when any has colour (unless
    ``grayscale``), with sub-folder labels when every file has one. A file that cannot be read
    is skipped with one warning for all of them, never the whole set."""
    mode = folder_mode(files, grayscale)
    read: list[np.ndarray] = []
    kept: list[Path] = []
    bad: list[str] = []
    for path in files:
        try:
            read.append(read_image(path, image_size, mode))
            kept.append(path)
        except DataError as err:
            bad.append(str(err))
    _skipped(folder, bad, len(files))
    first = read[0]
    images = np.empty((len(read),) + first.shape, dtype=np.uint8)
    for i, (path, image) in enumerate(zip(kept, read)):
        if image.shape != first.shape:
            raise DataError(
                f"images in {folder} have different sizes ({first.shape[1]}x{first.shape[0]} in {kept[0].name}, "
                f"{image.shape[1]}x{image.shape[0]} in {path.name}); pass --image-size N to resize them all to NxN."
            )
        images[i] = image
    return images, _folder_labels(folder, kept)


# Image folders larger than this (estimated as count x height x width bytes) are read lazily.
LAZY_BYTES = 1 << 30


class LazyImages:
    """The images of a folder, read from disk only when indexed.

    Behaves like a read-only uint8 array of shape (N, H, W), or (N, H, W, 3) in ``mode`` "RGB",
    for what training needs: ``len``, ``shape``, ``dtype``, and indexing with an int, a slice or an
    array of indices. Every image is converted to ``mode`` (and resized to ``image_size`` when
    given) as it is read, so memory holds only the batches in use.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, folder: Path, files: list[Path], image_size: int | None, mode: str = "L"):
        self.folder, self.files, self.image_size, self.mode = folder, list(files), image_size, mode
        channels = (3,) if mode == "RGB" else ()
        self.shape = (len(self.files), *_header_shape(folder, self.files, image_size), *channels)
        self.ndim = len(self.shape)

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
        image = read_image(self.files[i], self.image_size, self.mode)
        if image.shape != self.shape[1:]:
            raise DataError(
                f"{self.files[i]} is {image.shape[1]}x{image.shape[0]}, unlike the other images in {self.folder} "
                f"({self.shape[2]}x{self.shape[1]}); pass --image-size N to resize them all to NxN."
            )
        return image


def _header_shape(folder: Path, files: list[Path], image_size: int | None) -> tuple[int, int]:
    """(H, W) shared by every image, read from the file headers only."""
    from PIL import Image  # Pillow only when an image file is read: `mixvae.data` stays light

    if image_size is not None:
        return image_size, image_size

    sizes: dict[tuple[int, int], Path] = {}
    for path in files:
        try:
            with Image.open(path) as pil:
                sizes.setdefault(pil.size, path)
        except Exception as err:  # PIL raises many types for corrupt files  # noqa: BLE001
            reason = one_line(err) or type(err).__name__
            raise DataError(f"cannot read image {path} ({reason}); expected a valid PNG/JPEG/BMP/GIF file.") from None
        if len(sizes) > 1:
            (a, pa), (b, pb) = list(sizes.items())[:2]
            raise DataError(
                f"images in {folder} have different sizes ({a[0]}x{a[1]} in {pa.name}, {b[0]}x{b[1]} in {pb.name}); "
                "pass --image-size N to resize them all to NxN."
            )
    w, h = next(iter(sizes))
    return h, w


# ---------------------------------------------------------------- folders


def _no_data_message(folder: Path) -> str:
    arrays = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in {".npz", ".npy"})
    hint = f" (to use {arrays[0]}, pass its path instead of the folder)" if arrays else ""
    if not any(folder.iterdir()):
        return f"{folder} is an empty folder; expected PNG/JPEG files, IDX files or a .npz/.npy."
    return f"no images found in {folder}, expected PNG/JPEG files, IDX files or a .npz/.npy{hint}."


def load_folder(folder: Path, image_size: int | None, grayscale: bool = False) -> dict[str, Split]:
    """The splits of a folder: its IDX files if it has any, else its image files (lazily when large),
    in colour when any has colour, unless ``grayscale``."""
    idx = sorted(p for p in folder.iterdir() if p.is_file() and idx_kind(p.name))
    if idx:
        return load_idx_folder(folder, idx)
    files = _find_image_files(folder)
    if not files:
        raise DataError(_no_data_message(folder))
    h, w = (image_size, image_size) if image_size else _first_size(files)
    mode = folder_mode(files, grayscale)
    if len(files) * h * w * (3 if mode == "RGB" else 1) > LAZY_BYTES:
        files = _openable(folder, files)  # read on demand: unreadable headers are left out now
        lazy = cast(np.ndarray, LazyImages(folder, files, image_size, mode))  # it behaves as the array would
        return {"train": (lazy, _folder_labels(folder, files))}
    return {"train": load_image_files(folder, files, image_size, grayscale)}
