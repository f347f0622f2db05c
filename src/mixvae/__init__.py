"""mixvae: unsupervised clustering and per-cluster generation with a mixture of VAEs."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["MixtureOfExperts", "MixtureVAE", "__version__"]


def __getattr__(name: str):
    # the estimator pulls in torch and scikit-learn: import it on first use, so that
    # ``mixvae --help`` stays instant
    if name == "MixtureVAE":
        from mixvae.estimator import MixtureVAE  # lazy: `import mixvae` and the command line start without torch

        return MixtureVAE
    if name == "MixtureOfExperts":
        from mixvae.regression import MixtureOfExperts  # the same reason as the import above

        return MixtureOfExperts
    raise AttributeError(f"module 'mixvae' has no attribute {name!r}")
