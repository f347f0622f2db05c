"""Image arrays: the types every loader returns, and the checks that produce them.

Owns :class:`DataError` (every bad input raises it, with one sentence saying what was wrong,
what was expected and where), :class:`ImageData`, the validation that turns a user's array into
``(N, H, W)`` (grayscale) or ``(N, H, W, 3)`` (colour) ``uint8`` images and ``(N,)`` ``int64``
labels, the conversion of colour to grayscale, and resizing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]  # keys x_train, y_train, x_test, y_test
Split = tuple[np.ndarray, "np.ndarray | None"]  # (images (N, H, W[, 3]) uint8, labels (N,) int64 or None)

ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DataError(ValueError):
    """A data source is missing, malformed or could not be fetched."""


@dataclass(frozen=True)
class ImageData:
    """A set of grayscale or colour images with optional integer labels.

    Attributes
    ----------
    images : np.ndarray
        ``(N, H, W)`` (grayscale) or ``(N, H, W, 3)`` (RGB) ``uint8`` array
        (a read-only ``np.memmap`` for ``.npy`` inputs).
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


def one_line(text: object) -> str:
    """``str(text)`` on one line, runs of white space (newlines included) folded to one space."""
    return " ".join(str(text).split())


# ---------------------------------------------------------------- validation


def check_images(images: np.ndarray, where: str) -> np.ndarray:
    """Validate an image array and convert it to ``(N, H, W)`` or ``(N, H, W, 3)`` ``uint8``.

    Parameters
    ----------
    images : np.ndarray
        ``(N, H, W)``, ``(N, H, W, 1)``, ``(N, H, W, 3)`` (RGB, kept in
        colour) or ``(N, D)`` with ``D`` a perfect square. ``uint8`` is kept as is (a memmap stays a memmap), ``bool``
        becomes 0/255, floats must be finite and in ``[0, 1]`` (scaled by
        255 and rounded), other integers must lie in ``0..255``.
    where : str
        Where the array came from, used in error messages.

    Returns
    -------
    np.ndarray
        ``(N, H, W)`` or ``(N, H, W, 3)`` ``uint8`` array.

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
    if images.ndim == 4 and shape[3] == 3:
        return images
    if images.ndim == 3:
        return images
    if images.ndim == 2:
        side = round(shape[1] ** 0.5)
        if side * side == shape[1]:
            return images.reshape(shape[0], side, side)
        raise DataError(
            f"{where} has shape {shape} but {shape[1]} is not a perfect square; "
            "expected (N, H, W), (N, H, W, 1), (N, H, W, 3) or (N, D) with D a perfect square."
        )
    raise DataError(
        f"{where} has shape {shape}; expected (N, H, W), (N, H, W, 1), (N, H, W, 3) (RGB) "
        "or (N, D) with D a perfect square."
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


def check_labels(labels: Any, count: int, where: str) -> np.ndarray:
    """Validate the labels of ``count`` images and return them as ``(count,)`` ``int64``."""
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


def check_image_size(image_size: int | None) -> None:
    """Raise :class:`DataError` unless ``image_size`` is ``None`` or a positive integer."""
    if image_size is None:
        return
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise DataError(f"image_size must be a positive integer or None, got {image_size!r}.")


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Resize every image of an ``(N, H, W)`` or ``(N, H, W, 3)`` uint8 array to ``size``^2."""
    from PIL import Image  # Pillow only when images are resized: `mixvae.data` stays light

    if images.shape[1:3] == (size, size):
        return images

    out = np.empty((images.shape[0], size, size, *images.shape[3:]), dtype=np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(np.ascontiguousarray(image), mode="L" if image.ndim == 2 else "RGB")
        out[i] = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))
    return out


def to_grayscale(images: np.ndarray) -> np.ndarray:
    """``(N, H, W, 3)`` RGB uint8 -> ``(N, H, W)`` uint8 luma, L = 0.299 R + 0.587 G + 0.114 B in
    the fixed-point arithmetic of Pillow's ``convert("L")`` (so a colour folder read with
    ``grayscale`` gives the same pixels); grayscale images are returned as they are."""
    if images.ndim != 4:
        return images
    out = np.empty(images.shape[:3], dtype=np.uint8)
    for s in range(0, len(images), 4096):  # bounded memory for large (memory-mapped) arrays
        rgb = np.asarray(images[s:s + 4096], dtype=np.uint32)
        luma = rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000
        out[s:s + 4096] = (luma >> 16).astype(np.uint8)
    return out
