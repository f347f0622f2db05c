"""Data layer of mixvae: built-in datasets, user data and validation.

Every loader returns an :class:`ImageData` whose ``images`` are an
``(N, H, W)`` ``uint8`` array (a read-only ``np.memmap`` for ``.npy``
inputs) and whose ``labels`` are ``(N,)`` ``int64`` or ``None``.

Built-in datasets (``"mnist"``, ``"fashion-mnist"``) are fetched on first
use from a list of sources (:data:`mixvae.data.builtin.SOURCES`), verified
against hard-coded checksums and cached as ``<home>/<name>.npz`` where
``home`` is :func:`mixvae_home`.

Every bad input raises :class:`DataError` with one sentence saying what was
wrong, what was expected and where.

The modules, by concern:

- :mod:`~mixvae.data.arrays`: :class:`ImageData`, :class:`DataError` and the validation of arrays;
- :mod:`~mixvae.data.formats`: IDX, ``.npz`` and ``.npy`` files;
- :mod:`~mixvae.data.folders`: folders of image or IDX files, :class:`LazyImages`;
- :mod:`~mixvae.data.builtin`: the built-in datasets, their checksums and the cache;
- :mod:`~mixvae.data.sources`: where the built-in datasets are fetched from;
- :mod:`~mixvae.data.unpickle`: MNIST from a pickle, read by a restricted unpickler;
- :mod:`~mixvae.data.loading`: :func:`load` and :func:`load_split_pair`.
"""

from __future__ import annotations

from mixvae.data.arrays import DataError, ImageData, check_images
from mixvae.data.builtin import BUILTIN, fetch, mixvae_home
from mixvae.data.folders import LazyImages, folder_class_names, image_files, read_image
from mixvae.data.loading import load, load_split_pair

__all__ = [
    "BUILTIN",
    "DataError",
    "ImageData",
    "LazyImages",
    "check_images",
    "fetch",
    "folder_class_names",
    "image_files",
    "load",
    "load_split_pair",
    "mixvae_home",
    "read_image",
]
