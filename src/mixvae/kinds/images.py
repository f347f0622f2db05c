"""Grey and colour images: pixels in [0, 1] (uint8 / 255 in the batches), a sigmoid decoder with a
Bernoulli or fixed-variance Gaussian likelihood, deformed views, and image grids to show them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mixvae import plots
from mixvae.config.resolve import config_from_dict
from mixvae.config.schema import ModelConfig, RunConfig
from mixvae.data import DataError, check_images, folder_class_names, image_files, load, load_split_pair, read_image
from mixvae.data.builtin import builtin_name
from mixvae.data.formats import idx_kind
from mixvae.kinds import arrays as inputs
from mixvae.kinds.base import EvaluationError, Kind, Splits

__all__ = ["ColourImages", "FileImages", "GreyImages", "array_shape", "as_images", "read_file", "readable_files"]


class GreyImages(Kind):
    """(N, H, W) images."""

    name = "grey images"

    def manager_network(self, model: ModelConfig) -> str:
        least = 2 ** len(model.manager_conv_channels)  # each convolution halves the height and width
        return "conv" if min(model.image_shape) >= least else "mlp"

    def training_data(self, cfg: RunConfig, resume: bool) -> tuple[RunConfig, Any, Any]:
        train, test = load_split_pair(cfg.data, image_size=cfg.image_size, grayscale=cfg.grayscale)
        shape, channels = _shape_and_channels(train.images)
        if not resume:
            cfg = config_from_dict({"model": {"image_shape": list(shape), "channels": channels}}, base=cfg)
        elif (tuple(cfg.model.image_shape), cfg.model.channels) != (shape, channels):
            raise DataError(f"the data's images are {shape} with {channels} channel(s), but the run was trained on "
                            f"{tuple(cfg.model.image_shape)} with {cfg.model.channels}")
        return cfg, train, test

    def evaluation_splits(self, cfg: RunConfig, data: str | None) -> tuple[Splits, list[str] | None]:
        # a one-channel model (whatever its run's grayscale setting) was trained on grayscale images
        grayscale = cfg.grayscale or cfg.model.channels == 1
        train, test = load_split_pair(data or cfg.data, image_size=cfg.image_size, grayscale=grayscale)
        shape, channels = _shape_and_channels(train.images)
        if channels != cfg.model.channels:
            raise EvaluationError(f"the data's images have {channels} channel(s), but the model was trained on "
                                  f"{cfg.model.channels}")
        if shape != tuple(cfg.model.image_shape):
            raise EvaluationError(f"the data's images are {shape}, but the model was trained on "
                                  f"{tuple(cfg.model.image_shape)}")
        splits: Splits = {name: (d.images, d.labels) for name, d in (("test", test), ("train", train)) if d is not None}
        return splits, folder_class_names(data or cfg.data)

    def read(self, path: Path, cfg: RunConfig, split: str = "train") -> tuple[list[str], Any]:
        model = cfg.model
        shape, gray = model.array_shape, model.channels == 1  # a one-channel model takes grayscale images
        if not path.exists():
            raise DataError(f"{path} does not exist")
        if path.suffix.lower() in (".npy", ".npz"):
            images = load(path, grayscale=gray).images
            names = [f"{path}[{i}]" for i in range(len(images))]
        else:
            # (1, H, W) or (1, H, W, 3), resized to the model's size
            images = read_image(path, model.image_shape, "L" if gray else "RGB")[None]
            names = [str(path)]
        images = check_images(images, str(path))
        if tuple(images.shape[1:]) != tuple(shape):
            raise DataError(f"{path} holds {tuple(images.shape[1:])} images, but the model takes {tuple(shape)}")
        return names, images

    def collection(self, source: str, split: str, cfg: RunConfig,
                   log: Callable[[str], None] | None = None) -> tuple[list[str], Any, list[Path] | None]:
        """An image folder gives its files' paths relative to it and images read on demand,
        converted to the model's size and colour; arrays give their indices and files None."""
        path = Path(source).expanduser()
        if builtin_name(source) is None and path.is_dir() and not any(idx_kind(p.name) for p in path.iterdir()):
            files = image_files(path)
            if not files:
                raise DataError(f"no images found in {path}; expected PNG/JPEG files")
            files = readable_files(files, cfg, log)
            return [f.relative_to(path).as_posix() for f in files], FileImages(files, cfg), files
        shape = tuple(cfg.model.array_shape)
        options: dict[str, Any] = {"grayscale": True} if len(shape) == 2 else {}
        images = load(source, split, image_size=cfg.image_size, log=log or (lambda m: None), **options).images
        if tuple(images.shape[1:]) != shape:
            raise DataError(f"{source} holds {tuple(images.shape[1:])} images, but the model takes {shape}")
        return [str(i) for i in range(len(images))], images, None

    def write_samples(self, cfg: RunConfig, rows: list[np.ndarray], out: Path | None, run: Path,
                      labels: list[str], title: str) -> Path:
        out = out or Path(run) / "samples.png"
        plots.sample_grid(np.stack(rows), cfg.model.array_shape, out, labels, title=title)
        return out

    def prepare(self, X: Any, flat_shape: tuple[int, int] | None = None) -> np.ndarray:
        """An array the estimator was given -> uint8 images (N, H, W) or (N, H, W, C)."""
        return as_images(X, flat_shape)


class ColourImages(GreyImages):
    """(N, H, W, C) images, flattened in (H, W, C) order."""

    name = "colour images"
    neighbour_metric = "euclidean"
    self_label_entropy_weight = 1.0


def _shape_and_channels(images: Any) -> tuple[tuple[int, int], int]:
    """(H, W) and the number of channels of (N, H, W) or (N, H, W, C) images."""
    return (int(images.shape[1]), int(images.shape[2])), int(images.shape[3]) if images.ndim == 4 else 1


def as_images(X: Any, flat_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Any accepted image input -> uint8 (N, H, W); ValueError with one sentence otherwise."""
    X = inputs.as_array(X)
    if X.ndim == 2 and X.shape[0] > 0:
        D = X.shape[1]
        if D == 0:
            raise ValueError(f"X has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
        if flat_shape is not None and D == flat_shape[0] * flat_shape[1]:
            X = X.reshape(X.shape[0], *flat_shape)
        elif round(D**0.5) ** 2 != D:
            X = X.reshape(X.shape[0], 1, D)  # a flat vector that is not a square image
    try:
        return check_images(X, "X")
    except DataError as e:
        negative = X.dtype.kind in "if" and bool((X < 0).any())  # NaN compares False: no all-NaN warning
        raise ValueError(f"Negative values in data passed to MixtureVAE: {e}" if negative else str(e)) from None


def array_shape(cfg: Any) -> tuple[int, ...]:
    """One input image of the run's model as an array: (H, W), or (H, W, C) for a colour model."""
    return tuple(cfg.model.array_shape)


def readable_files(files: list[Path], cfg: Any, log: Callable[[str], None] | None = None) -> list[Path]:
    """The files that read as the model's images (:func:`read_file`); one that does not is skipped
    and reported through ``log``, never the whole set (DataError when none reads)."""
    good, bad = [], []
    for f in files:
        try:
            read_file(f, cfg)
            good.append(f)
        except DataError as e:
            bad.append(str(e))
    if bad and log:
        log(f"mixvae: {len(bad)} of {len(files)} image files cannot be read and are skipped; the first: {bad[0]}")
    if not good:
        raise DataError(f"none of the {len(files)} image files can be read; the first: {bad[0]}")
    return good


def read_file(path: Path | Any, cfg: Any) -> np.ndarray:
    """One image file as the run's model takes it, converted as training converts a folder's images
    (:func:`mixvae.data.read_image`): grayscale or colour as the model, resized to its size."""

    shape = tuple(cfg.model.image_shape)
    if len(array_shape(cfg)) == 3:
        return read_image(path, shape, "RGB")  # colour models
    return read_image(path, shape)


class FileImages:
    """Image files read on demand as uint8 (N, *shape) arrays, each as :func:`read_file` reads it."""

    dtype = np.dtype(np.uint8)

    def __init__(self, files: list[Path], cfg: Any):
        self.files, self.cfg = list(files), cfg
        self.shape = (len(files), *array_shape(cfg))
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: Any) -> np.ndarray:
        """One image (an int), or the images of a slice or an array of indices."""
        if isinstance(index, (int, np.integer)):
            return read_file(self.files[int(index)], self.cfg)
        picks = self.files[index] if isinstance(index, slice) else [self.files[int(i)] for i in np.asarray(index).ravel()]
        out = np.empty((len(picks), *self.shape[1:]), dtype=np.uint8)  # (n, H, W) or (n, H, W, C)
        for j, path in enumerate(picks):
            out[j] = read_file(path, self.cfg)
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)
