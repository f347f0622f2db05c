"""Real-valued vectors: the input scaling learned at fit, and the Gaussian with learned variances.

Vectors x in R^D (standardised measurements, embeddings from another model) are modelled in
standardised units u = (x - m) / s, with m and s each feature's mean and standard deviation over
the training data, s at least half the median feature's (stored in the model's configuration,
``feature_mean`` / ``feature_std``).
Expert k's decoder gives the mean of

    p_k(u | z) = N(u; decoder_k(z), diag(var_k)),    var_k = VAR_FLOOR + exp(log_var_k),

one learned variance per expert and feature. Densities move between the two units with the
Jacobian of the scaling: log p(x) = log p(u) - sum_d log s_d, so bounds on log p(x) are in nats
of the original data, and samples are mapped back by x = m + s u.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixvae.atomic import atomic_write
from mixvae.config.presets import PRESETS, preset
from mixvae.config.resolve import config_from_dict
from mixvae.config.schema import ModelConfig, RunConfig
from mixvae.data.arrays import DataError, ImageData
from mixvae.data.formats import npz_header
from mixvae.data.tables import label_names, load_vectors, read_csv, x_keys
from mixvae.kinds import arrays as inputs
from mixvae.kinds.arrays import input_type
from mixvae.kinds.base import Kind, Splits

__all__ = ["SCALE_FLOOR", "SMALL_VECTORS", "VAR_FLOOR", "Vectors", "feature_scaling", "gaussian_nll", "holds_vectors",
           "initial_log_var", "log_jacobian", "read_rows", "to_data_units", "to_model_units"]

SMALL_VECTORS = 10_000  # fewer rows: the experts' likelihood also trains the manager (``model.route_by_loss``)

VAR_FLOOR = 1e-3  # the smallest variance, in standardised units: a thousandth of the feature's
SCALE_FLOOR = 0.5  # no feature's scale is below this fraction of the median feature's standard deviation


def feature_scaling(X: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Each feature's mean and scale over X (N, D): its standard deviation, but at least
    ``SCALE_FLOOR`` times the median of the features' standard deviations, so that a nearly
    constant feature (a border pixel that is rarely on) is not blown up to the weight of the
    others; a constant feature gets 1 (or the floor, when that is larger)."""
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(0)
    spread = X.std(0)
    std = np.where(spread > 1e-12 * np.maximum(np.abs(mean), 1.0), spread, 1.0)
    std = np.maximum(std, SCALE_FLOOR * float(np.median(spread)))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _stats(config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    D = config.input_dim
    mean = np.asarray(config.feature_mean or np.zeros(D), np.float64)
    std = np.asarray(config.feature_std or np.ones(D), np.float64)
    return mean, std


def to_model_units(config: ModelConfig, X: Any) -> np.ndarray:
    """Vectors (N, D) in the data's units -> float32 (N, D) in the model's standardised units."""
    mean, std = _stats(config)
    return ((np.asarray(X, np.float64) - mean) / std).astype(np.float32)


def to_data_units(config: ModelConfig, U: Any) -> np.ndarray:
    """The inverse of :func:`to_model_units`: (N, D) standardised -> float64 (N, D) data units."""
    mean, std = _stats(config)
    return np.asarray(U, np.float64) * std + mean


def log_jacobian(config: ModelConfig) -> float:
    """sum_d log s_d: subtract it from a log density in model units to get nats of the data."""
    return float(np.log(_stats(config)[1]).sum())


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """-log N(x; mean, diag(VAR_FLOOR + exp(log_var))) summed over features.

    x (B, D), mean (K, B, D), log_var (K, 1, D) -> (K, B).
    """
    var = VAR_FLOOR + log_var.exp()  # (K, 1, D)
    sq = (x - mean).square() / var  # (K, B, D)
    return 0.5 * (sq + var.log() + math.log(2 * math.pi)).sum(-1)


def initial_log_var(std: float) -> float:
    """The ``log_var`` that gives the variance std^2 (at least twice the floor)."""
    return math.log(max(std * std - VAR_FLOOR, VAR_FLOOR))


class Vectors(Kind):
    """(N, D) real-valued vectors: a ``.csv`` table or a float ``.npy`` / ``.npz`` matrix.

    The labels of a ``label_column`` (or of an archive's ``y_train`` / ``y_test``) are used only
    to report ACC/NMI/ARI: on the test split when there is one, else on the training rows.
    """

    name = "vectors"
    input_type = "vectors"
    shows_images = False
    unit = "row"
    learns_variance = True

    def recipe(self, model: dict[str, Any], train: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The decoder's output is the mean of a Gaussian with a learned variance (initially the
        data's, 1 in standardised units); views for the routing regulariser add noise instead of
        deforming an image."""
        model = {**model, "likelihood": "gaussian", "gaussian_std": 1.0}
        train = {**train, "augment": False, "augment_flip": False, "binarize": False}
        if train.get("manager_regulariser", "none") != "none":
            train["view_noise"] = 0.1
        return model, train

    def for_size(self, cfg: RunConfig, n: int) -> RunConfig:
        """On a few hundred rows the neighbour graph says little, and the mixture's fit to the data
        says more: fewer than ``SMALL_VECTORS`` rows also let the likelihood train the manager.
        Vectors train once however few they are: restarts ranked by the neighbour graph's cut
        were measured on images alone (:mod:`mixvae.restarts`)."""
        if cfg.train.restarts == "auto":
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, restarts=1))
        if n >= SMALL_VECTORS:
            return cfg
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, route_by_loss=True))

    # ------------------------------------------------------------ likelihood and units
    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return out

    def nll(self, model: ModelConfig, x: torch.Tensor, out: torch.Tensor, log_var: torch.Tensor | None) -> torch.Tensor:
        assert log_var is not None, "a model of vectors has learned variances"
        return gaussian_nll(x, out, log_var)

    def initial_log_var(self, model: ModelConfig) -> float:
        return initial_log_var(model.gaussian_std)

    def bound(self, cfg: RunConfig) -> dict[str, str]:
        return {"likelihood": "gaussian, learned variances (vectors, nats of the data's units)"}

    def log_jacobian(self, model: ModelConfig) -> float:
        return log_jacobian(model)

    def to_data_units(self, model: ModelConfig, samples: np.ndarray) -> np.ndarray:
        return to_data_units(model, samples)

    # ------------------------------------------------------------ data
    def training_data(self, cfg: RunConfig, resume: bool) -> tuple[RunConfig, Any, Any]:
        path = Path(str(cfg.data)).expanduser()
        splits = load_vectors(path, cfg.label_column)
        X, labels = splits["train"]
        if X.ndim != 2 or len(X) < 2 or X.shape[1] < 1:
            raise DataError(f"{cfg.data} holds an array of shape {X.shape}; expected (samples >= 2, features >= 1)")
        try:
            X = inputs.as_vectors(X)
            splits = {k: (inputs.as_vectors(x, X.shape[1]), y) for k, (x, y) in splits.items()}
        except ValueError as e:
            raise DataError(f"{cfg.data}: {e}") from None
        D = int(X.shape[1])
        if not resume:
            base = cfg
            if cfg.preset in PRESETS:
                recipe = preset(cfg.preset, cfg.model.n_components, (1, D), self)
                base = dataclasses.replace(cfg, model=recipe.model, train=recipe.train)
            mean, std = feature_scaling(X)
            cfg = config_from_dict({"model": {**_changed(cfg), "input_type": self.input_type, "image_shape": [1, D],
                                              "feature_mean": list(mean), "feature_std": list(std)},
                                    "train": _changed(cfg, "train")}, base=base)
        elif cfg.model.input_dim != D:
            raise DataError(f"{cfg.data} has {D} features, but the run was trained on {cfg.model.input_dim}")
        train = ImageData(to_model_units(cfg.model, X), labels, str(cfg.data))
        test_x, test_y = splits.get("test", (X, labels))
        shown = ImageData(to_model_units(cfg.model, test_x), test_y, str(cfg.data)) if test_y is not None else None
        return cfg, train, shown

    def evaluation_splits(self, cfg: RunConfig, data: str | None) -> tuple[Splits, list[str] | None]:
        if data is not None:
            raise DataError("--data is for runs on images; a run on vectors is evaluated on its own data")
        path = Path(str(cfg.data)).expanduser()
        try:
            splits: Splits = {k: (to_model_units(cfg.model, inputs.as_vectors(x, cfg.model.input_dim)), y)
                              for k, (x, y) in load_vectors(path, cfg.label_column).items()}
        except ValueError as e:
            raise DataError(f"{cfg.data}: {e}") from None
        names = None
        if cfg.label_column is not None and str(cfg.data).lower().endswith(".csv"):
            names = label_names(path, cfg.label_column)  # labels index them: a .csv's label column, sorted
        return {k: splits[k] for k in ("test", "train") if k in splits}, names

    def read(self, path: Path, cfg: RunConfig, split: str = "train") -> tuple[list[str], Any]:
        rows = read_rows(path, cfg, split)
        return [f"{path}[{i}]" for i in range(len(rows))], to_model_units(cfg.model, rows)

    def write_samples(self, cfg: RunConfig, rows: list[np.ndarray], out: Path | None, run: Path,
                      labels: list[str], title: str) -> Path:
        """A .csv of the samples in the data's units, one row each, its expert first."""
        out = out or Path(run) / "samples.csv"
        lines = [",".join(["expert", *(f"x{d}" for d in range(cfg.model.input_dim))])]
        for k, samples in enumerate(rows):
            lines += [",".join([str(k), *(repr(float(v)) for v in row)])
                      for row in to_data_units(cfg.model, np.asarray(samples))]
        atomic_write(out, ("\n".join(lines) + "\n").encode())
        return out


def _changed(cfg: RunConfig, section: str = "model") -> dict[str, Any]:
    """The settings of ``section`` where the resolved images config differs from its preset: those
    the user set, carried over to the preset's recipe for vectors."""
    if cfg.preset not in PRESETS:
        return {}
    ref = preset(cfg.preset, cfg.model.n_components, cfg.model.image_shape).to_dict()[section]
    mine = cfg.to_dict()[section]
    skip = {"image_shape", "channels", "input_type", "feature_mean", "feature_std"}
    return {k: v for k, v in mine.items() if v != ref[k] and k not in skip}


def read_rows(path: Path, cfg: RunConfig, split: str = "train") -> np.ndarray:
    """The rows of a vectors file for a run on vectors, as ``mixvae predict`` and ``mixvae assign``
    take them: float64 (N, D) in the data's units.

    A ``.csv`` has the training table's columns; the run's ``label_column``, when the file has
    it, is dropped (its labels are not used). A ``.npy`` is one matrix; an ``.npz`` holds
    ``x_train`` / ``x_test`` (``split``) or ``x``. A missing file, a wrong number of features,
    NaN/inf or a value that is not a number raise a :class:`DataError` naming the file.
    """
    path = Path(path).expanduser()
    D = int(cfg.model.input_dim)
    if not path.is_file():
        raise DataError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npy", ".npz"):
        raise DataError(f"{path} is not a .csv, .npy or .npz file; a run on vectors takes rows of {D} numbers")
    try:
        if suffix == ".csv":
            X = _csv_rows(path, cfg.label_column, D)
        else:
            splits = load_vectors(path)
            if split not in splits:
                raise DataError(f"{path} has no {split} split; expected x_{split} in the archive")
            X = splits[split][0]
    except DataError as e:
        raise DataError(str(e).replace(" (name a label column with --label-column)", "").rstrip(".")) from None
    if X.ndim != 2:
        raise DataError(f"{path} holds an array of shape {X.shape}; expected rows of {D} numbers (samples, {D})")
    if X.shape[1] != D:
        raise DataError(f"{path} has {X.shape[1]} features per row, but the run was trained on {D}")
    if len(X) == 0:
        raise DataError(f"{path} holds no rows; expected at least one")
    try:
        return inputs.as_vectors(X, D)
    except ValueError as e:
        raise DataError(f"{path} {str(e).removeprefix('X ').rstrip('.')}") from None


def _csv_rows(path: Path, label_column: str | None, D: int) -> np.ndarray:
    """A .csv's features: without the run's label column when the file has it and then has D
    features, else every column (a table of features alone)."""
    errors: list[DataError] = []
    widths = []
    for column in ([label_column] if label_column is not None else []) + [None]:
        try:
            X, _ = read_csv(path, column)
        except DataError as e:
            errors.append(e)
            continue
        if X.shape[1] == D:
            return X
        widths.append(X.shape[1])
    if widths:
        raise DataError(f"{path} has {widths[0]} features per row, but the run was trained on {D}"
                        + (f" (besides its label column {label_column!r})" if label_column is not None else ""))
    # a file without the label column is read whole: its error, not "no such column", is the one to show
    raise next((e for e in errors if "has no column" not in str(e)), errors[0])


def holds_vectors(path: Path) -> bool:
    """Whether ``path`` is a table or an array of real-valued vectors (not of images)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return True
    if suffix not in (".npy", ".npz") or not path.is_file():
        return False
    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            array = loaded
        else:
            with loaded:
                key = x_keys(loaded)[0]
                shape, _, dtype = npz_header(path, key)  # images are told apart from their header alone
                if dtype.kind != "f" or len(shape) != 2:
                    return False
                array = loaded[key]
        return array.dtype.kind == "f" and array.ndim == 2 and input_type(np.asarray(array)) == Vectors.input_type
    except Exception:  # noqa: BLE001 - an unreadable file is the image loader's to report
        return False
