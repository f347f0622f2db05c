"""Batched inference against the model called on the whole array at once."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mixvae.config import ModelConfig
from mixvae.inference import batches, images_to_tensor, latent_means, log_likelihood, predict_proba
from mixvae.model import MixtureModule


def model(batchnorm: bool = False) -> MixtureModule:
    torch.manual_seed(0)
    return MixtureModule(ModelConfig(n_components=3, image_shape=(3, 4), latent_dim=2, hidden=(8,),
                                     manager_hidden=(6,), manager_batchnorm=batchnorm))


def images(n: int = 23) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 3, 4), dtype=np.uint8)


def test_images_to_tensor_scales_and_flattens_the_rows_asked_for():
    a = images()
    t = images_to_tensor(a, 5, 9)
    assert t.dtype == torch.float32 and t.shape == (4, 12)
    np.testing.assert_allclose(t.numpy(), a[5:9].reshape(4, 12) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(images_to_tensor(torch.from_numpy(a), 20).numpy(), a[20:].reshape(3, 12) / 255.0,
                               rtol=1e-6)


@pytest.mark.parametrize("stop", [None, 10, 100])
def test_batches_cover_the_rows_once_in_order(stop):
    a = images()
    got = list(batches(a, 4, stop=stop))
    n = len(a) if stop is None else min(stop, len(a))
    assert [len(b) for b in got] == [4] * (n // 4) + ([n % 4] if n % 4 else [])
    np.testing.assert_allclose(torch.cat(got).numpy(), a[:n].reshape(n, -1) / 255.0, rtol=1e-6)


def test_predictions_and_latent_means_equal_one_call_on_all_images_in_eval_mode():
    m = model(batchnorm=True)  # batch norm: eval mode matters, and is restored afterwards
    a = images()
    x = images_to_tensor(a)
    m.eval()
    with torch.no_grad():
        probs = m.predict_proba(x)
        mu, _ = m.encode(x)
        chosen = mu[probs.argmax(1), torch.arange(len(a))]
    m.train()
    got = predict_proba(m, a, batch_size=5)
    assert got.dtype == np.float32 and m.training
    np.testing.assert_allclose(got, probs.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(latent_means(m, a, batch_size=5), chosen.numpy(), rtol=1e-5, atol=1e-6)
    assert m.training
    m.eval()
    predict_proba(m, a)
    assert not m.training  # a module in eval mode stays there


def test_no_images_give_empty_arrays_of_the_right_width():
    m = model()
    empty = np.zeros((0, 3, 4), np.uint8)
    assert predict_proba(m, empty).shape == (0, 3) and predict_proba(m, empty).dtype == np.float32
    assert latent_means(m, empty).shape == (0, 2) and latent_means(m, empty).dtype == np.float32
    assert log_likelihood(m, empty, 2).shape == (0,)


def test_stop_bounds_the_first_images_only():
    m = model()
    a = images(9)
    whole = log_likelihood(m, a, 5)
    assert whole.dtype == np.float64 and whole.shape == (9,)
    np.testing.assert_allclose(log_likelihood(m, a, 5, stop=4), log_likelihood(m, a[:4], 5))


def test_a_read_only_array_is_read_without_a_warning_and_a_tensor_is_used_where_it_lives():
    a = images()
    a.setflags(write=False)  # as a read-only memory map is
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it shares a read-only array
        t = images_to_tensor(a, 2, 6)
    np.testing.assert_allclose(t.numpy(), a[2:6].reshape(4, -1) / 255.0, rtol=1e-6)
    writable = images()
    images_to_tensor(writable)[0, 0] = 7.0  # the result is a new float tensor: the images are not changed
    assert np.array_equal(writable, images())
    on_meta = torch.zeros(5, 3, 4, dtype=torch.uint8, device="meta")  # meta stands in for a GPU: no numpy copy
    t = images_to_tensor(on_meta, 1)
    assert t.device.type == "meta" and t.shape == (4, 12) and t.dtype == torch.float32


def test_batches_go_to_the_device_asked_for():
    got = list(batches(images(), 10, device="meta"))
    assert [b.device.type for b in got] == ["meta"] * 3 and [len(b) for b in got] == [10, 10, 3]
