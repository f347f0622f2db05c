"""The importance-weighted bound of :func:`mixvae.inference.log_likelihood` against the exact
log-likelihood of a model small enough to integrate: one latent dimension, so that

    p(x) = sum_k (1/K) integral p_k(x | z) N(z; 0, 1) dz

is a sum over a fine grid of z. The bound must approach it from below as the samples grow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Normal

from mixvae.config import ModelConfig
from mixvae.inference import images_to_tensor, log_likelihood, predict_proba
from mixvae.model import MixtureModule

K, SHAPE, N_IMAGES = 3, (2, 3), 6


def tiny_model(likelihood: str) -> MixtureModule:
    """K = 3 random experts with a one-dimensional z; the decoders' weights are scaled up so that
    p_k(x | z) is peaked and the (random) encoders are poor proposals: the bound is loose for few
    samples and tightens only through the importance weights."""
    torch.manual_seed(0)
    cfg = ModelConfig(n_components=K, image_shape=SHAPE, latent_dim=1, hidden=(8,), manager_hidden=(4,),
                      activation="tanh", likelihood=likelihood, gaussian_std=0.2, init="torch")
    module = MixtureModule(cfg).eval()
    with torch.no_grad():
        for p in module.decoder.parameters():
            p.mul_(3.0)
    return module


def tiny_images(module: MixtureModule) -> np.ndarray:
    """uint8 (6, 2, 3): binary images for the Bernoulli model, the model's own means for the Gaussian."""
    if module.config.likelihood == "bernoulli":
        return (np.random.default_rng(0).random((N_IMAGES, *SHAPE)) < 0.5).astype(np.uint8) * 255
    means = module.sample(N_IMAGES, torch.arange(N_IMAGES) % K, generator=torch.Generator().manual_seed(3))
    return (means.numpy().reshape(N_IMAGES, *SHAPE) * 255).round().astype(np.uint8)


def exact_log_likelihood(module: MixtureModule, images: np.ndarray) -> np.ndarray:
    """log p(x) (n,) by the trapezoid rule on 24,001 points of z in [-12, 12], in float64; only the
    decoder networks are taken from the module, the densities from torch.distributions."""
    c = module.config
    decoder = MixtureModule(c).decoder.double()
    decoder.load_state_dict(module.decoder.state_dict())
    x = images_to_tensor(images).double()[:, None]  # (n, 1, D)
    z = torch.linspace(-12.0, 12.0, 24001, dtype=torch.float64)  # (G,)
    log_dz = torch.full_like(z, float(z[1] - z[0])).log()
    log_dz[[0, -1]] -= math.log(2.0)  # trapezoid end weights
    with torch.no_grad():
        out = decoder(z[None, :, None].expand(K, -1, 1))[:, None]  # (K, 1, G, D)
        if c.likelihood == "bernoulli":
            log_px_z = Bernoulli(logits=out).log_prob(x).sum(-1)  # (K, n, G)
        else:
            log_px_z = Normal(torch.sigmoid(out), c.gaussian_std).log_prob(x).sum(-1)  # (K, n, G)
        log_pk = torch.logsumexp(log_px_z + Normal(0.0, 1.0).log_prob(z) + log_dz, -1)  # (K, n)
    return (torch.logsumexp(log_pk, 0) - math.log(K)).numpy()


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_many_samples_reach_the_exact_log_likelihood(likelihood: str) -> None:
    module = tiny_model(likelihood)
    images = tiny_images(module)
    exact = exact_log_likelihood(module, images)
    bound = log_likelihood(module, images, 20000)
    assert bound.dtype == np.float64 and bound.shape == (N_IMAGES,)
    # measured: every image within 0.015 nats of the exact value (the bound's own Monte Carlo
    # noise); dropping log p(z) or -log K moves it by about a nat
    assert np.all(bound > exact - 0.05) and np.all(bound < exact + 0.03), bound - exact
    assert -0.02 < np.mean(bound - exact) < 0.01, bound - exact


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_the_bound_is_below_on_average_and_tightens_with_samples(likelihood: str) -> None:
    """Each image repeated R times gets R independent bounds (the module's draws from one
    generator; log_likelihood would give the copies the same draws); their mean estimates E[bound]."""
    module = tiny_model(likelihood)
    images = tiny_images(module)
    exact = exact_log_likelihood(module, images)
    gaps = []
    for samples, repeats in [(1, 1000), (10, 300), (100, 100)]:
        gen = torch.Generator().manual_seed(0)
        x = images_to_tensor(np.repeat(images, repeats, 0))
        if likelihood == "bernoulli":
            x = (torch.rand(x.shape, generator=gen) < x).float()
        with torch.no_grad():
            bounds = module.log_likelihood(x, samples, generator=gen).double().numpy().reshape(N_IMAGES, repeats)
        stderr = bounds.std(1, ddof=1) / math.sqrt(repeats)
        gap = bounds.mean(1) - exact  # (n,)
        assert np.all(gap < 3 * stderr), (samples, gap, stderr)  # never above on average
        if samples == 1:  # one sample: the ELBO, well below (measured 0.1 to 5 nats)
            assert np.all(gap < -3 * stderr), gap
        gaps.append(gap.mean())
    assert gaps[0] < gaps[1] < gaps[2], gaps


def test_log_likelihood_is_seeded_by_each_image_and_binarises_as_documented() -> None:
    module = tiny_model("bernoulli")
    images = np.random.default_rng(1).integers(0, 256, (N_IMAGES, *SHAPE)).astype(np.uint8)
    scores = log_likelihood(module, images, 50)
    np.testing.assert_array_equal(scores, log_likelihood(module, images, 50))
    # an image's draws depend on its content only: not on its place, its neighbours or the batches
    perm = np.random.default_rng(2).permutation(N_IMAGES)
    np.testing.assert_array_equal(log_likelihood(module, images[perm], 50), scores[perm])
    np.testing.assert_array_equal(log_likelihood(module, images[2:5], 50, batch_size=2), scores[2:5])
    twice = log_likelihood(module, np.concatenate([images, images]), 50)
    np.testing.assert_array_equal(twice, np.concatenate([scores, scores]))
    # binarising leaves black and white pixels as they are, and changes grey ones
    binary = (images > 127).astype(np.uint8) * 255
    np.testing.assert_array_equal(log_likelihood(module, binary, 50, binarize=True), log_likelihood(module, binary, 50))
    assert not np.array_equal(log_likelihood(module, images, 50, binarize=True), scores)
    assert len(log_likelihood(module, images, 50, stop=2)) == 2


def test_predict_proba_is_the_manager_softmax_in_batches() -> None:
    module = tiny_model("gaussian")
    images = np.random.default_rng(2).integers(0, 256, (7, *SHAPE)).astype(np.uint8)
    module.train()
    probs = predict_proba(module, images, batch_size=3)
    assert module.training  # the module's mode is restored
    with torch.no_grad():
        want = torch.softmax(module.manager(images_to_tensor(images)), -1).numpy()
    assert probs.dtype == np.float32 and probs.shape == (7, K)
    np.testing.assert_allclose(probs, want, rtol=1e-6)
