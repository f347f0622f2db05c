"""Device-correct by construction: every tensor made while training, routing, scoring, sampling,
assigning or answering the app names its device, and random draws are made on the CPU only
through :func:`mixvae.devices.cpu_draw`, which says why.

A GPU is not needed to see a tensor made on the wrong device: a factory call without ``device=``
lands on torch's default device (the CPU) whatever the model's device is, which on a GPU costs a
host-to-device copy or fails with a device mismatch. A ``TorchFunctionMode`` records every factory
call made from mixvae's code; the module constructors' parameters (moved with the module) are the
only ones allowed without a device.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.overrides import TorchFunctionMode

import mixvae
from mixvae import MixtureVAE
from mixvae.assign import assign
from mixvae.config import config_from_dict, preset
from mixvae.kinds import Vectors, fit_to_data
from mixvae.train import Runtime, fit

from conftest import blobs

SRC = Path(mixvae.__file__).resolve().parent
FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.arange, torch.tensor, torch.as_tensor,
             torch.eye, torch.linspace, torch.scalar_tensor}
RANDOM = {torch.rand, torch.randn, torch.randint, torch.randperm, torch.normal, torch.bernoulli, torch.multinomial}
HELPER = SRC / "devices.py"
MACHINERY = ("torch/overrides.py", "torch/utils/_device.py")


class Recorder(TorchFunctionMode):
    """Every factory call made from mixvae's code that names no device, and every random draw
    made outside :mod:`mixvae.devices`: (file:line function, call)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func in FACTORIES or func in RANDOM:
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.endswith(MACHINERY):
                frame = frame.f_back  # the modes' own dispatch: the caller is the frame above
            where = Path(frame.f_code.co_filename).resolve() if frame is not None else None
            if where is not None and where.is_relative_to(SRC):
                in_module_init = frame.f_code.co_name == "__init__" and isinstance(frame.f_locals.get("self"), nn.Module)
                site = f"{where.relative_to(SRC)}:{frame.f_lineno} {frame.f_code.co_name}: {func.__name__}"
                if func in RANDOM and where != HELPER:
                    self.found.append(site + " (a random draw outside mixvae.devices)")
                elif func in FACTORIES and "device" not in kwargs and not in_module_init:
                    self.found.append(site + " (no device)")
        return func(*args, **kwargs)


@contextmanager
def recorded() -> Iterator[list[str]]:
    recorder = Recorder()
    with recorder:
        yield recorder.found


def images(n: int = 96, side: int = 8, seed: int = 0) -> np.ndarray:
    x, _ = blobs(n_per=n // 4, k=4, seed=seed)
    return x[:, :side, :side] if x.shape[1] >= side else x


def test_a_training_run_makes_every_tensor_on_its_device() -> None:
    """Binarised pixels, views, self-labelling, the neighbour graph and the end-of-epoch record."""
    x = images()
    cfg = preset("default", 4, tuple(x.shape[1:3]))
    cfg = config_from_dict({"train": {"epochs": 2, "batch_size": 32, "self_label_epoch": 1, "binarize": True,
                                      "regulariser_warmup_epochs": 0}}, base=cfg)
    cfg = fit_to_data(cfg, len(x))
    with recorded() as found:
        fit(cfg, x, x, np.arange(len(x)) % 4, runtime=Runtime(progress=False))
    assert not found, found


def test_a_training_run_on_vectors_makes_every_tensor_on_its_device() -> None:
    rows = np.random.default_rng(0).normal(size=(80, 5)).astype(np.float32)
    cfg = preset("default", 3, (1, 5), Vectors())
    cfg = fit_to_data(config_from_dict({"train": {"epochs": 2, "batch_size": 32}}, base=cfg), len(rows))
    with recorded() as found:
        fit(cfg, rows, runtime=Runtime(progress=False))
    assert not found, found


@pytest.fixture(scope="module")
def fitted() -> tuple[MixtureVAE, np.ndarray]:
    x = images()
    return MixtureVAE(n_components=4, max_epochs=1, random_state=0).fit(x), x


def test_routing_scoring_sampling_and_assigning_make_every_tensor_on_its_device(fitted) -> None:
    model, x = fitted
    with recorded() as found:
        model.predict_proba(x)
        model.score_samples(x[:8], n_iw_samples=3)
        model.sample(6)
        model.sample(2, expert=1)
        model.transform(x[:4])
        assign(model.module_, x, [str(i) for i in range(len(x))], iw_samples=2, binarize=True)
    assert not found, found


def test_the_apps_answers_make_every_tensor_on_its_device(fitted, tmp_path: Path) -> None:
    pytest.importorskip("flask")
    from mixvae.app import Explorer, create_app

    model, x = fitted
    model.save(tmp_path / "model")
    client = create_app(Explorer.open(tmp_path / "model", log=lambda m: None)).test_client()
    buf = io.BytesIO()
    Image.fromarray(x[0]).save(buf, format="PNG")
    with recorded() as found:
        for url in ("/sample/1/3.png", "/decode/0.png?z=" + ",".join(["0.5"] * model.config_.model.latent_dim)):
            assert client.get(url).status_code == 200, url
        answer = client.post("/api/route", data={"image": (io.BytesIO(buf.getvalue()), "x.png")},
                             content_type="multipart/form-data")
        assert answer.status_code == 200
    assert not found, found


def test_the_recorder_sees_a_tensor_made_without_a_device() -> None:
    """The test above fails when a call forgets its device: seen here on purpose."""
    def careless() -> torch.Tensor:
        return torch.zeros(3)

    careless.__code__ = careless.__code__.replace(co_filename=str(SRC / "batches.py"))
    with recorded() as found:
        careless()
        torch.zeros(3)  # the test's own tensors are not mixvae's
    assert found == [f"batches.py:{careless.__code__.co_firstlineno + 1} careless: zeros (no device)"]


@pytest.mark.parametrize("on_device", [False, True])
def test_the_batch_source_counts_its_host_to_device_copies(on_device: bool) -> None:
    """On a device other than the CPU ("meta" stands for one: shapes without values) each step
    copies its images (unless they live on the device, then only their indices) and its draws."""
    from mixvae.batches import BatchSource

    x = images()
    cfg = config_from_dict({"train": {"binarize": True, "augment": True}}, base=preset("default", 4, (8, 8)))
    source = BatchSource(x, cfg, torch.Generator().manual_seed(0), torch.device("meta"), data_on_device=on_device)
    assert source.data_on_device is on_device
    start = (source.copies, source.copied_bytes)
    assert start == ((1, x.size) if on_device else (0, 0))  # uint8 pixels, once
    idx = np.arange(32)
    batch = source.batch(idx)
    assert batch.device.type == "meta" and batch.shape == (32, 64)
    source.noise(32)
    source.view(batch)
    copies, copied = source.copies - start[0], source.copied_bytes - start[1]
    images_bytes = 32 * 8 if on_device else 32 * 64  # int64 indices, or the uint8 images
    draws = 32 * 64 * 4 + 4 * 32 * cfg.model.latent_dim * 4 + 32 * 5 * 4  # coins, noise, view uniforms (float32)
    assert (copies, copied) == (4, images_bytes + draws)
    cpu = BatchSource(x, cfg, torch.Generator().manual_seed(0), torch.device("cpu"), data_on_device=True)
    cpu.batch(idx)
    assert (cpu.copies, cpu.data_on_device) == (0, False)  # the CPU is the host: nothing to copy


def test_the_epoch_line_shows_the_host_copies_off_the_cpu() -> None:
    from mixvae.callbacks import summary

    record = {"epoch": 1, "loss": 1.0, "seconds": 2.0}
    assert "host" not in summary(record, 3)  # on the CPU nothing is copied, nothing is said
    line = summary({**record, "host_copies_per_step": 4.0, "host_bytes_per_step": 8192, "data_on_device": True}, 3)
    assert line.endswith("host copies/step 4 (8 KiB, images on the device)")
