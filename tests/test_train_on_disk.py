"""Training data that stays on disk: a .npy file is memory-mapped and fit reads it a batch at a time."""

from __future__ import annotations

import numpy as np
import torch

from mixvae import batches, train
from mixvae.cli import main
from mixvae.config import ModelConfig, RunConfig, TrainConfig
from mixvae.train import Runtime

from conftest import blobs


class Reads:
    """An (N, H, W) uint8 array-like that records how many rows each read asks for."""

    def __init__(self, images: np.ndarray):
        self._images = images
        self.shape, self.dtype = images.shape, images.dtype
        self.largest = 0

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, key) -> np.ndarray:
        rows = self._images[key]
        self.largest = max(self.largest, len(rows))
        return rows


def test_training_from_npy_keeps_the_memory_map(tmp_path, monkeypatch):
    x, _ = blobs(n_per=25, k=4)
    np.save(tmp_path / "x.npy", x)
    seen = []
    real = batches.read_rows

    def spy(images, idx):
        seen.append(type(images))
        return real(images, idx)

    monkeypatch.setattr(batches, "read_rows", spy)
    args = ["train", "--data", str(tmp_path / "x.npy"), "--preset", "seed", "--experts", "4", "--epochs", "1",
            "--set", "model.hidden=[8]", "--set", "model.manager_hidden=[8]", "--batch-size", "20", "--quiet",
            "--out", str(tmp_path / "run")]
    assert main(args) == 0
    assert len(seen) == 5 and all(t is np.memmap for t in seen)  # one read per batch, from the map


def test_fit_reads_batches_and_chunks_never_the_whole_array():
    x, y = blobs(n_per=600, k=4)  # 2400 images: more than one chunk of the neighbour search (2048)
    model = ModelConfig(n_components=4, image_shape=(8, 8), latent_dim=2, hidden=(8,), manager_hidden=(8,))
    cfg = RunConfig(model=model, train=TrainConfig(epochs=1, batch_size=200, manager_regulariser="neighbours",
                                                   n_neighbours=3, neighbour_pca_dims=8, eval_batch_size=1000))
    on_disk, test = Reads(x), Reads(x)
    a, _ = train.fit(cfg, on_disk, test, y, log=None, runtime=Runtime(progress=False))
    assert 0 < on_disk.largest <= 2048 and 0 < test.largest <= 1000
    b, _ = train.fit(cfg, x, x, y, log=None, runtime=Runtime(progress=False))  # the same run from memory
    for (k, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-6), k


def test_a_large_image_folder_is_read_lazily(tmp_path, monkeypatch):
    from PIL import Image

    from mixvae import data
    from mixvae.data import folders

    x, y = blobs(n_per=10, k=4)
    for i, (image, label) in enumerate(zip(x, y)):
        (tmp_path / "imgs" / f"c{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / "imgs" / f"c{label}" / f"{i:03d}.png")
    monkeypatch.setattr(folders, "LAZY_BYTES", 0)  # treat this small folder as one larger than memory
    d = data.load(tmp_path / "imgs")
    assert isinstance(d.images, data.LazyImages) and d.images.shape == (40, 8, 8) and len(d) == 40
    order = np.argsort(y, kind="stable")  # files are sorted by class folder, then name
    np.testing.assert_array_equal(d.images[:], x[order])
    np.testing.assert_array_equal(d.images[np.array([3, 1])], x[order][[3, 1]])
    np.testing.assert_array_equal(d.labels, y[order])
    resized = data.load(tmp_path / "imgs", image_size=5)
    assert resized.images.shape == (40, 5, 5) and resized.images[0].shape == (5, 5)
    args = ["train", "--data", str(tmp_path / "imgs"), "--preset", "seed", "--experts", "4", "--epochs", "1",
            "--set", "model.hidden=[8]", "--set", "model.manager_hidden=[8]", "--batch-size", "20", "--quiet",
            "--out", str(tmp_path / "run")]
    assert main(args) == 0


def test_a_lazy_folder_with_mixed_sizes_is_refused(tmp_path, monkeypatch):
    from PIL import Image

    from mixvae import data
    from mixvae.data import folders

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(tmp_path / "b.png")
    monkeypatch.setattr(folders, "LAZY_BYTES", 0)
    import pytest

    with pytest.raises(data.DataError, match="different sizes"):
        data.load(tmp_path)
