"""mixvae: unsupervised clustering and per-cluster generation with a mixture of VAEs."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
