import torch

from mixvae.augment import random_affine


def test_identity_when_no_deformation_is_allowed():
    x = torch.rand(4, 36)
    out = random_affine(x, (6, 6), rotate=0, scale=(1, 1), translate=0)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_repeatable_with_a_generator_and_shapes():
    x = torch.rand(8, 12 * 10)
    a = random_affine(x, (12, 10), torch.Generator().manual_seed(1), flip=True)
    b = random_affine(x, (12, 10), torch.Generator().manual_seed(1), flip=True)
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 + 1e-6


def test_flip_mirrors():
    x = torch.zeros(1, 16)
    x[0, 0] = 1.0  # top-left pixel of a 4x4 image
    found = set()
    for seed in range(20):
        out = random_affine(x, (4, 4), torch.Generator().manual_seed(seed), rotate=0, scale=(1, 1), translate=0,
                            flip=True)
        found.add(int(out.argmax()))
    assert found == {0, 3}
