"""Colour images keep their channels from the file to the figures; ``grayscale`` converts them as
Pillow's ``convert("L")`` does; grayscale data loads exactly as before."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mixvae.augment import random_affine
from mixvae.cli import main
from mixvae.config import load_config
from mixvae.data import DataError, check_images, load
from mixvae.data import folders as folders_module
from mixvae.data.arrays import resize, to_grayscale
from mixvae.estimator import MixtureVAE
from mixvae.plots import image_grid

PHOTOS = Path(__file__).resolve().parent / "data" / "photos"
TINY = ["--preset", "seed", "--experts", "3", "--batch-size", "8", "--set", "model.hidden=[16]",
        "--set", "model.manager_hidden=[16]", "--set", "model.latent_dim=2", "--quiet", "--threads", "1"]


def photo_files() -> list[Path]:
    return sorted(PHOTOS.rglob("*.*g"), key=lambda p: p.relative_to(PHOTOS).as_posix())


def colour_blobs(n_per: int = 20, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three clusters of noisy squares in red, green and blue: (3 n_per, size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 40, (3 * n_per, size, size, 3)).astype(np.uint8)
    y = np.repeat(np.arange(3), n_per)
    for i, c in enumerate(y):
        x[i, ..., c] = rng.integers(180, 256, (size, size))
    return x, y


def test_rgb_arrays_keep_their_channels_and_one_channel_arrays_drop_it():
    x, _ = colour_blobs()
    assert check_images(x, "x") is x
    gray = x[..., :1]
    assert check_images(gray, "x").shape == (60, 8, 8)
    np.testing.assert_array_equal(check_images(gray, "x"), x[..., 0])
    with pytest.raises(DataError, match=r"\(N, H, W, 3\)"):
        check_images(np.zeros((4, 8, 8, 2), np.uint8), "x")


def test_grayscale_conversion_equals_pillows_luma():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 40, 30, 3), dtype=np.uint8)
    x[0, 0, :8] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 2, 3], [128, 128, 127],
                   [254, 1, 128]]
    expected = np.stack([np.asarray(Image.fromarray(im, "RGB").convert("L")) for im in x])
    np.testing.assert_array_equal(to_grayscale(x), expected)
    plain = np.rint(x @ np.array([0.299, 0.587, 0.114]))  # the formula, in floating point
    assert np.abs(to_grayscale(x).astype(float) - plain).max() <= 1


def test_a_folder_of_colour_photographs_loads_in_colour_or_in_grayscale():
    files = photo_files()
    data = load(PHOTOS)
    assert data.images.shape == (24, 32, 32, 3)
    expected = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    np.testing.assert_array_equal(data.images, expected)
    names = sorted({f.parent.name for f in files})
    np.testing.assert_array_equal(data.labels, [names.index(f.parent.name) for f in files])
    gray = load(PHOTOS, grayscale=True)
    np.testing.assert_array_equal(gray.images, np.stack([np.asarray(Image.open(f).convert("L")) for f in files]))
    np.testing.assert_array_equal(gray.images, to_grayscale(data.images))


def test_a_grayscale_folder_loads_as_before(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (4, 9, 7), dtype=np.uint8)
    for i, im in enumerate(x):
        Image.fromarray(im, "L").save(tmp_path / f"{i}.png")
    got = load(tmp_path).images
    assert got.shape == (4, 9, 7) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, x)


def test_grayscale_palette_images_stay_grayscale_and_coloured_ones_do_not(tmp_path):
    x = np.random.default_rng(2).integers(0, 256, (6, 6), dtype=np.uint8)
    Image.fromarray(x, "L").save(tmp_path / "a.gif")  # a GIF stores gray pixels in a gray palette
    Image.fromarray(x, "L").convert("P").save(tmp_path / "b.png")
    got = load(tmp_path).images
    assert got.shape == (2, 6, 6)
    np.testing.assert_array_equal(got[1], x)
    Image.fromarray(np.full((6, 6, 3), [200, 10, 10], np.uint8), "RGB").convert("P").save(tmp_path / "c.png")
    assert load(tmp_path).images.shape == (3, 6, 6, 3)


def test_a_folder_with_one_colour_image_is_read_in_colour(tmp_path):
    Image.fromarray(np.full((6, 6), 100, np.uint8), "L").save(tmp_path / "a.png")
    Image.fromarray(np.full((6, 6, 3), [200, 10, 10], np.uint8), "RGB").save(tmp_path / "b.png")
    got = load(tmp_path).images
    assert got.shape == (2, 6, 6, 3)
    np.testing.assert_array_equal(got[0], np.full((6, 6, 3), 100))  # gray pixels spread over R, G and B


def test_a_large_colour_folder_is_read_lazily_in_colour(monkeypatch):
    monkeypatch.setattr(folders_module, "LAZY_BYTES", 1000)
    lazy = load(PHOTOS).images
    assert isinstance(lazy, folders_module.LazyImages)
    assert lazy.shape == (24, 32, 32, 3) and lazy.ndim == 4
    np.testing.assert_array_equal(lazy[[3, 0, 17]], np.asarray(load(PHOTOS, grayscale=False).images)[[3, 0, 17]])
    gray = load(PHOTOS, grayscale=True).images
    assert gray.shape == (24, 32, 32)
    np.testing.assert_array_equal(gray[5], np.asarray(Image.open(photo_files()[5]).convert("L")))


def test_npz_arrays_load_in_colour_and_convert_on_request(tmp_path):
    x, y = colour_blobs()
    np.savez(tmp_path / "c.npz", x_train=x, y_train=y)
    np.testing.assert_array_equal(load(tmp_path / "c.npz").images, x)
    np.testing.assert_array_equal(load(tmp_path / "c.npz", grayscale=True).images, to_grayscale(x))
    np.testing.assert_array_equal(load(tmp_path / "c.npz", image_size=4).images, resize(x, 4))
    small = resize(x, 4)
    assert small.shape == (60, 4, 4, 3)
    expected = np.asarray(Image.fromarray(x[7], "RGB").resize((4, 4), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(small[7], expected)


def test_a_colour_view_moves_every_channel_by_the_same_map():
    x = torch.rand(3, 6 * 5 * 3)
    u = torch.rand(3, 5)
    out = random_affine(x, (6, 5, 3), uniforms=u, flip=True).view(3, 6, 5, 3)
    for c in range(3):
        channel = x.view(3, 6, 5, 3)[..., c].reshape(3, 30)
        torch.testing.assert_close(out[..., c].reshape(3, 30), random_affine(channel, (6, 5), uniforms=u, flip=True))


def test_a_colour_grid_keeps_its_channels():
    images = np.random.default_rng(0).random((2, 3, 4 * 5 * 3)).astype(np.float32)
    grid = image_grid(images, (4, 5, 3))
    assert grid.shape == (2 * 5 + 1, 3 * 6 + 1, 3)
    np.testing.assert_array_equal(grid[1:5, 7:12], images[0, 1].reshape(4, 5, 3))


def test_colour_round_trip_folder_model_figures_predict(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(PHOTOS), "--out", str(run), "--epochs", "1", *TINY]) == 0
    cfg = load_config(run)
    assert (cfg.model.image_shape, cfg.model.channels, cfg.grayscale) == ((32, 32), 3, False)
    for name in ("samples.png", "reconstructions.png", "traversals.png", "progress.png"):
        rgb = np.asarray(Image.open(run / name).convert("RGB")).astype(int)
        assert (np.abs(rgb[..., 0] - rgb[..., 1]) > 8).any(), f"{name} is drawn in gray"
    assert main(["report", str(run)]) == 0
    assert "32×32×3" in (run / "report.html").read_text()
    x = load(PHOTOS).images
    np.save(tmp_path / "x.npy", x[:5])
    assert main(["predict", str(run), str(photo_files()[0]), str(tmp_path / "x.npy")]) == 0
    est = MixtureVAE.load(run)
    np.testing.assert_allclose(est.predict_proba(x[:5]).sum(1), 1, rtol=1e-5)
    assert est.sample(2)[0].shape == (2, 32, 32, 3)
    if importlib.util.find_spec("flask") is not None:  # the app's Try page names the conversion: colour
        from mixvae.app import Explorer, create_app

        page = create_app(Explorer.open(run, log=lambda m: None)).test_client().get("/try").data.decode()
        assert "(colour, resized to 32×32)" in page and "grayscale" not in page


def test_grayscale_flag_trains_on_luma_and_predict_converts_colour_files(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(PHOTOS), "--out", str(run), "--epochs", "1", "--grayscale",
                 "--set", "model.expert_network=conv", "--set", "model.conv_channels=[4]", *TINY]) == 0
    cfg = load_config(run)
    assert (cfg.model.channels, cfg.grayscale) == (1, True)
    capsys.readouterr()
    assert main(["predict", str(run), str(photo_files()[0])]) == 0
    est = MixtureVAE.load(run)
    gray = to_grayscale(np.asarray(Image.open(photo_files()[0]).convert("RGB"))[None])
    expert = int(capsys.readouterr().out.splitlines()[1].split("\t")[1])
    assert expert == int(est.predict(gray)[0])


def test_the_estimator_fits_colour_arrays():
    x, _ = colour_blobs()
    est = MixtureVAE(n_components=3, preset="seed", max_epochs=1, batch_size=20, random_state=0).fit(x)
    assert est.config_.model.channels == 3 and est.n_features_in_ == 8 * 8 * 3
    assert est.predict(x).shape == (60,)
    images, experts = est.sample(4)
    assert images.shape == (4, 8, 8, 3) and experts.shape == (4,)
    with pytest.raises(ValueError, match=r"\(8, 8, 3\)"):
        est.predict(to_grayscale(x))


@pytest.mark.parametrize(("array", "extra", "message"), [
    (np.zeros((20, 4, 4, 3), np.uint8), ["--set", "model.expert_network=conv", "--set", "model.conv_channels=[4,8,16]"],
     r"image_shape=\(4, 4\) is invalid: expected height and width >= 8 for 3 convolution layers"),
    (np.zeros((20, 8, 8, 2), np.uint8), [], r"has shape \(20, 8, 8, 2\); expected .*\(N, H, W, 3\)"),
])
def test_bad_colour_or_conv_input_is_one_line_and_writes_nothing(tmp_path, capsys, array, extra, message):
    np.save(tmp_path / "x.npy", array)
    assert main(["train", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "run"), *TINY, *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mixvae: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "run").exists()
