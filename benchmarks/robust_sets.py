"""Image sets beyond MNIST's training split, for ``benchmarks/robust.py``: each a function of no
arguments returning (uint8 images (N, H, W) or (N, H, W, 3), int labels (N,), a description).

Every set is made from data that ships in a package registry, so anyone can remake it:

- ``digits8``: scikit-learn's 1,797 8x8 digits (``load_digits``), 0..16 scaled to 0..255.
- ``mnist-test`` / ``fashion-test``: the 10,000 test images of the built-in data sets.
- ``mnist-test-inverted``: the same MNIST images, dark digits on a light background (255 - x).
- ``photo-patches``: 600 random 32x32 colour crops from each of six photographs in the
  scikit-image wheel (astronaut, chelsea, coffee, hubble_deep_field, ihc, rocket), each photo
  shrunk to 256 pixels on its short side first; the class is the photograph.
- ``photo-patches-2``: the same from five other photographs: scikit-learn's two sample images
  (china, flower), matplotlib's grace_hopper, and scikit-image's motorcycle_left and retina.

The scikit-image wheel is fetched with ``pip download --no-deps`` into the mixvae cache once
(nothing is installed); its PNG/JPEG files are read straight from the wheel.
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mixvae.data import load_split_pair, mixvae_home

Set = tuple[np.ndarray, np.ndarray, str]

SKIMAGE_WHEEL = "scikit-image==0.26.0"
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png", "rocket.jpg")


def digits8() -> Set:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8)
    return images, d.target.astype(np.int64), "scikit-learn's 8x8 digits (1,797)"


def mnist_test() -> Set:
    _, test = load_split_pair("mnist")
    return np.asarray(test.images), np.asarray(test.labels), "MNIST test split (10,000)"


def mnist_test_inverted() -> Set:
    images, labels, _ = mnist_test()
    return 255 - images, labels, "MNIST test split inverted: dark digits on a light background (10,000)"


def fashion_test() -> Set:
    _, test = load_split_pair("fashion-mnist")
    return np.asarray(test.images), np.asarray(test.labels), "Fashion-MNIST test split (10,000)"


def _skimage_wheel() -> Path:
    folder = mixvae_home() / "wheels"
    found = sorted(folder.glob("scikit_image-*.whl"))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        SKIMAGE_WHEEL, "-d", str(folder)], check=True)
        found = sorted(folder.glob("scikit_image-*.whl"))
    return found[-1]


def _shrunk(data: bytes, short_side: int = 256) -> np.ndarray:
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    scale = short_side / min(img.size)
    img = img.resize((max(short_side, round(img.size[0] * scale)), max(short_side, round(img.size[1] * scale))),
                     Image.Resampling.LANCZOS)
    return np.asarray(img)  # (H, W, 3)


def _crops(photos: list[np.ndarray], per_class: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images, labels = [], []
    for c, photo in enumerate(photos):
        ys = rng.integers(0, photo.shape[0] - size + 1, per_class)
        xs = rng.integers(0, photo.shape[1] - size + 1, per_class)
        images += [photo[y:y + size, x:x + size] for y, x in zip(ys, xs)]
        labels += [c] * per_class
    return np.stack(images).astype(np.uint8), np.array(labels, np.int64)


def photo_patches(per_class: int = 600, size: int = 32) -> Set:
    with zipfile.ZipFile(_skimage_wheel()) as wheel:
        photos = [_shrunk(wheel.read(f"skimage/data/{name}")) for name in PHOTOS]
    images, labels = _crops(photos, per_class, size)
    return images, labels, f"32x32 crops of six scikit-image photographs, {per_class} each; class = photograph"


def photo_patches_2(per_class: int = 600, size: int = 32) -> Set:
    import matplotlib
    import sklearn.datasets

    sk = Path(sklearn.datasets.__file__).parent / "images"
    files = [sk / "china.jpg", sk / "flower.jpg", Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]
    photos = [_shrunk(f.read_bytes()) for f in files]
    with zipfile.ZipFile(_skimage_wheel()) as wheel:
        photos += [_shrunk(wheel.read(f"skimage/data/{name}")) for name in ("motorcycle_left.png", "retina.jpg")]
    images, labels = _crops(photos, per_class, size)
    return images, labels, f"32x32 crops of five photographs (scikit-learn, matplotlib, scikit-image), {per_class} each"


SETS: dict[str, Callable[[], Set]] = {
    "digits8": digits8,
    "mnist-test": mnist_test,
    "mnist-test-inverted": mnist_test_inverted,
    "fashion-test": fashion_test,
    "photo-patches": photo_patches,
    "photo-patches-2": photo_patches_2,
}
