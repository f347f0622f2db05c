"""Several trainings from different seeds, and the one whose partition follows the neighbour graph best.

Where a training ends depends on its seed: on scikit-learn's 8x8 digits 25 trainings of the
default from different seeds end between 0.644 and 0.872 ACC (BENCHMARKS.md, "Robust by
default"). k-means meets the same with ``n_init``. With ``train.restarts = R`` a run trains R
times, the first with its own seed and the others with seeds derived from it
(:func:`restart_seed`), and keeps the training whose partition of the training images has the
lowest normalised cut of the run's neighbour graph (:func:`mixvae.graphcut.partition_cut`, an
empty expert counted as wholly cut). No label is involved. The cut ranks trainings of one recipe
where the graph's neighbours follow the classes (the 8x8 digits, MNIST; not Fashion-MNIST's test
images), never a model against spectral clustering (whose partitions cut fewer edges than the
true classes on MNIST).

In a run folder, restart r trains in ``RUN/restarts/<r>/`` with its own checkpoints, metrics and
progress figure; when it ends, its ``restart.json`` records its seed, cut and experts used, so a
resumed run trains only the restarts that had not ended. The kept training is then saved in
``RUN`` as a run of one training is (weights, checkpoint, ``metrics.jsonl``, ``progress.png``),
and ``RUN/restarts.json`` lists every restart and the one kept.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mixvae import distributed, runfolder
from mixvae.atomic import atomic_write
from mixvae.callbacks import Callback
from mixvae.callbacks import standard as standard_callbacks
from mixvae.checkpoint import checkpoint_path, latest_checkpoint, remove_run_temp_files, save_weights
from mixvae.config import RunConfig
from mixvae.graphcut import partition_cut
from mixvae.inference import predict_proba
from mixvae.regularisers import run_graph

if TYPE_CHECKING:
    from mixvae.model import MixtureModule
    from mixvae.train import History, Runtime, Trainer

__all__ = [
    "Outcome",
    "fit_restarts",
    "restart_dir",
    "restart_seed",
    "resumable",
]

Log = Callable[[str], None] | None


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one ended training partitions the training images."""

    restart: int  # 1-based
    seed: int
    cut: float  # partition_cut of its partition on the run's neighbour graph
    experts_used: int
    epochs: int
    steps: int  # optimiser steps it took


def restart_seed(seed: int, restart: int) -> int:
    """The seed of restart ``restart`` (0-based): the run's own for the first, then derived from
    it, so that runs with neighbouring seeds share no restart."""
    if restart == 0:
        return seed
    return int(np.random.SeedSequence([seed, restart]).generate_state(1)[0] >> 1)


def restart_dir(run_dir: Path, restart: int) -> Path:
    """The folder of restart ``restart`` (1-based) inside a run folder."""
    return Path(run_dir) / runfolder.RESTARTS_DIR / str(restart)


class _TrainEndLater(Callback):
    """A caller's callback over several trainings: it sees every restart's epochs, numbered on from
    the restarts before (restart r's epoch e is ``(r - 1) * epochs + e``, so a TensorBoard curve
    does not fold back) with the record's ``"restart"``, and the end of training once, at the end
    (a TensorBoard writer is not closed after the first)."""

    def __init__(self, inner: Callback, restart: int, epochs: int):
        self.inner, self.restart, self.epochs = inner, restart, epochs

    def on_epoch_end(self, record: dict[str, Any], trainer: Trainer) -> None:
        epoch = self.restart * self.epochs + int(record["epoch"])
        self.inner.on_epoch_end({**record, "epoch": epoch, "restart": self.restart + 1}, trainer)


def fit_restarts(cfg: RunConfig, train_images: Any, test_images: Any = None, test_labels: np.ndarray | None = None,
                 *, trainer_type: type[Trainer], run_dir: Path | None = None, resume: bool = False,
                 runtime: Runtime, log: Log = None, callbacks: Sequence[Callback] = ()
                 ) -> tuple[MixtureModule, History]:
    """Train ``cfg.train.restarts`` times and return the kept training's (module, history); the
    arguments are :func:`mixvae.train.fit`'s, which hands over its ``Trainer`` class as
    ``trainer_type``. A restart stopped by ``runtime.max_steps`` (the steps count over all
    restarts) ends the call with that restart's state, its weights saved in the run folder as a
    stopped training's are; a resumed run goes on from there. The caller's callbacks see every
    restart's epochs, numbered on from the restarts before (and ``"restart"`` in each record)."""
    count, epochs = int(cfg.train.restarts), cfg.train.epochs
    outcomes: list[Outcome] = []
    kept: tuple[Outcome, Trainer] | None = None  # the best training ended in this call so far
    trainer: Trainer | None = None
    if resume and run_dir is not None and distributed.rank_world()[0] == 0:
        remove_run_temp_files(run_dir)  # left by a run killed while it saved the kept training
    try:
        for r in range(count):
            seed = restart_seed(cfg.train.seed, r)
            one = _one(cfg, seed)
            sub = restart_dir(run_dir, r + 1) if run_dir is not None else None
            ended = _ended(sub, epochs) if resume and sub is not None else None
            if ended is not None:
                outcomes.append(ended)
                continue
            left = None if runtime.max_steps is None else runtime.max_steps - sum(o.steps for o in outcomes)
            if left is not None and left <= 0 and outcomes:  # the restarts before took every step
                trainer = kept[1] if kept else _load(trainer_type, _one(cfg, outcomes[-1].seed), train_images,
                                                     runtime, run_dir, outcomes[-1])
                return _stopped(run_dir, cfg, trainer)
            if log:
                log(f"restart {r + 1} of {count} (seed {seed})")
            trainer = None  # the last one's memory goes before the next is built (the kept one stays)
            trainer = trainer_type(one, train_images, test_images, test_labels, sub,
                                   dataclasses.replace(runtime, max_steps=left), log,
                                   _callbacks(sub, log, callbacks, r, epochs), graph_dir=run_dir)
            if trainer.main and sub is not None:
                (sub / runfolder.RESTART_FILE).unlink(missing_ok=True)  # it trains on: any outcome it had is old
            trainer.run(resume=sub is not None and _has_checkpoint(sub))
            if trainer.state.epoch < epochs:  # stopped by max_steps: resumed later from here
                return _stopped(run_dir, cfg, trainer)
            outcome = _score(trainer, r + 1, seed)
            outcomes.append(outcome)
            if trainer.main and sub is not None:
                atomic_write(sub / runfolder.RESTART_FILE, (json.dumps(dataclasses.asdict(outcome), indent=2) + "\n").encode())
            if log:
                log(f"restart {r + 1} of {count}: normalised cut {outcome.cut:.4f}, "
                    f"{outcome.experts_used} of {cfg.model.n_components} experts used")
            if kept is None or outcome.cut < kept[0].cut:
                kept = (outcome, trainer)
        best = min(outcomes, key=lambda o: (o.cut, o.restart))
        trainer = None
        if kept is None or kept[0] != best:  # the kept training ended before this call: load it
            kept = None  # the training kept in this call so far goes before the one to load is built
            kept = (best, _load(trainer_type, _one(cfg, best.seed), train_images, runtime, run_dir, best))
        trainer = kept[1]
        if log:
            log(f"kept restart {best.restart} of {count} (seed {best.seed}): the lowest normalised cut, "
                f"{best.cut:.4f}")
        if run_dir is not None and trainer.main:
            _save_kept(run_dir, cfg, trainer, best, outcomes)
        history = trainer.state.history
        history.restarts = [{**dataclasses.asdict(o), "kept": o == best}
                            for o in sorted(outcomes, key=lambda o: o.restart)]
        return trainer.module, history
    finally:
        if trainer is not None and trainer.main:  # as Trainer.run does, however the trainings ended
            for cb in callbacks:
                cb.on_train_end(trainer)


def _stopped(run_dir: Path | None, cfg: RunConfig, trainer: Trainer) -> tuple[MixtureModule, History]:
    """A restart stopped by max_steps: its weights are the run's for now, as a stopped training's are."""
    if run_dir is not None and trainer.main:
        save_weights(Path(run_dir) / runfolder.WEIGHTS_FILE, trainer.module, cfg)
    return trainer.module, trainer.state.history


def _one(cfg: RunConfig, seed: int) -> RunConfig:
    """The configuration of one restart: the run's, with the restart's seed."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed, restarts=1))


def _load(trainer_type: type[Trainer], one: RunConfig, train_images: Any, runtime: Runtime, run_dir: Path | None,
          outcome: Outcome) -> Trainer:
    """A trainer holding the final state of a restart that ended before this call."""
    assert run_dir is not None  # only a run folder keeps restarts between calls
    trainer = trainer_type(one, train_images, None, None, restart_dir(run_dir, outcome.restart),
                      dataclasses.replace(runtime, max_steps=None), None, graph_dir=run_dir)
    trainer.run(resume=True)
    return trainer


def _callbacks(sub: Path | None, log: Log, callbacks: Sequence[Callback], restart: int,
               epochs: int) -> list[Callback]:
    """A restart's own outputs (in its folder), the summary line, and the caller's callbacks."""
    return [*standard_callbacks(sub, log), *(_TrainEndLater(cb, restart, epochs) for cb in callbacks)]


def _has_checkpoint(folder: Path) -> bool:
    return latest_checkpoint(folder) is not None


def resumable(run_dir: Path) -> bool:
    """Whether a run folder holds a checkpoint to resume from: its own, or one of a restart's."""
    run_dir = Path(run_dir)
    restarts = run_dir / runfolder.RESTARTS_DIR
    return _has_checkpoint(run_dir) or (restarts.is_dir() and any(_has_checkpoint(d) for d in restarts.iterdir()))


def _ended(sub: Path, epochs: int) -> Outcome | None:
    """The outcome a restart recorded when it ended, if it ended at ``epochs`` and has not trained
    since (its newest checkpoint is the one it was scored at)."""
    try:
        outcome = Outcome(**json.loads((sub / runfolder.RESTART_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    newest = latest_checkpoint(sub)
    if outcome.epochs != epochs or newest is None or newest.name != checkpoint_path(sub, outcome.steps).name:
        return None
    return outcome


def _score(trainer: Trainer, restart: int, seed: int) -> Outcome:
    """The restart's partition of the training images, scored on the run's neighbour graph."""
    cfg, source = trainer.cfg, trainer.source
    graph = trainer.state.schedule.graph
    if graph is None:  # trained without the neighbour regulariser: the graph its settings name
        graph = run_graph(cfg, source, None, trainer.graph_dir)
    k = cfg.model.n_components
    assign = predict_proba(trainer.module, source.images, cfg.train.eval_batch_size, trainer.device).argmax(1)  # (N,)
    # every process holds the same model, so the same cut; averaged anyway, so that no rounding on
    # another device can make the processes keep different trainings (or load in different orders)
    cut = distributed.mean_over_processes({"cut": partition_cut(graph.numpy(), assign, k)}, source.world,
                                          trainer.device)["cut"]
    return Outcome(restart, seed, round(cut, 6), len(np.unique(assign)), trainer.state.epoch, trainer.state.step)


def _save_kept(run_dir: Path, cfg: RunConfig, trainer: Trainer, best: Outcome, outcomes: list[Outcome]) -> None:
    """The kept training as the run's own: checkpoint and weights, metrics, progress figure, and
    the list of restarts."""
    trainer.state.save(run_dir, cfg)
    runfolder.write_metrics(run_dir, trainer.state.history.records)
    figure = restart_dir(run_dir, best.restart) / runfolder.PROGRESS_FILE
    if figure.exists():
        shutil.copyfile(figure, run_dir / runfolder.PROGRESS_FILE)
    summary = {"kept": best.restart, "criterion": "normalised cut of the neighbour graph, an empty expert counted 1",
               "restarts": [dataclasses.asdict(o) for o in sorted(outcomes, key=lambda o: o.restart)]}
    atomic_write(run_dir / runfolder.RESTARTS_FILE, (json.dumps(summary, indent=2) + "\n").encode())
