"""The training loop's records and stopping, checked against what its steps did."""

from __future__ import annotations

import io
import itertools
import re
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mixvae import checkpoint as ckpt
from mixvae import train as train_mod
from mixvae.callbacks import Callback
from mixvae.config import ConfigError
from mixvae.regularisers import Regulariser, Schedule
from mixvae.runfolder import NEIGHBOURS_FILE
from mixvae.train import History, Runtime, Trainer, fit, make_adam

from conftest import blobs
from test_train import blob_config


def recording_trainer(cfg, x, **kw) -> tuple[Trainer, list[dict[str, float]]]:
    """A Trainer whose forward call also keeps each step's loss parts."""
    trainer = Trainer(cfg, x, log=None, **kw)
    steps: list[dict[str, float]] = []
    forward = trainer.forward

    def spy(*args):
        out = forward(*args)
        steps.append(out.parts())
        return out

    trainer.forward = spy
    return trainer, steps


@pytest.mark.parametrize("n_per, per_epoch", [(30, 3), (10, 1)])
def test_an_epoch_record_is_the_mean_of_its_steps_parts(monkeypatch, n_per, per_epoch):
    x, y = blobs(n_per=n_per, k=4)
    ticks = itertools.count()
    monkeypatch.setattr(train_mod, "time", SimpleNamespace(perf_counter=lambda: 1.2345678 * next(ticks)))
    cfg = blob_config(epochs=2, batch_size=40)
    trainer, steps = recording_trainer(cfg, x, test_images=x[:50], test_labels=y[:50])
    _, history = trainer.run()
    assert len(steps) == 2 * per_epoch and len(history) == 2
    for e, record in enumerate(history.records):
        assert record["epoch"] == e + 1 and record["step"] == (e + 1) * per_epoch
        assert record["seconds"] == 1.235  # one clock tick an epoch, to the millisecond
        for key in ("loss", "mixture", "recon", "kl", "balance"):
            mean = np.mean([s[key] for s in steps[e * per_epoch:(e + 1) * per_epoch]])
            assert record[key] == pytest.approx(round(mean, 5), abs=1e-9), key
        assert {"test_acc", "test_nmi", "test_ari", "usage", "experts_used", "routing_entropy"} <= set(record)
    assert history.column("epoch") == [1, 2] and history.column("missing") == [None, None]
    assert history[1] is history.records[1]


@pytest.mark.parametrize("max_steps, records, epoch, step_in_epoch", [(2, 0, 0, 2), (3, 1, 1, 0), (4, 1, 1, 1)])
def test_max_steps_stops_where_asked(max_steps, records, epoch, step_in_epoch):
    """Three steps an epoch: a stop inside an epoch leaves it unfinished; a stop at its last step finishes it."""
    x, _ = blobs(n_per=30, k=4)
    trainer, steps = recording_trainer(blob_config(epochs=3, batch_size=40), x, runtime=Runtime(max_steps=max_steps))
    _, history = trainer.run()
    assert len(steps) == max_steps == trainer.state.step and len(history) == records
    assert (trainer.state.epoch, trainer.state.step_in_epoch) == (epoch, step_in_epoch)


class Spy(Regulariser):
    """Records what the loop tells a regulariser at the start of each epoch."""

    def __init__(self):
        self.calls: list[tuple] = []

    def start_epoch(self, module, epoch, fresh, log):
        self.calls.append((module, epoch, fresh, log))
        return {"spy_epoch": epoch}


def test_the_loop_tells_the_regulariser_the_epoch_whether_it_is_fresh_and_where_to_log(tmp_path, monkeypatch):
    x, _ = blobs(n_per=30, k=4)
    spy = Spy()
    monkeypatch.setattr(train_mod, "build_schedule", lambda *args: Schedule([(0, spy)]))
    lines: list[str] = []
    trainer = Trainer(blob_config(epochs=3, batch_size=40), x, run_dir=tmp_path, log=lines.append,
                      runtime=Runtime(progress=False, max_steps=4))
    _, history = trainer.run()
    assert [(m, e, f, lg) for m, e, f, lg in spy.calls] == [(trainer.module, 0, True, lines.append),
                                                            (trainer.module, 1, True, lines.append)]
    assert history.column("spy_epoch") == [0]
    resumed = Trainer(blob_config(epochs=3, batch_size=40), x, run_dir=tmp_path, log=None,
                      runtime=Runtime(progress=False))
    resumed.run(resume=True)
    assert [(e, f, lg) for _, e, f, lg in spy.calls[2:]] == [(1, False, None), (2, True, None)]  # resumed inside epoch 2


def test_the_progress_bar_counts_steps_and_shows_the_loss_every_ten(capsys):
    x, _ = blobs(n_per=50, k=4)  # 200 images, 8 a batch: 25 steps
    cfg = blob_config(epochs=1, batch_size=8)
    trainer, _ = recording_trainer(cfg, x, runtime=Runtime(progress=True))
    losses: list[float] = []
    forward = trainer.forward

    def spy(*args):
        out = forward(*args)
        losses.append(out.loss.item())
        return out

    trainer.forward = spy
    trainer.run()
    err = capsys.readouterr().err
    counts = [int(n) for n in re.findall(r"(\d+)/25 \[", err)]
    assert "epoch 1/1" in err and 1 in counts and max(counts) <= 25  # one step at a time, out of 25
    shown = set(re.findall(r"loss=(-?\d+\.\d\d)", err))
    assert shown == {f"{losses[i]:.2f}" for i in (0, 10, 20)}
    assert trainer.bar is None


def test_history_appends_in_order():
    h = History()
    h.append({"a": 1})
    h.append({"a": 2, "b": 3})
    assert len(h) == 2 and h.column("a") == [1, 2] and h.column("b") == [None, 3] and h[0] == {"a": 1}


def test_a_working_compile_is_used_for_every_step_and_timed_once(monkeypatch):
    x, _ = blobs(n_per=30, k=4)
    given, calls = [], []

    def fake_compile(model):
        given.append(model)

        def compiled(*args):
            calls.append(len(args))
            return model(*args)
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    lines: list[str] = []
    cfg = blob_config(epochs=2, batch_size=40)
    trainer = Trainer(cfg, x, log=lines.append, runtime=Runtime(progress=False, compile=True))
    trainer.run()
    assert given == [trainer.model] and len(calls) == 6  # two epochs of three steps, all compiled
    timed = [line for line in lines if line.startswith("compiled the loss in")]
    assert len(timed) == 1 and re.fullmatch(r"compiled the loss in \d+\.\ds", timed[0])
    assert float(timed[0].split()[-1][:-1]) < 60


def test_compile_failing_without_a_message_is_named_by_its_type(monkeypatch, capsys):
    x, _ = blobs(n_per=30, k=4)

    def broken(model):
        raise RuntimeError()

    monkeypatch.setattr(torch, "compile", broken)
    fit(blob_config(epochs=1, batch_size=40), x, log=None, runtime=Runtime(progress=False, compile=True))
    out, err = capsys.readouterr()  # with no log, the one line goes to stderr
    assert out == "" and err == "torch.compile is unavailable here (RuntimeError: RuntimeError); training without it\n"


class Recorder(Regulariser):
    def __init__(self):
        self.loaded: dict | None = None

    def state_dict(self):
        return {"recorder": torch.tensor([1, 2])}

    def load_state_dict(self, state):
        self.loaded = state


def state_after_one_epoch(tmp_path=None):
    x, _ = blobs(n_per=30, k=4)
    cfg = blob_config(epochs=1, batch_size=40)
    trainer = Trainer(cfg, x, log=None, run_dir=tmp_path, runtime=Runtime(progress=False))
    trainer.run()
    return cfg, x, trainer


def test_the_state_restores_itself_frames_and_regulariser_included():
    cfg, x, trainer = state_after_one_epoch()
    trainer.state.schedule = Schedule([(0, Recorder())])
    state = trainer.state.state_dict()
    assert state["frames"].shape == (1, 4, 64) and torch.equal(state["recorder"], torch.tensor([1, 2]))
    other = Trainer(cfg, x, log=None)
    other.state.schedule = Schedule([(0, Recorder())])
    other.state.load_state_dict(state, Path("run/step-3.pt"))
    assert (other.state.epoch, other.state.step, other.state.step_in_epoch) == (1, 3, 0)
    assert len(other.state.frames) == 1 and torch.equal(other.state.frames[0], trainer.state.frames[0])
    assert other.state.history.records == trainer.state.history.records
    assert other.state.schedule.at(0).loaded is state
    for p, q in zip(other.module.parameters(), trainer.module.parameters()):
        assert torch.equal(p, q)


def test_a_state_that_does_not_fit_is_refused_naming_the_checkpoint():
    cfg, x, trainer = state_after_one_epoch()
    where = Path("run/checkpoints/step-00000003.pt")
    state = trainer.state.state_dict()
    other = Trainer(cfg, x, log=None)
    with pytest.raises(ckpt.CheckpointError, match=re.escape(f"{where} is not a complete mixvae checkpoint (KeyError)")):
        other.state.load_state_dict({k: v for k, v in state.items() if k != "history"}, where)
    wrong_optimiser = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))]).state_dict()
    with pytest.raises(ckpt.CheckpointError,
                       match=re.escape(f"{where} holds an optimiser state that does not fit this model (")):
        other.state.load_state_dict({**state, "optimizer": wrong_optimiser}, where)
    wrong_model = {**state, "model": {k: v[:1] for k, v in state["model"].items()}}
    with pytest.raises(ckpt.CheckpointError, match=re.escape(f"{where} was made with another model configuration")):
        other.state.load_state_dict(wrong_model, where)


def test_resuming_names_the_checkpoint_and_warns_of_a_corrupt_newest_one(tmp_path):
    cfg, x, _ = state_after_one_epoch(tmp_path)
    path, state = ckpt.load_latest_checkpoint(tmp_path)
    assert state["config"] == cfg.to_json()  # a checkpoint names the configuration it was made with
    fit(blob_config(epochs=2, batch_size=40), x, run_dir=tmp_path, resume=True, log=None,
        runtime=Runtime(progress=False))
    newest, _ = ckpt.load_latest_checkpoint(tmp_path)
    newest.write_bytes(newest.read_bytes()[:1000])  # a disk that filled up mid-write
    lines: list[str] = []
    with pytest.warns(RuntimeWarning, match=f"resuming from the one before, {path.name}"):
        fit(blob_config(epochs=3, batch_size=40), x, run_dir=tmp_path, resume=True, log=lines.append,
            runtime=Runtime(progress=False))
    assert lines[0] == f"resumed from {path} at epoch 2, step 3"
    torch.save({k: v for k, v in state.items() if k != "history"}, newest)  # loads, but incomplete
    (tmp_path / "checkpoints" / "step-00000009.pt").unlink()
    with pytest.raises(ckpt.CheckpointError, match=re.escape(f"{newest} is not a complete mixvae checkpoint")):
        fit(blob_config(epochs=3, batch_size=40), x, run_dir=tmp_path, resume=True, log=None,
            runtime=Runtime(progress=False))


@pytest.mark.parametrize("keep", [1, 3])
def test_the_configured_number_of_checkpoints_is_kept(tmp_path, keep):
    x, _ = blobs(n_per=30, k=4)
    fit(blob_config(epochs=4, batch_size=40, keep_checkpoints=keep), x, run_dir=tmp_path, log=None,
        runtime=Runtime(progress=False))
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*.pt"))
    assert kept == [f"step-{s:08d}.pt" for s in (3, 6, 9, 12)[-keep:]]


def test_training_draws_from_its_own_generator_not_torchs_global_one():
    """The reparameterisation noise comes from the run's generator: torch's global random state is
    left as it was, so that code around the training cannot change it, and it cannot change that code."""
    x, _ = blobs(n_per=30, k=4)
    trainer, _ = recording_trainer(blob_config(epochs=2, batch_size=40), x)
    before = torch.get_rng_state()
    trainer.run()
    assert torch.equal(torch.get_rng_state(), before)


def test_a_warning_raised_in_the_backward_pass_is_not_hidden():
    """Only anomaly mode's "Error detected in" warning is silenced during backward."""
    x, _ = blobs(n_per=30, k=4)
    trainer = Trainer(blob_config(epochs=1, batch_size=40), x, log=None, runtime=Runtime(progress=False))
    forward = trainer.forward

    def warning_in_backward(*args):
        out = forward(*args)
        out.loss.register_hook(lambda g: warnings.warn("a hook ran in backward", UserWarning, stacklevel=1))
        return out

    trainer.forward = warning_in_backward
    with pytest.warns(UserWarning, match="a hook ran in backward"):
        trainer.run()


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("progress, tty, shown", [(None, True, True), (None, False, False), (False, True, False)])
def test_the_bar_is_shown_on_a_terminal_unless_turned_off(monkeypatch, progress, tty, shown):
    x, _ = blobs(n_per=30, k=4)
    err = TTY() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    Trainer(blob_config(epochs=1, batch_size=40), x, log=None, runtime=Runtime(progress=progress)).run()
    assert ("epoch 1/1" in err.getvalue()) == shown


def test_a_resumed_epochs_bar_starts_at_the_step_reached_and_is_cleared_at_the_end(tmp_path, capsys):
    x, _ = blobs(n_per=30, k=4)
    cfg = blob_config(epochs=1, batch_size=40)
    Trainer(cfg, x, run_dir=tmp_path, log=None, runtime=Runtime(progress=False, max_steps=2)).run()
    Trainer(cfg, x, run_dir=tmp_path, log=None, runtime=Runtime(progress=True)).run(resume=True)
    err = capsys.readouterr().err
    counts = [int(n) for n in re.findall(r"(\d+)/3 \[", err)]
    assert counts[0] == 2 and max(counts) <= 3
    assert err.endswith("\r") and not err.rstrip("\r ").endswith("\n")  # leave=False: no line left behind


def test_building_the_neighbour_graph_is_logged(tmp_path):
    x, _ = blobs(n_per=30, k=4)
    cfg = blob_config(epochs=1, batch_size=40, manager_regulariser="neighbours", n_neighbours=5, neighbour_pca_dims=8)
    lines: list[str] = []
    Trainer(cfg, x, run_dir=tmp_path, log=lines.append, runtime=Runtime(progress=False)).run()
    assert any(line.startswith("found 5 nearest neighbours (exact) of 120 images in ") for line in lines), lines
    assert (tmp_path / NEIGHBOURS_FILE).exists()  # kept in the run folder, for a resume to load


def test_callbacks_get_every_record_and_the_trainer():
    x, _ = blobs(n_per=30, k=4)
    seen: list = []

    class Keep(Callback):
        def on_epoch_end(self, record, trainer):
            seen.append((record["epoch"], trainer))

        def on_train_end(self, trainer):
            seen.append(("end", trainer))

    trainer = Trainer(blob_config(epochs=2, batch_size=40), x, log=None, runtime=Runtime(progress=False),
                      callbacks=[Keep()])
    trainer.run()
    assert seen == [(1, trainer), (2, trainer), ("end", trainer)]


@pytest.mark.parametrize("error", [RuntimeError, TypeError, ValueError])
def test_adam_without_a_fused_kernel_is_the_usual_adam(monkeypatch, error):
    real = torch.optim.Adam

    def no_fused_kernel(params, lr, fused=None):
        if fused:
            raise error("no fused kernel for this device")
        return real(params, lr=lr)

    monkeypatch.setattr(torch.optim, "Adam", no_fused_kernel)
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.ones(2))]
    opt = make_adam(iter(params), 0.125)  # any iterable of parameters, read once
    assert isinstance(opt, real) and not opt.defaults["fused"]
    assert opt.param_groups[0]["lr"] == 0.125 and opt.param_groups[0]["params"] == params


def test_each_epochs_test_metrics_are_computed_on_the_training_device(monkeypatch):
    x, y = blobs(n_per=10, k=4)
    seen = []

    def spy(module, images, labels, batch_size, device):
        seen.append((images, labels, batch_size, device))
        return {}

    monkeypatch.setattr(train_mod, "epoch_metrics", spy)
    cfg = blob_config(epochs=2, batch_size=40)
    trainer = Trainer(cfg, x, log=None, test_images=x[:20], test_labels=y[:20])
    trainer.run()
    assert len(seen) == 2
    for images, labels, batch_size, device in seen:
        assert images is trainer.test_images and labels is trainer.test_labels
        assert batch_size == cfg.train.eval_batch_size and device is not None and device == trainer.device


def test_a_process_other_than_the_first_gives_the_regulariser_no_log_and_writes_nothing(tmp_path, monkeypatch):
    x, _ = blobs(n_per=30, k=4)
    spy = Spy()
    monkeypatch.setattr(train_mod, "build_schedule", lambda *args: Schedule([(0, spy)]))
    lines: list[str] = []
    trainer = Trainer(blob_config(epochs=2, batch_size=40), x, run_dir=tmp_path, log=lines.append,
                      runtime=Runtime(progress=False))
    trainer.main = False  # what rank 1 of a process group sets (without a group to wait on)
    trainer.run()
    assert not trainer.main and [(e, lg) for _, e, _, lg in spy.calls] == [(0, None), (1, None)]
    assert not list(tmp_path.iterdir())  # checkpoints and records are the first process's


def test_each_epochs_progress_frame_is_every_expert_decoding_the_one_fixed_latent():
    x, _ = blobs(n_per=10, k=4)
    trainer = Trainer(blob_config(epochs=2, batch_size=40), x, log=None, runtime=Runtime(progress=False))
    module, _ = trainer.run()
    frames = trainer.state.frames
    K, D = trainer.cfg.model.n_components, x[0].size
    assert len(frames) == 2 and all(f.shape == (K, D) for f in frames)
    module.eval()
    with torch.no_grad():  # the last frame: the trained experts, each decoding the same latent
        expected = torch.stack([module.decode(trainer.z_fixed.expand(K, 1, -1))[k, 0] for k in range(K)])
    torch.testing.assert_close(frames[-1], expected)
    assert not torch.equal(frames[0], frames[1])  # drawn after each epoch's training


def test_a_parameter_the_steps_loss_does_not_reach_is_not_moved_by_adams_momentum():
    """Gradients are cleared to None, not zero: Adam then skips a parameter a step did not reach
    (with a zero gradient its momentum from earlier steps would keep moving it)."""
    x, _ = blobs(n_per=10, k=4)
    trainer = Trainer(blob_config(epochs=1, batch_size=40), x, log=None, runtime=Runtime(progress=False, max_steps=2))
    idle = torch.nn.Parameter(torch.zeros(3))
    trainer.module.register_parameter("idle", idle)
    opt = trainer.state.optimizer
    opt.add_param_group({"params": [idle]})
    idle.grad = torch.ones(3)
    opt.step()  # momentum from an earlier step
    before = idle.detach().clone()
    assert before.abs().sum() > 0
    trainer.run()
    torch.testing.assert_close(idle.detach(), before, rtol=0, atol=0)


def test_the_row_gatherer_reaches_the_balance_term_and_the_neighbour_regulariser():
    """On several processes the batch-level terms see every process's rows: the trainer hands its
    gatherer to the loss's balance term and to the regulariser's entropy. A gatherer that appends
    a fixed block of another process's routing stands in for torch.distributed here; both terms
    are computed by hand on the gathered rows."""
    x, _ = blobs(n_per=10, k=4)
    cfg = blob_config(epochs=1, batch_size=20, manager_regulariser="neighbours", n_neighbours=3,
                      neighbour_pca_dims=8, consistency_weight=0.7, entropy_weight=0.3)
    trainer, _ = recording_trainer(cfg, x, runtime=Runtime(progress=False, max_steps=2))
    other = torch.tensor([[0.7, 0.1, 0.1, 0.1]] * 5, dtype=torch.float64)  # the other process's rows
    seen: list[torch.Tensor] = []

    def gather(t: torch.Tensor) -> torch.Tensor:
        seen.append(t.detach().double())
        return torch.cat([t, other.to(t.dtype)])

    steps: list[tuple[float, float, torch.Tensor]] = []  # (balance, regulariser term, view routing)
    real_step = trainer._step

    def step(reg, idx):
        out, loss = real_step(reg, idx)
        steps.append((float(out.balance.detach()), float((loss - out.loss).detach()),
                      out.view_logits.detach().double().softmax(-1)))
        return out, loss

    trainer.gather = gather
    trainer._step = step  # type: ignore[method-assign]
    trainer.run()

    def entropy_of_mean(rows: torch.Tensor) -> float:
        p = rows.mean(0).numpy()
        return float(-(p * np.log(p)).sum())

    assert len(steps) == 2 and len(seen) == 4  # per step: the balance term's routing, then the views'
    for (balance, term, views), routing, view_rows in zip(steps, seen[0::2], seen[1::2], strict=True):
        p_x, p_nb = views.chunk(2)
        torch.testing.assert_close(view_rows, p_x, rtol=1e-6, atol=1e-7)
        assert routing.shape == (20, 4)
        assert balance == pytest.approx(np.log(4) - entropy_of_mean(torch.cat([routing, other])), rel=1e-5)
        consistency = float(-(p_x * p_nb).sum(1).log().mean())
        expected = 0.7 * consistency - 0.3 * entropy_of_mean(torch.cat([p_x, other]))
        assert term == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_the_progress_bar_follows_the_terminals_width(monkeypatch):
    """dynamic_ncols: tqdm reads the terminal's width again at each redraw, so a resized window
    gets a bar of its new width."""
    import tqdm.auto

    bars = []

    class Recording(tqdm.auto.tqdm):  # type: ignore[misc,name-defined]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    x, _ = blobs(n_per=10, k=4)
    Trainer(blob_config(epochs=1, batch_size=40), x, log=None, runtime=Runtime(progress=True)).run()
    (bar,) = bars
    assert callable(bar.dynamic_ncols)  # the function that measures the terminal (False when fixed)


def test_a_batch_that_does_not_divide_among_the_processes_is_refused(monkeypatch):
    monkeypatch.setattr(train_mod.distributed, "rank_world", lambda: (0, 3))  # as under torchrun, 3 processes
    x, _ = blobs(n_per=10, k=4)
    with pytest.raises(ConfigError, match=r"^batch_size=40 is invalid for 3 processes: expected a multiple of 3$"):
        Trainer(blob_config(epochs=1, batch_size=40), x, log=None)


@pytest.mark.parametrize("rank", [0, 1])
def test_only_the_first_process_says_that_compiling_fell_back(monkeypatch, rank):
    def no_compiler(model):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", no_compiler)
    monkeypatch.setattr(train_mod.distributed, "rank_world", lambda: (rank, 2))
    monkeypatch.setattr(Trainer, "_wrap", lambda self, module: (module, None))  # no process group to join
    x, _ = blobs(n_per=10, k=4)
    lines: list[str] = []
    trainer = Trainer(blob_config(epochs=1, batch_size=40), x, log=lines.append, runtime=Runtime(compile=True))
    expected = "torch.compile is unavailable here (RuntimeError: no compiler here); training without it"
    assert lines == ([expected] if rank == 0 else [])
    assert trainer.forward.compiled is None  # runs the model itself
