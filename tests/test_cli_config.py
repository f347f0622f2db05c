"""Config files and flags: defaults < preset < file < flags; a run repeats from its config.yaml."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mixvae.cli import main, parser
from mixvae.cli.run import config_from_args
from mixvae.config import ModelConfig, TrainConfig

from conftest import blobs

TINY = ["--preset", "seed", "--experts", "4", "--epochs", "2", "--batch-size", "40",
        "--set", "model.hidden=[16]", "--set", "model.manager_hidden=[16]"]


def resolve(*argv: str):
    return config_from_args(parser().parse_args(["train", *argv]))


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    x, y = blobs(n_per=30)
    xt, yt = blobs(n_per=10, seed=1)
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    return path


def test_preset_beats_defaults():
    cfg = resolve()
    assert cfg.preset == "default"
    assert cfg.train.epochs == 8 != TrainConfig().epochs
    assert cfg.model.hidden == (256,) != ModelConfig().hidden
    assert resolve("--preset", "seed").model.hidden == (128,)


def test_file_beats_preset_and_flags_beat_file(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("preset: seed\ntrain:\n  epochs: 7\n  lr: 0.01\nmodel:\n  latent_dim: 4\n")
    cfg = resolve("--config", str(f))
    assert (cfg.preset, cfg.train.epochs, cfg.train.lr, cfg.model.latent_dim) == ("seed", 7, 0.01, 4)
    assert cfg.model.activation == "sigmoid"  # from the file's preset
    cfg = resolve("--config", str(f), "--set", "model.latent_dim=5", "--set", "train.epochs=9", "--epochs", "3")
    assert (cfg.model.latent_dim, cfg.train.epochs, cfg.train.lr) == (5, 3, 0.01)  # named flags last


def test_preset_flag_keeps_only_what_the_file_writes(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("train:\n  epochs: 7\n")  # names no preset
    cfg = resolve("--config", str(f), "--preset", "seed")
    assert (cfg.preset, cfg.train.epochs, cfg.model.hidden, cfg.train.lr) == ("seed", 7, (128,), 1e-3)


def test_toml_file(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('preset = "seed"\n[model]\nn_components = 3\nhidden = [32]\n[train]\nbatch_size = 20\n')
    cfg = resolve("--config", str(f))
    assert (cfg.model.n_components, cfg.model.hidden, cfg.train.batch_size) == (3, (32,), 20)


@pytest.mark.parametrize("text, match", [
    ("model:\n  latent_dim: 0\n", "latent_dim=0"),
    ("train:\n  nope: 1\n", "train.nope is not an option"),
    ("model: [1, 2\n", "not a readable"),
])
def test_bad_file_is_one_line(tmp_path, capsys, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    assert main(["train", "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_run_repeats_from_its_config(npz, tmp_path, capfd):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--data", str(npz), *TINY, "--out", str(a)]) == 0
    err = capfd.readouterr().err
    assert "it/s" not in err and "\r" not in err  # no progress bar when stderr is not a terminal
    assert main(["train", "--config", str(a / "config.yaml"), "--out", str(b), "--quiet"]) == 0
    assert (a / "config.yaml").read_text() == (b / "config.yaml").read_text()
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)

    def metrics(run):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert metrics(a) == metrics(b) and len(metrics(a)) == 2
    for name in ("curves.png", "usage.png", "samples.png", "reconstructions.png", "traversals.png",
                 "confusion.png", "progress.png"):
        assert (a / name).stat().st_size > 0, name


def test_tensorboard(npz, tmp_path):
    """Every epoch's numbers reach TensorBoard (the dev extra installs it, so this never skips)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    argv = ["train", "--data", str(npz), *TINY, "--epochs", "2", "--out", str(tmp_path / "r"), "--quiet",
            "--tensorboard"]
    assert main(argv) == 0
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    for key in ("loss", "test_acc", "usage/E0"):
        got = [(e.step, e.value) for e in events.Scalars(key)]
        want = [(r["epoch"], r["usage"][0] if key == "usage/E0" else r[key]) for r in records]
        assert [s for s, _ in got] == [1, 2]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), key


def test_tensorboard_missing_is_one_line(npz, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    argv = ["train", "--data", str(npz), *TINY, "--out", str(tmp_path / "r"), "--tensorboard"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pip install 'mixvae[tensorboard]'" in err and err.count("\n") == 1


def test_iw_bound_of_a_binarised_run_is_on_binarised_images(npz, tmp_path, capsys):
    run = tmp_path / "bin"
    assert main(["train", "--data", str(npz), *TINY, "--set", "train.binarize=true", "--out", str(run), "--quiet"]) == 0
    assert main(["evaluate", str(run), "--data", str(npz), "--iw", "20"]) == 0
    ll = json.loads((run / "eval.json").read_text())["log_likelihood"]
    assert ll["pixels"].startswith("binarised") and ll["iw_samples"] == 20 and np.isfinite(ll["mean_nats"])
    first = ll["mean_nats"]
    assert main(["evaluate", str(run), "--data", str(npz), "--iw", "20"]) == 0  # the same binarisation each time
    assert json.loads((run / "eval.json").read_text())["log_likelihood"]["mean_nats"] == first
