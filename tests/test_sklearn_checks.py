"""scikit-learn's own estimator checks on MixtureVAE, every one of them, none expected to fail.

The checks pass real-valued features (negative numbers, floats above 1, a single feature), which
MixtureVAE reads as vectors; small settings keep them fast.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from mixvae import MixtureVAE


def small() -> MixtureVAE:
    """The default recipe, short: check_clustering asks for ARI > 0.4 on three blobs."""
    return MixtureVAE(n_components=3, max_epochs=5, batch_size=10, latent_dim=2)


@parametrize_with_checks([small()])
def test_sklearn_check(estimator, check):
    check(estimator)
