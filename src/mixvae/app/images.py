"""Images in and out of the app: PNG bytes for the browser, and uploads checked before they are decoded."""

from __future__ import annotations

import base64
import io
import json
import warnings
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from mixvae.data import DataError
from mixvae.kinds.images import read_file

__all__ = ["MAX_PIXELS", "MAX_UPLOAD_BYTES", "BadImage", "data_uri", "pixels_image", "png_bytes", "upload_image"]

MAX_UPLOAD_BYTES = 4 * 1024 * 1024  # a request body over this gets 413
MAX_PIXELS = 4096 * 4096  # an image declaring more pixels is refused before it is decoded (decompression bombs)


class BadImage(ValueError):
    """An uploaded image the app refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 (H, W) or (H, W, 3) -> PNG file contents."""

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


def upload_image(raw: bytes, cfg: Any) -> np.ndarray:
    """An uploaded image file as the input of the model configured by ``cfg``, read as training
    reads an image file (:func:`mixvae.kinds.images.read_file`). BadImage for anything else."""

    if not raw:
        raise BadImage("the upload is empty; expected a PNG, JPEG, BMP or GIF file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as pil:  # reads the header only
                w, h = pil.size
                kind = pil.format
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # Pillow's own limit, met first
        raise BadImage(f"the image declares more pixels than Pillow decodes safely, over the limit of {MAX_PIXELS} "
                       "pixels", 413) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise BadImage("the upload is not an image; expected a PNG, JPEG, BMP or GIF file") from None
    if kind not in ("PNG", "JPEG", "BMP", "GIF"):
        raise BadImage(f"the upload is a {kind} image; expected a PNG, JPEG, BMP or GIF file", 415)
    if w * h > MAX_PIXELS:
        raise BadImage(f"the image is {w}x{h} pixels, over the limit of {MAX_PIXELS} pixels", 413)
    try:
        return read_file(io.BytesIO(raw), cfg)  # PIL opens a file object as it opens a path
    except DataError:
        raise BadImage("the image cannot be decoded; expected a valid PNG, JPEG, BMP or GIF file") from None


def pixels_image(raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """A JSON body ``{"pixels": [[...], ...]}``: an array of ``shape`` ((H, W), or (H, W, C) in
    colour) with values in 0..255 -> uint8."""
    try:
        body = json.loads(raw)
        pixels = np.asarray(body["pixels"], dtype=np.float64)
    except (ValueError, TypeError, KeyError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise BadImage('the body is not {"pixels": [[...], ...]} with numbers in 0..255') from None
    if pixels.shape != tuple(shape):
        raise BadImage(f"the pixels have shape {pixels.shape}, but the model takes {tuple(shape)} images")
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
        raise BadImage("the pixels must be numbers in 0..255")
    return pixels.round().astype(np.uint8)
