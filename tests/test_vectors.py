"""Real-valued vectors: the scaling, the Gaussian with learned variances, the IW bound in nats of
the data, samples in the data's units, and the estimator's choice between images and vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal
from sklearn.metrics import adjusted_rand_score
from torch import nn
from torch.distributions import Normal

from mixvae import MixtureVAE
from mixvae.config import ModelConfig
from mixvae.inference import log_likelihood
from mixvae.kinds.arrays import as_array, input_type
from mixvae.kinds.vectors import (
    VAR_FLOOR,
    Vectors,
    feature_scaling,
    gaussian_nll,
    log_jacobian,
    to_data_units,
    to_model_units,
)
from mixvae.model import MixtureModule
from mixvae.nets import ExpertLinear


def blobs(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated clusters in 5 dimensions, in units far from [0, 1]."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centres = rng.normal(0, 6, (3, 5))
    X = centres[y] + rng.normal(0, 1, (n, 5))
    return X * np.array([1, 10, 100, 0.1, 1]) + np.array([0, -50, 1000, 3, -7]), y


def small(**kw) -> MixtureVAE:
    return MixtureVAE(**{"n_components": 3, "max_epochs": 20, "batch_size": 32, "latent_dim": 2,
                         "random_state": 0, **kw})


@pytest.fixture(scope="module")
def fitted() -> tuple[MixtureVAE, np.ndarray, np.ndarray]:
    X, y = blobs()
    return small().fit(X), X, y


def test_gaussian_nll_is_torch_distributions_normal() -> None:
    g = torch.Generator().manual_seed(0)
    x, mean, log_var = torch.randn(4, 6, generator=g), torch.randn(3, 4, 6, generator=g), torch.randn(3, 1, 6)
    want = -Normal(mean, (VAR_FLOOR + log_var.exp()).sqrt()).log_prob(x).sum(-1)  # (K, B)
    torch.testing.assert_close(gaussian_nll(x, mean, log_var), want)


def test_scaling_round_trip_and_constant_features() -> None:
    X, _ = blobs(50)
    X[:, 3] = 7.0  # a constant feature keeps scale 1, or the floor where that is larger
    mean, std = feature_scaling(X)
    np.testing.assert_allclose(mean, X.mean(0)) and np.testing.assert_allclose(std[:3], X.std(0)[:3])
    assert std[3] == max(1.0, 0.5 * float(np.median(X.std(0))))
    cfg = ModelConfig(n_components=2, image_shape=(1, 5), input_type="vectors", feature_mean=mean, feature_std=std)
    U = to_model_units(cfg, X)
    np.testing.assert_allclose(U[:, [0, 1, 2, 4]].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(U[:, [0, 1, 2, 4]].std(0), 1, atol=1e-5)
    np.testing.assert_allclose(to_data_units(cfg, U), X, rtol=1e-5, atol=1e-4)
    assert log_jacobian(cfg) == pytest.approx(np.log(std).sum())


def test_no_feature_is_scaled_below_half_the_median_spread() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (400, 5)) * np.array([2.0, 3.0, 4.0, 5.0, 0.01]) + 5.0
    spread = X.std(0)
    _, std = feature_scaling(X)
    np.testing.assert_allclose(std[:4], spread[:4])  # at or above the floor: their own spread
    assert std[4] == pytest.approx(0.5 * np.median(spread))  # a nearly constant feature gets the floor
    _, scaled = feature_scaling(X * 1000.0)  # the floor follows the data's units
    np.testing.assert_allclose(scaled, np.asarray(std) * 1000.0)


def test_small_vector_data_let_the_likelihood_train_the_manager() -> None:
    import dataclasses

    from mixvae.config import preset
    from mixvae.kinds import fit_to_data, resolve

    vectors = preset("default", 3, (1, 4), Vectors())
    assert vectors.model.route_by_loss is False
    assert fit_to_data(vectors, 569).model.route_by_loss is True
    assert fit_to_data(vectors, 9_999).model.route_by_loss is True
    big = fit_to_data(vectors, 60_000)  # the recipe measured on 60,000 PCA vectors is unchanged
    assert big.model == resolve(vectors).model and big.train.epochs == 8
    assert fit_to_data(vectors, 10_000).model.route_by_loss is False
    assert fit_to_data(preset("default"), 569).model.route_by_loss is False  # images: as before
    given = resolve(dataclasses.replace(vectors, train=dataclasses.replace(vectors.train, budget_images=0)))
    assert fit_to_data(given, 569) == given  # epochs given: the preset as it is


class ExactPosterior(nn.Module):
    """q(z|u) = p(z|u) of the linear-Gaussian model u = w z + b + noise, z ~ N(0, 1), noise ~ N(0, diag(psi))."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, psi: torch.Tensor):
        super().__init__()
        self.w, self.b, self.psi = w, b, psi

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w, b, psi = self.w.to(u.dtype), self.b.to(u.dtype), self.psi.to(u.dtype)
        var = 1.0 / (1.0 + (w * w / psi).sum())
        mu = var * ((u - b) * w / psi).sum(-1, keepdim=True)  # (B, 1)
        return mu[None], var.expand_as(mu)[None]  # (1, B, 1) each


def test_iw_bound_of_a_linear_gaussian_model_is_its_exact_marginal_in_data_units() -> None:
    """With the exact posterior as proposal every importance weight equals p(u), so the bound is
    exact for any number of draws; in data units it is the density of x = m + s u."""
    D = 4
    rng = np.random.default_rng(1)
    mean, std = tuple(rng.normal(0, 5, D)), tuple(rng.uniform(0.1, 20, D))
    cfg = ModelConfig(n_components=1, image_shape=(1, D), latent_dim=1, input_type="vectors",
                      feature_mean=mean, feature_std=std)
    module = MixtureModule(cfg)
    w, b = torch.tensor([1.0, -0.5, 2.0, 0.3]), torch.tensor([0.2, 0.0, -1.0, 0.5])
    with torch.no_grad():
        module.log_var.copy_(torch.tensor([-1.0, 0.0, -2.0, 0.5]).view(1, 1, D))
        psi = VAR_FLOOR + module.log_var.exp().view(D)
    decoder = ExpertLinear(1, 1, D)
    with torch.no_grad():
        decoder.weight.copy_(w.view(1, 1, D))
        decoder.bias.copy_(b.view(1, 1, D))
    module.decoder, module.encoder = decoder, ExactPosterior(w, b, psi)
    X = rng.normal(0, 3, (7, D)) * np.array(std) + np.array(mean)
    bound = log_likelihood(module, to_model_units(cfg, X), 3) - log_jacobian(cfg)
    s, m = np.array(std), np.array(mean)
    cov = np.diag(s) @ (np.outer(w, w) + np.diag(psi.numpy())) @ np.diag(s)
    exact = multivariate_normal(m + s * b.numpy(), cov).logpdf(X)
    np.testing.assert_allclose(bound, exact, rtol=1e-5)


def test_clusters_real_valued_vectors(fitted) -> None:
    model, X, y = fitted
    assert model.input_type_ == "vectors" and model.n_features_in_ == 5 and model.image_shape_ == (1, 5)
    assert adjusted_rand_score(y, model.predict(X)) > 0.9
    np.testing.assert_allclose(model.config_.model.feature_mean, X.mean(0))


def test_units_of_scores_and_samples_follow_the_data() -> None:
    """The same data in other units gives the same model in standardised units: samples are the
    first model's times the factor, and log-densities differ by D log(factor)."""
    X, _ = blobs(120)
    a, b = small(max_epochs=3).fit(X), small(max_epochs=3).fit(X * 10.0 + 5.0)
    np.testing.assert_allclose(b.score_samples(X * 10.0 + 5.0), a.score_samples(X) - 5 * math.log(10.0),
                               rtol=1e-4, atol=1e-3)
    (sa, ka), (sb, kb) = a.sample(50), b.sample(50)
    np.testing.assert_array_equal(ka, kb)
    np.testing.assert_allclose(sb, sa * 10.0 + 5.0, rtol=1e-4, atol=1e-3)


def test_samples_lie_where_the_data_lie(fitted) -> None:
    model, X, _ = fitted
    samples, experts = model.sample(600)
    assert samples.shape == (600, 5) and samples.dtype == np.float64 and set(experts) <= {0, 1, 2}
    np.testing.assert_allclose(samples.mean(0), X.mean(0), atol=0.3 * X.std(0).max())
    assert np.all(np.abs(samples.mean(0) - X.mean(0)) < 0.5 * X.std(0))


def test_save_load_keeps_the_scaling(fitted, tmp_path) -> None:
    model, X, _ = fitted
    loaded = MixtureVAE.load(model.save(tmp_path / "m"))
    assert loaded.input_type_ == "vectors"
    np.testing.assert_array_equal(loaded.score_samples(X[:20]), model.score_samples(X[:20]))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


@pytest.mark.parametrize("X, want", [
    (np.zeros((4, 8, 8), np.uint8), "images"),
    (np.random.default_rng(0).random((4, 64)), "images"),  # pixels in [0, 1], an 8 x 8 image
    (np.random.default_rng(0).normal(size=(4, 64)), "vectors"),  # negative: not pixels
    (np.random.default_rng(0).random((4, 16)), "vectors"),  # 4 x 4 is too small to be an image
    (np.random.default_rng(0).random((4, 60)), "vectors"),  # not a square
    (np.arange(12).reshape(4, 3), "vectors"),
])
def test_images_or_vectors_from_the_input(X, want) -> None:
    assert input_type(as_array(X)) == want


def test_input_type_overrides_the_guess() -> None:
    X = np.random.default_rng(0).integers(0, 256, (40, 8, 8)).astype(np.uint8)
    m = small(max_epochs=1, input_type="vectors").fit(X.reshape(40, 64))
    assert m.input_type_ == "vectors" and m.n_features_in_ == 64
    assert m.sample(2)[0].shape == (2, 64)
    with pytest.raises(ValueError, match="input_type='pixels' is invalid"):
        small(input_type="pixels").fit(X)


@pytest.mark.parametrize("bad, match", [
    (np.array([[1.0, np.nan], [2.0, 3.0], [1.0, 1.0]]), "NaN or infinite"),
    (np.array([[1.0, np.inf], [2.0, 3.0], [1.0, 1.0]]), "NaN or infinite"),
    (np.ones((4, 2)) * (1 + 2j), "Complex data not supported"),
    (np.array([[1.0, "a"], [2.0, 3.0]], dtype=object), "not a number"),
    (np.zeros((0, 3)), "0 sample"),
    (np.zeros((3, 0)), "0 feature"),
    (np.zeros((1, 3)), "1 sample"),
    (np.zeros(5), "Reshape your data"),
])
def test_bad_vectors_are_one_clear_sentence(bad, match) -> None:
    with pytest.raises((ValueError, TypeError), match=match) as e:
        small(n_components=1).fit(bad)
    assert "\n" not in str(e.value)


def test_wrong_number_of_features(fitted) -> None:
    model, X, _ = fitted
    with pytest.raises(ValueError, match="X has 4 features, but MixtureVAE is expecting 5"):
        model.predict(X[:, :4])


def test_the_default_budget_at_60000_images_is_todays_schedule() -> None:
    """8 epochs, self-labelling from epoch 6: MNIST's schedule does not change."""
    import dataclasses

    from mixvae.config import for_data, preset

    cfg = preset("default")
    fitted = for_data(cfg, 60_000)
    assert fitted.train == dataclasses.replace(cfg.train, budget_images=0, restarts=1)  # one training at 60,000
    assert (fitted.train.epochs, fitted.train.self_label_epoch) == (8, 5)
    assert for_data(fitted, 1000) == fitted  # applied once: the saved config repeats the run
    small = for_data(cfg, 1000)  # 480,000 * sqrt(1/60) = 61,968 images seen: 62 epochs
    assert (small.train.epochs, small.train.self_label_epoch) == (62, 39)
    assert for_data(cfg, 1_000_000).train.epochs == 2
    assert for_data(preset("seed"), 1000) == preset("seed")  # no budget: epochs as given


def test_max_epochs_replaces_the_budget() -> None:
    X, _ = blobs(60)
    assert small(max_epochs=2).fit(X).config_.train.epochs == 2
    cfg = MixtureVAE(n_components=3)._config((1, 5), Vectors(), 60)  # what fit resolves for 60 rows
    assert cfg.train.epochs == round(480_000 * math.sqrt(60 / 60_000) / 60) == 253


def test_epochs_given_anywhere_replace_the_budget(tmp_path) -> None:
    from mixvae.config import for_data, resolve_config

    (tmp_path / "run.yaml").write_text("train:\n  epochs: 3\n")
    for cfg in (resolve_config("default", overrides=["train.epochs=10"]),
                resolve_config("default", values={"train": {"epochs": 10}}),
                resolve_config("default", config_file=tmp_path / "run.yaml")):
        assert cfg.train.budget_images == 0 and for_data(cfg, 1000).train.epochs == cfg.train.epochs
    assert resolve_config("default", values={"train": {"epochs": None}}).train.budget_images == 480_000
