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

import math
from typing import Any

import numpy as np
import torch

from mixvae.config import ModelConfig

__all__ = ["SCALE_FLOOR", "VAR_FLOOR", "feature_scaling", "gaussian_nll", "initial_log_var", "log_jacobian", "to_data_units",
           "to_model_units"]

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
