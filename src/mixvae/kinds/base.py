"""What every kind of input answers: its defaults, its likelihood, its units and its data.

A subclass per kind (:mod:`mixvae.kinds.images`, :mod:`mixvae.kinds.vectors`). The rest of
mixvae holds a kind object and asks it; nothing outside this package branches on the kind.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mixvae.config.schema import ModelConfig, RunConfig
from mixvae.nets import bernoulli_nll, gaussian_nll

__all__ = ["EvaluationError", "Kind", "Splits"]

# a split's data in the model's units, and its labels (None without)
Splits = dict[str, tuple[Any, "np.ndarray | None"]]


class EvaluationError(ValueError):
    """The data does not fit the run (for example images of another size)."""


class Kind:
    """One kind of input. Class attributes are its defaults and facts; methods its behaviour."""

    name: ClassVar[str] = ""
    input_type: ClassVar[str] = "images"  # what ``model.input_type`` stores for this kind
    shows_images: ClassVar[bool] = True  # figures, the explorer and image grids apply
    unit: ClassVar[str] = "img"  # a progress bar's unit
    learns_variance: ClassVar[bool] = False  # experts learn a variance per feature (model.log_var)
    neighbour_metric: ClassVar[str] = "cosine"
    self_label_entropy_weight: ClassVar[float] = 0.0

    # ------------------------------------------------------------ defaults
    def manager_network(self, model: ModelConfig) -> str:
        """The manager's network for ``model.manager_network = "auto"``."""
        return "mlp"

    @property
    def graph_features(self) -> str:
        """The neighbour graph's features, in words (for reports)."""
        return f"PCA, {self.neighbour_metric}"

    def recipe(self, model: dict[str, Any], train: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A preset's settings (model, train), adapted to this kind."""
        return model, train

    def for_size(self, cfg: RunConfig, n: int) -> RunConfig:
        """``cfg`` adapted to a training set of n samples (applied with the preset's budget)."""
        return cfg

    # ------------------------------------------------------------ likelihood
    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """The mean of p_k(x|z) from decoder pre-activations: pixel values in [0, 1]."""
        return torch.sigmoid(out)

    def nll(self, model: ModelConfig, x: torch.Tensor, out: torch.Tensor, log_var: torch.Tensor | None) -> torch.Tensor:
        """-log p_k(x|z) from decoder pre-activations out (K, B, D) -> (K, B)."""
        if model.likelihood == "bernoulli":
            return bernoulli_nll(x, out)
        return gaussian_nll(x, torch.sigmoid(out), model.gaussian_std)

    def initial_log_var(self, model: ModelConfig) -> float:
        """The learned log-variance's first value (kinds that learn one)."""
        raise NotImplementedError

    def bound(self, cfg: RunConfig) -> dict[str, str]:
        """What an importance-weighted bound of this kind is a bound of (eval.json's words)."""
        return {"likelihood": cfg.model.likelihood,
                "pixels": ("continuous in [0, 1], not binarised" if not cfg.train.binarize
                           else "binarised once, each pixel 1 with probability its intensity (seed 1)")}

    # ------------------------------------------------------------ units
    def log_jacobian(self, model: ModelConfig) -> float:
        """Subtract from a log density in the model's units to get nats of the data's own units."""
        return 0.0

    def to_data_units(self, model: ModelConfig, samples: np.ndarray) -> np.ndarray:
        """Decoder means (n, D) -> data as the user holds it: images (n, H, W[, C]) in [0, 1]."""
        return np.asarray(samples, np.float32).reshape(len(samples), *model.array_shape)

    # ------------------------------------------------------------ data (subclasses)
    def training_data(self, cfg: RunConfig, resume: bool) -> tuple[RunConfig, Any, Any]:
        """(config for this data, train, shown): the run's data in the model's units; ``shown`` the
        split its epochs are scored on (None without labels). The config has the data's shape (and
        scaling); :func:`mixvae.kinds.training_data` then fits its length to the data."""
        raise NotImplementedError

    def evaluation_splits(self, cfg: RunConfig, data: str | None) -> tuple[Splits, list[str] | None]:
        """The run's splits (or ``data``'s) in the model's units with labels, and class names."""
        raise NotImplementedError

    def read(self, path: Path, cfg: RunConfig, split: str = "train") -> tuple[list[str], Any]:
        """New data for a trained run (``predict``): (one name per sample, data in model units)."""
        raise NotImplementedError

    def read_all(self, paths: list[Path], cfg: RunConfig) -> tuple[list[str], np.ndarray]:
        """:meth:`read` of several files, one after the other, as one array."""
        names: list[str] = []
        parts = []
        for path in paths:
            n, part = self.read(path, cfg)
            names += n
            parts.append(part)
        return names, np.concatenate(parts)

    def collection(self, source: str, split: str, cfg: RunConfig,
                   log: Callable[[str], None] | None = None) -> tuple[list[str], Any, list[Path] | None]:
        """A dataset to assign to a trained run (``mixvae assign``): (a source name per sample, the
        data in model units, read on demand where it can be, the files or None)."""
        names, data = self.read(Path(source), cfg, split)
        return [str(i) for i in range(len(names))], data, None

    def write_samples(self, cfg: RunConfig, rows: list[np.ndarray], out: Path | None, run: Path,
                      labels: list[str], title: str) -> Path:
        """``mixvae sample``: each expert's samples (n, D) in model units, written to ``out``."""
        raise NotImplementedError
