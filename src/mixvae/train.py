"""Training: one loop, over named parts, with exact resume.

``Trainer.run`` reads top to bottom: restore the state when resuming, then for each epoch take
optimiser steps on this process's batches and end the epoch (records, checkpoint, callbacks).
What varies plugs in from outside the loop: the batch source (:mod:`mixvae.batches`), the
routing regulariser of each epoch (:mod:`mixvae.regularisers`) and the per-epoch outputs
(:mod:`mixvae.callbacks`). Everything that changes while training lives in one
:class:`TrainState`, which saves and restores itself.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tqdm.auto

from mixvae import checkpoint as ckpt
from mixvae import distributed, memory, restarts
from mixvae.batches import BatchSource
from mixvae.callbacks import Callback
from mixvae.callbacks import standard as standard_callbacks
from mixvae.config import ConfigError, RunConfig
from mixvae.devices import cpu_draw
from mixvae.evaluation import epoch_metrics
from mixvae.model import LossOutput, MixtureModule
from mixvae.regularisers import Regulariser, Schedule, build_schedule

__all__ = ["History", "Runtime", "TrainState", "Trainer", "TrainingError", "fit", "make_adam"]

Log = Callable[[str], None] | None


class TrainingError(RuntimeError):
    """Training cannot go on (for example the loss became NaN); the message says where."""


@dataclass
class History:
    """One record per finished epoch: loss parts, test metrics, expert usage, seconds."""

    records: list[dict[str, Any]] = field(default_factory=list)
    # with several trainings (mixvae.restarts): each one's seed, cut and experts used, and "kept"
    restarts: list[dict[str, Any]] = field(default_factory=list)

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]

    def column(self, key: str) -> list[Any]:
        return [r.get(key) for r in self.records]


@dataclass(frozen=True)
class Runtime:
    """How this process runs a training; none of it is part of the run's configuration.

    ``progress`` None shows a bar when stderr is a terminal; ``max_steps`` stops after that many
    optimiser steps in total (with a checkpoint there); ``detect_anomaly`` names the operation
    that made NaN; ``compile`` runs the loss through ``torch.compile``; ``data_on_device`` puts
    the training images on a non-CPU device once ("auto": when they fit, see
    :func:`mixvae.batches.fits_on_device`), so that a step copies only its random draws there.
    """

    device: str | torch.device = "cpu"
    progress: bool | None = None
    max_steps: int | None = None
    detect_anomaly: bool = False
    compile: bool = False
    data_on_device: bool | str = "auto"


class TrainState:
    """Everything that changes while training, saved in every checkpoint and restored on resume."""

    KEYS = ("model", "optimizer", "generator", "torch_rng", "epoch", "step", "step_in_epoch", "history", "frames")

    def __init__(self, module: MixtureModule, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                 schedule: Schedule):
        self.module, self.optimizer, self.generator, self.schedule = module, optimizer, generator, schedule
        self.epoch = self.step = self.step_in_epoch = 0
        self.history = History()
        self.frames: list[torch.Tensor] = []  # progress figure: per epoch, one z decoded by every expert

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": self.epoch,
            "step": self.step,
            "step_in_epoch": self.step_in_epoch,
            "history": json.dumps(self.history.records),
            "frames": torch.stack(self.frames) if self.frames else torch.zeros(0, device="cpu"),
            **self.schedule.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], where: Path) -> None:
        ckpt.load_state(self.module, state["model"], where)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as e:
            raise ckpt.CheckpointError(f"{where} holds an optimiser state that does not fit this model ({e})") from None
        try:
            self.generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            self.epoch, self.step = int(state["epoch"]), int(state["step"])
            self.step_in_epoch = int(state["step_in_epoch"])
            self.history = History(json.loads(state["history"]))
            self.frames = list(state["frames"]) if len(state["frames"]) else []
            self.schedule.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ckpt.CheckpointError(f"{where} is not a complete mixvae checkpoint ({type(e).__name__})") from None

    def save(self, run_dir: Path, cfg: RunConfig) -> None:
        """A checkpoint of this state, and the weights as ``model.safetensors``."""
        state = {**self.state_dict(), "config": cfg.to_json()}
        ckpt.save_checkpoint(run_dir, self.step, state, keep=cfg.train.keep_checkpoints)
        ckpt.save_weights(Path(run_dir) / ckpt.WEIGHTS_FILE, self.module, cfg)


class Trainer:
    """Trains a mixture of VAEs on uint8 images (N, H, W); see :func:`fit` for the arguments."""

    def __init__(self, cfg: RunConfig, train_images: Any, test_images: Any = None,
                 test_labels: np.ndarray | None = None, run_dir: Path | None = None,
                 runtime: Runtime = Runtime(), log: Log = print, callbacks: Sequence[Callback] = (),
                 graph_dir: Path | None = None):
        self.cfg, self.run_dir, self.log = cfg, run_dir, log
        self.graph_dir = graph_dir if graph_dir is not None else run_dir  # where the neighbour graph is kept
        self.test_images, self.test_labels = test_images, test_labels
        self.rank, self.world = distributed.rank_world()
        self.main = self.rank == 0
        self.device = torch.device(runtime.device)
        self.runtime = runtime
        if cfg.train.batch_size % self.world:
            raise ConfigError(f"batch_size={cfg.train.batch_size} is invalid for {self.world} processes: "
                              f"expected a multiple of {self.world}")
        torch.manual_seed(cfg.train.seed)
        self.module = MixtureModule(cfg.model).to(self.device)
        self.model, gather = self._wrap(self.module)
        quiet: Callable[[str], None] = lambda m: None
        self.forward = _Compiled(self.model, (log or _to_stderr) if self.main else quiet) if runtime.compile \
            else self.model
        generator = torch.Generator().manual_seed(cfg.train.seed + 1)  # noise, neighbour picks, views
        self.z_fixed = cpu_draw(torch.randn, 1, cfg.model.latent_dim, generator=torch.Generator().manual_seed(cfg.train.seed + 2))
        self.source = BatchSource(train_images, cfg, generator, self.device, self.rank, self.world,
                                  runtime.data_on_device)
        self.copies_seen = (0, 0)  # the batch source's host-to-device copies (count, bytes) before this epoch
        self.gather = gather
        self.state = TrainState(self.module, make_adam(self.module.parameters(), cfg.train.lr), generator, Schedule())
        self.callbacks = list(callbacks) if self.main else []
        self.bar: Any = None
        self.resumed: dict[str, Any] = {}  # the checkpoint resumed from

    def _wrap(self, module: MixtureModule) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor] | None]:
        """The module as the step calls it (DistributedDataParallel on several processes), and the
        row gatherer that batch-level terms need there."""
        if self.world == 1:
            return module, None
        if self.device.type == "cuda":  # batch norm over the global batch (SyncBatchNorm needs GPUs)
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        # every parameter gets a gradient in every step, except the manager's when it learns only
        # from a regulariser that is not on yet (route_by_loss = False)
        ddp = torch.nn.parallel.DistributedDataParallel(module, find_unused_parameters=not self.cfg.model.route_by_loss)
        return ddp, distributed.gather_rows

    def run(self, resume: bool = False) -> tuple[MixtureModule, History]:
        """Train to ``cfg.train.epochs`` (or ``runtime.max_steps``); return (module, history)."""
        if resume and self.run_dir is not None:
            self._restore()
        self.state.schedule = build_schedule(self.cfg, self.source, self.gather, self.log if self.main else None,
                                             self.graph_dir)
        if resume and self.run_dir is not None:  # the regulariser's own state, now that it exists
            self.state.schedule.load_state_dict(self.resumed)
        self.module.train()
        try:
            with torch.autograd.set_detect_anomaly(self.runtime.detect_anomaly), memory.stage("training"):
                while self.state.epoch < self.cfg.train.epochs and not self._stopped():
                    if not self._run_epoch():
                        break
        finally:
            for cb in self.callbacks:
                cb.on_train_end(self)
        return self.module, self.state.history

    def _restore(self) -> None:
        assert self.run_dir is not None
        path, state = ckpt.load_latest_checkpoint(self.run_dir, warn=lambda m: warnings.warn(m, RuntimeWarning, 2))
        self.state.load_state_dict(state, path)
        self.resumed = state
        if self.main:
            ckpt.remove_run_temp_files(self.run_dir)  # left by a run killed in the middle of a write
            if self.log:
                self.log(f"resumed from {path} at epoch {self.state.epoch + 1}, step {self.state.step}")

    def _stopped(self) -> bool:
        return self.runtime.max_steps is not None and self.state.step >= self.runtime.max_steps

    def _run_epoch(self) -> bool:
        """One epoch's steps, from ``state.step_in_epoch``; False when ``max_steps`` stopped it inside."""
        st, tc = self.state, self.cfg.train
        batches = self.source.epoch(st.epoch)
        reg = st.schedule.at(st.epoch)
        extra = reg.start_epoch(self.module, st.epoch, st.step_in_epoch == 0, self.log if self.main else None)
        self._open_bar(len(batches))
        sums: dict[str, float] = {}
        t0, counted = time.perf_counter(), 0
        for i in range(st.step_in_epoch, len(batches)):
            out, loss = self._step(reg, batches[i])
            for k, v in out.parts().items():
                sums[k] = sums.get(k, 0.0) + v
            counted += 1
            self._advance_bar(i, loss)
            stop_now = self._stopped()
            if ((tc.checkpoint_every and st.step % tc.checkpoint_every == 0) or stop_now) and i + 1 < len(batches):
                st.step_in_epoch = i + 1  # the end-of-epoch checkpoint covers the last step
                if self.main and self.run_dir is not None:
                    st.save(self.run_dir, self.cfg)
                if stop_now:
                    distributed.barrier(self.world)  # the checkpoint is complete before any process exits
                    self._close_bar()
                    return False
        self._close_bar()
        self._end_epoch(sums, counted, time.perf_counter() - t0, extra)
        return True

    def _step(self, reg: Regulariser, idx: np.ndarray) -> tuple[LossOutput, torch.Tensor]:
        """One optimiser step on this process's images idx; a bad step is never taken, so never saved."""
        st = self.state
        x = self.source.batch(idx)  # (B, D)
        noise = self.source.noise(len(idx))  # (K, B, L)
        x_views = reg.views(idx, x)  # (V*B, D) or None
        out = self.forward(x, noise, x_views, self.gather)  # the one forward call, through DDP when world > 1
        term = reg.loss(out, idx)
        loss = out.loss if term is None else out.loss + term
        where = f"at epoch {st.epoch + 1}, step {st.step_in_epoch + 1} (global step {st.step + 1})"
        if not torch.isfinite(loss):
            raise TrainingError(f"the loss became {loss.item()} {where}; the last good checkpoint is kept; "
                                f"try a lower learning rate or --detect-anomaly")
        st.optimizer.zero_grad(set_to_none=True)
        try:
            with warnings.catch_warnings():  # anomaly mode warns of a forward traceback that we do not print
                warnings.filterwarnings("ignore", message="Error detected in")
                loss.backward()
        except RuntimeError as e:  # --detect-anomaly names the operation that made NaN
            if not self.runtime.detect_anomaly:
                raise
            raise TrainingError(f"the gradients became NaN or infinite {where}: {str(e).splitlines()[0].rstrip('.')}; "
                                f"the last good checkpoint is kept") from None
        _check_finite("gradients", [p.grad for p in self.module.parameters() if p.grad is not None], where)
        st.optimizer.step()
        _check_finite("parameters", list(self.module.parameters()), where)
        st.step += 1
        st.step_in_epoch += 1
        return out, loss

    def _end_epoch(self, sums: dict[str, float], counted: int, seconds: float, extra: dict[str, Any]) -> None:
        """The epoch's record, the progress frame, a checkpoint, then the callbacks (main process)."""
        st, mc = self.state, self.cfg.model
        sums = distributed.mean_over_processes(sums, self.world, self.device)
        record: dict[str, Any] = {"epoch": st.epoch + 1, "step": st.step, "seconds": round(seconds, 3), **extra}
        record.update({k: round(v / max(counted, 1), 5) for k, v in sums.items()})
        if self.device.type != "cpu":  # what each step copied from the host (none on the CPU)
            copies, copied = self.source.copies - self.copies_seen[0], self.source.copied_bytes - self.copies_seen[1]
            record.update(host_copies_per_step=round(copies / max(counted, 1), 2),
                          host_bytes_per_step=round(copied / max(counted, 1)), data_on_device=self.source.data_on_device)
            self.copies_seen = (self.source.copies, self.source.copied_bytes)
        if self.main:
            record.update(epoch_metrics(self.module, self.test_images, self.test_labels,
                                        self.cfg.train.eval_batch_size, self.device))
            with torch.no_grad():
                self.module.eval()
                z = self.z_fixed.to(self.device).expand(mc.n_components, 1, -1)  # (K, 1, L)
                st.frames.append(self.module.decode(z)[:, 0].cpu())  # (K, D)
                self.module.train()
        st.history.append(record)
        st.epoch, st.step_in_epoch = st.epoch + 1, 0
        if self.main:
            if self.run_dir is not None:
                st.save(self.run_dir, self.cfg)
            for cb in self.callbacks:
                cb.on_epoch_end(record, self)
        distributed.barrier(self.world)  # the others wait while process 0 evaluates and writes

    def _open_bar(self, total: int) -> None:
        show = self.runtime.progress if self.runtime.progress is not None else sys.stderr.isatty()
        if show and self.main:

            self.bar = tqdm.auto.tqdm(total=total, initial=self.state.step_in_epoch, leave=False, dynamic_ncols=True,
                            desc=f"epoch {self.state.epoch + 1}/{self.cfg.train.epochs}", file=sys.stderr)

    def _advance_bar(self, i: int, loss: torch.Tensor) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if i % 10 == 0:
                self.bar.set_postfix(loss=f"{loss.item():.2f}")

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def fit(cfg: RunConfig, train_images: Any, test_images: Any = None, test_labels: np.ndarray | None = None, *,
        run_dir: Path | None = None, resume: bool = False, runtime: Runtime = Runtime(), log: Log = print,
        callbacks: Sequence[Callback] = ()) -> tuple[MixtureModule, History]:
    """Train a mixture of VAEs on uint8 images (N, H, W).

    Parameters
    ----------
    cfg
        The resolved run configuration.
    train_images, test_images, test_labels
        Training images, and optionally a held-out split; its labels, when given, are used only
        to report ACC/NMI/ARI after each epoch, never to train or to choose anything.
    run_dir
        Where checkpoints, ``metrics.jsonl``, ``model.safetensors`` and ``progress.png`` go;
        None keeps everything in memory.
    resume
        Continue exactly from the newest checkpoint in ``run_dir``.
    runtime
        Device, progress bar, step limit, anomaly detection, compiling (see :class:`Runtime`).
    log
        Where one line per epoch (and other news) goes; None is silent.
    callbacks
        More per-epoch outputs, after the metrics file, the progress figure and the summary line.

    Returns
    -------
    (module, history)

    With ``cfg.train.restarts`` > 1 it trains that many times and keeps the training whose
    partition follows the neighbour graph best (:mod:`mixvae.restarts`).
    """
    if cfg.train.restarts not in (1, "auto"):
        return restarts.fit_restarts(cfg, train_images, test_images, test_labels, trainer_type=Trainer,
                                     run_dir=run_dir, resume=resume, runtime=runtime, log=log, callbacks=callbacks)
    trainer = Trainer(cfg, train_images, test_images, test_labels, run_dir, runtime, log,
                      [*standard_callbacks(run_dir, log), *callbacks])
    return trainer.run(resume)


def make_adam(params: Any, lr: float) -> torch.optim.Adam:
    """Adam with the fused update (one kernel for all parameters) where torch has it for their
    device, else the usual one; the two take the same steps up to rounding."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(params, lr=lr)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Compiled:
    """``torch.compile(model)`` that falls back to ``model`` itself, with a one-line message, when
    compiling fails; the first call's time (mostly compiling) is logged."""

    def __init__(self, model: torch.nn.Module, log: Callable[[str], None]):
        self.model, self.log = model, log
        self.compiled: Any = None
        self.first = True
        try:
            self.compiled = torch.compile(model)
        except Exception as e:  # noqa: BLE001 - any failure means: run without compiling
            self._fall_back(e)

    def _fall_back(self, e: BaseException) -> None:
        self.compiled = None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        self.log(f"torch.compile is unavailable here ({type(e).__name__}: {first}); training without it")

    def __call__(self, *args: Any) -> Any:
        if self.compiled is not None:
            t0 = time.perf_counter()
            try:
                out = self.compiled(*args)
            except Exception as e:  # noqa: BLE001
                self._fall_back(e)
            else:
                if self.first:
                    self.log(f"compiled the loss in {time.perf_counter() - t0:.1f}s")
                self.first = False
                return out
        return self.model(*args)


def _check_finite(what: str, tensors: list[torch.Tensor], where: str) -> None:
    """Raise TrainingError, naming the epoch and step, when any of ``tensors`` holds NaN or inf.

    A NaN or inf anywhere makes the tensor's sum NaN or inf, so one summing pass per tensor finds
    it (isfinite().all() takes several passes: it made up a third of a seed training step).
    """
    if tensors and not bool(torch.stack([t.detach().sum() for t in tensors]).isfinite().all()):
        raise TrainingError(f"the {what} became NaN or infinite {where}; the last good checkpoint is kept; "
                            f"try a lower learning rate or --detect-anomaly")
