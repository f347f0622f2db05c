"""What a user hands the estimator: an array of images or of real-valued vectors, and which it is.

:func:`as_array` reads any accepted container (numpy array, torch tensor, nested lists, a pandas
frame) as one numeric numpy array; :func:`input_type` decides between images and vectors;
:func:`as_vectors` validates vectors. Each bad input raises a ``ValueError`` (or ``TypeError``
for values that are not numbers) with one sentence naming the problem.

The decision (``input_type="auto"``): an array of 3 or more dimensions is images; a 2-D array is
images when its values look like pixels (``uint8`` or ``bool``, or floats in [0, 1]) *and* its
width is a square image of at least 8 x 8 pixels (``MIN_IMAGE_SIDE``); anything else is vectors.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["INPUT_TYPES", "MIN_IMAGE_SIDE", "as_array", "as_vectors", "input_type"]

INPUT_TYPES = ("auto", "images", "vectors")
MIN_IMAGE_SIDE = 8


def as_array(X: Any) -> np.ndarray:
    """Any accepted input -> a numeric numpy array (complex, sparse and non-numbers refused)."""
    if torch.is_tensor(X):
        X = X.detach().cpu().numpy()
    if hasattr(X, "toarray") and not isinstance(X, np.ndarray):
        raise ValueError("X is a sparse matrix; expected a dense numpy array or torch tensor.")
    try:
        X = np.asarray(X)
    except (ValueError, TypeError) as e:
        raise ValueError(f"X cannot be read as an array ({str(e).splitlines()[0]}).") from None
    if np.iscomplexobj(X):
        raise ValueError(f"Complex data not supported: X has dtype {X.dtype}; expected real numbers.")
    if X.dtype == object or X.dtype.kind in "USV":
        try:
            return X.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise TypeError(f"X holds a value that is not a number: {str(e).splitlines()[0]}.") from None
    if X.dtype.kind not in "biuf":
        raise ValueError(f"X has dtype {X.dtype}; expected numbers.")
    return X


def _looks_like_pixels(X: np.ndarray) -> bool:
    if X.dtype == np.uint8 or X.dtype.kind == "b":
        return True
    if X.dtype.kind != "f" or X.size == 0 or not np.isfinite(X).all():
        return False
    return float(X.min()) >= 0.0 and float(X.max()) <= 1.0


def input_type(X: np.ndarray, requested: str = "auto") -> str:
    """``"images"`` or ``"vectors"``: ``requested`` unless it is ``"auto"``, then from X (module docstring)."""
    if requested not in INPUT_TYPES:
        raise ValueError(f"input_type={requested!r} is invalid: expected one of {INPUT_TYPES}.")
    if requested != "auto":
        return requested
    if X.ndim >= 3:
        return "images"
    if X.ndim == 2:
        side = math.isqrt(X.shape[1])
        if side >= MIN_IMAGE_SIDE and side * side == X.shape[1] and _looks_like_pixels(X):
            return "images"
    return "vectors"


def as_vectors(X: np.ndarray, n_features: int | None = None) -> np.ndarray:
    """Validate real-valued vectors: (N, D) finite numbers -> float64 (N, D).

    ``n_features``, when given, is the D the model was fitted on.
    """
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D array of vectors (n_samples, n_features), got a {X.ndim}D array of shape "
                         f"{X.shape}. Reshape your data with X.reshape(-1, 1) for a single feature or "
                         f"X.reshape(1, -1) for a single sample.")
    if X.shape[0] == 0:
        raise ValueError(f"X has 0 sample(s) (shape={X.shape}) while a minimum of 1 is required.")
    if X.shape[1] == 0:
        raise ValueError(f"X has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but MixtureVAE is expecting {n_features} features as input.")
    X = X.astype(np.float64, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(X)))
    if bad:
        raise ValueError(f"X contains {bad} NaN or infinite value{'s' if bad != 1 else ''}; expected finite numbers.")
    return X
