import numpy as np
import pytest
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


def test_border_fill_keeps_a_light_background() -> None:
    """A uniform light image stays itself under any map with the border fill; the zeros fill
    brings black in at the corners of a rotated view (grey and colour alike)."""
    gen = torch.Generator().manual_seed(0)
    for shape in ((8, 8), (8, 8, 3)):
        x = torch.full((16, int(np.prod(shape))), 0.9)
        u = torch.rand(16, 5, generator=gen)
        border = random_affine(x, shape, uniforms=u, rotate=30.0, fill="border")
        torch.testing.assert_close(border, x)
        zeros = random_affine(x, shape, uniforms=u, rotate=30.0)
        assert float(zeros.min()) < 0.5


def test_an_unknown_fill_is_refused() -> None:
    with pytest.raises(ValueError, match="fill='mirror'"):
        random_affine(torch.zeros(1, 4), (2, 2), fill="mirror")
