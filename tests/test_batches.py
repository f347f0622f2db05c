"""The batch source: indices, rows, binarisation and the global-batch draws, checked against
numpy and against what one process would draw."""

import warnings

import numpy as np
import pytest
import torch

from mixvae.augment import random_affine
from mixvae.batches import BatchSource
from mixvae.config import ModelConfig, RunConfig, TrainConfig
from mixvae.rows import read_rows


def config(**train) -> RunConfig:
    model = ModelConfig(n_components=3, image_shape=(4, 4), latent_dim=2, hidden=(8,), manager_hidden=(8,))
    return RunConfig(model=model, train=TrainConfig(**{"batch_size": 6, "seed": 0, "binarize": False, **train}))


def images(n: int = 20) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 4, 4), dtype=np.uint8)


def source(data, rank: int = 0, world: int = 1, seed: int = 0, **train) -> BatchSource:
    return BatchSource(data, config(**train), torch.Generator().manual_seed(seed), torch.device("cpu"), rank, world)


class Rows:
    """An array-like that reads on access and records the order of its reads (like a memory map)."""

    def __init__(self, a: np.ndarray):
        self.a, self.shape, self.reads = a, a.shape, []

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, idx):
        self.reads.append(np.asarray(idx).copy())
        return self.a[idx]


def test_read_rows_returns_the_rows_in_the_order_asked_reading_in_increasing_order():
    a = images()
    idx = np.array([7, 2, 19, 2, 0])
    lazy = Rows(a)
    rows = read_rows(lazy, idx)
    assert rows.dtype == np.uint8 and rows.shape == (5, 4, 4)
    np.testing.assert_array_equal(rows, a[idx])
    assert lazy.reads[0].tolist() == [0, 2, 2, 7, 19]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_an_epoch_deals_a_permutation_out_to_the_processes(world):
    n = 20
    per_rank = [source(images(n), rank, world).epoch(4) for rank in range(world)]
    for steps in per_rank:
        assert all(len(s) <= 6 // world for s in steps) and all(len(s) == 6 // world for s in steps[:-1])
    seen = np.concatenate([np.concatenate(steps) for steps in per_rank])
    padded = -(-n // world) * world  # padded to a multiple of world by repeating indices
    assert len(seen) == padded and set(seen.tolist()) == set(range(n))
    one = source(images(n)).epoch(4)
    assert not np.array_equal(np.concatenate(one), np.arange(n))  # shuffled
    assert not np.array_equal(np.concatenate(one), np.concatenate(source(images(n)).epoch(5)))  # differently each epoch


@pytest.mark.parametrize("lazy", [False, True])
def test_a_batch_is_the_images_scaled_to_the_unit_interval(lazy):
    a = images()
    idx = np.array([3, 1, 4])
    x = source(Rows(a) if lazy else a).batch(idx)
    assert x.dtype == torch.float32 and x.shape == (3, 16)
    np.testing.assert_allclose(x.numpy(), a[idx].reshape(3, -1) / 255.0, rtol=1e-6)


def test_binarisation_draws_one_uniform_per_pixel_of_the_global_batch():
    a = images()
    idx = np.array([0, 5, 9, 11])
    x = source(a, seed=3, binarize=True).batch(idx)
    u = torch.rand(4, 16, generator=torch.Generator().manual_seed(3))
    expected = (u < torch.from_numpy(a[idx].reshape(4, -1) / 255.0)).float()
    torch.testing.assert_close(x, expected)
    # two processes, each with half the batch, draw what one process draws: rows rank::2
    halves = [source(a, rank, 2, seed=3, binarize=True).batch(idx[rank::2]) for rank in range(2)]
    torch.testing.assert_close(halves[0], expected[0::2])
    torch.testing.assert_close(halves[1], expected[1::2])


def test_noise_and_picks_are_the_global_draws_rows_for_this_process():
    g = lambda: torch.Generator().manual_seed(7)
    noise = torch.randn(3, 8, 2, generator=g())  # (K, world * B, L)
    picks = torch.randint(5, (8,), generator=g())
    for rank in range(2):
        s = source(images(), rank, 2, seed=7)
        torch.testing.assert_close(s.noise(4), noise[:, rank::2])
        s = source(images(), rank, 2, seed=7)
        torch.testing.assert_close(s.pick(5, 4), picks[rank::2])
    one = source(images(), seed=7)
    assert one.noise(8).shape == (3, 8, 2)


def test_a_view_is_the_image_itself_without_augmentation_and_a_deformation_with_it():
    x = torch.rand(4, 16)
    assert source(images(), augment=False).view(x) is x
    v = source(images(), augment=True).view(x)
    assert v.shape == x.shape and not torch.equal(v, x)


@pytest.mark.parametrize("flip", [False, True])
def test_a_view_is_the_affine_map_of_five_uniforms_per_image_from_the_run_generator(flip):
    x = torch.rand(4, 16, generator=torch.Generator().manual_seed(1))
    got = source(images(), seed=9, augment=True, augment_flip=flip).view(x)
    u = torch.rand(4, 5, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(got, random_affine(x, (4, 4), flip=flip, uniforms=u))
    if flip:  # mirrored where u[:, 4] < 0.5: not the unflipped maps
        assert not torch.allclose(got, random_affine(x, (4, 4), flip=False, uniforms=u))


def test_arrays_in_memory_are_held_as_tensors_and_others_read_on_access():
    a = images()
    for held in (a, torch.from_numpy(a)):
        s = source(held)
        assert s.in_memory and torch.is_tensor(s.images)
    lazy = Rows(a)
    assert not source(lazy).in_memory and source(lazy).images is lazy
    frozen = images()
    frozen.setflags(write=False)  # as a read-only memory map is: torch would warn on sharing it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = source(frozen)
        x = s.batch(np.array([3, 1]))
    assert not s.in_memory and s.images is frozen
    np.testing.assert_allclose(x.numpy(), frozen[[3, 1]].reshape(2, -1) / 255.0, rtol=1e-6)
