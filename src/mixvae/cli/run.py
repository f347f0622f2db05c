"""``mixvae train``: resolve the configuration, take the run folder, train, draw the figures."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from mixvae.cli.errors import UsageError
from mixvae.distributed import env_rank, env_world_size

__all__ = ["cmd_train", "config_from_args"]

# flag -> (section, key) of the setting it names
FLAGS = {"epochs": ("train", "epochs"), "batch_size": ("train", "batch_size"), "lr": ("train", "lr"),
         "seed": ("train", "seed"), "experts": ("model", "n_components")}


def config_from_args(args: argparse.Namespace) -> Any:
    """The RunConfig of a new run: defaults < preset < --config file < --set < named flags."""
    from mixvae.config import ConfigError, resolve_config

    values: dict[str, Any] = {"data": args.data, "image_size": args.image_size, "grayscale": args.grayscale,
                              "model": {}, "train": {}}
    for flag, (section, key) in FLAGS.items():
        values[section][key] = getattr(args, flag)
    values["label_column"] = getattr(args, "label_column", None)
    if args.epochs is not None:  # a number of epochs replaces the preset's budget of images seen
        values["train"]["budget_images"] = 0
    try:
        return resolve_config(args.preset, args.config, args.set, values)
    except ConfigError as e:  # a bad value given by a named flag: name the flag, as the user wrote it
        for flag, (_, key) in FLAGS.items():
            value = getattr(args, flag)
            if value is not None and str(e).startswith(f"{key}="):
                raise UsageError(f"--{flag.replace('_', '-')} {value} is invalid: {str(e).split(': ', 1)[1]}") from None
        raise


def _resumed_config(args: argparse.Namespace) -> Any:
    """The configuration of the run in --resume: only the number of epochs may grow."""
    from mixvae.config import config_from_dict, load_config
    from mixvae.restarts import resumable

    if args.out is not None and args.out != args.resume:
        raise UsageError("give either --resume RUN or --out DIR, not both with different folders")
    cfg = load_config(args.resume)
    if args.set or any(getattr(args, f) is not None for f in ("preset", "config", "batch_size", "lr", "experts",
                                                              "seed", "data", "image_size", "grayscale")):
        raise UsageError("--resume continues a run exactly as configured: only --epochs may be changed")
    if args.epochs is not None:
        cfg = config_from_dict({"train": {"epochs": args.epochs}}, base=cfg)
    if not resumable(args.resume):
        raise UsageError(f"{args.resume} holds no checkpoint to resume from")
    return cfg


def _check_out(out: Path, cfg: Any, overwrite: bool) -> bool:
    """Refuse to mix two runs in one folder; return whether an old run is to be cleared."""
    from mixvae.config import ConfigError, load_config
    from mixvae.runfolder import CONFIG_FILE

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: expected a folder for the run")
    if not (out / CONFIG_FILE).exists():
        return False
    try:
        same = load_config(out).to_dict() == cfg.to_dict()
    except ConfigError:
        same = False
    if not overwrite:
        if same:
            raise UsageError(f"{out} already holds this run: use --resume {out} to continue it or --overwrite")
        raise UsageError(f"{out} already holds a different run: use --resume {out} to continue it, "
                         f"--overwrite to replace it, or another --out")
    return True


def cmd_train(args: argparse.Namespace) -> int:
    from mixvae.figures import FIGURES
    from mixvae.kinds import training_data
    from mixvae.plan import check_memory
    from mixvae.runfolder import RunLock, clear_run

    for flag in ("max_steps", "threads"):
        v = getattr(args, flag, None)
        if v is not None and v < 1:
            raise UsageError(f"--{flag.replace('_', '-')} {v} is invalid: expected an integer >= 1")
    resume = args.resume is not None
    cfg = _resumed_config(args) if resume else config_from_args(args)
    out = args.resume if resume else args.out or Path("runs") / f"{cfg.preset}-{Path(str(cfg.data)).name}"
    cfg, train, test = training_data(cfg, resume)  # the data's kind, shape and size decide the rest
    if len(train) < cfg.model.n_components:
        raise UsageError(f"{cfg.data} has {len(train)} images, fewer than the {cfg.model.n_components} experts")
    # refused here, with one line, before anything is written (every process of this machine counted)
    check_memory(cfg, len(train), int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    clear = False if resume else _check_out(out, cfg, args.overwrite)  # every process checks
    if env_rank() != 0:  # under torchrun, process 0 holds the folder and writes to it
        return _run_training(args, cfg, out, train, test)
    with RunLock(out):
        if clear:
            clear_run(out, also=FIGURES)
        return _run_training(args, cfg, out, train, test)


def _run_training(args: argparse.Namespace, cfg: Any, out: Path, train: Any, test: Any) -> int:
    from mixvae.callbacks import Callback, TensorBoard
    from mixvae.distributed import init_distributed, leave_distributed, set_threads
    from mixvae.runfolder import save_config
    from mixvae.train import Runtime, fit

    set_threads(args.threads)
    distributed = env_world_size() > 1
    device = init_distributed(args.device) if distributed else args.device
    main_rank = env_rank() == 0
    quiet = args.quiet or not main_rank
    log = (lambda m: print(m, flush=True)) if not quiet else None
    callbacks: list[Callback] = []
    if args.tensorboard and main_rank:
        try:
            callbacks.append(TensorBoard(out / "tensorboard"))
        except ImportError as e:
            raise UsageError(str(e)) from None
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
        if args.resume is None:
            save_config(out, cfg)
        if log:
            log(f"run folder {out}: {len(train)} training images {tuple(train.images.shape[1:])}, "
                f"preset {cfg.preset}, K={cfg.model.n_components}")
    runtime = Runtime(device=device, progress=None if not quiet else False, max_steps=args.max_steps,
                      detect_anomaly=args.detect_anomaly, compile=args.compile)
    try:
        module, history = fit(cfg, train.images, test.images if test is not None else None,
                              test.labels if test is not None else None, run_dir=out, resume=args.resume is not None,
                              runtime=runtime, log=log, callbacks=callbacks)
    except BaseException:
        if distributed:
            leave_distributed(wait=False)
        raise
    if distributed:
        leave_distributed()
    if main_rank:
        if args.resume is not None and args.epochs is not None:  # trained to the new length: the run's from now on
            save_config(out, cfg)
        _finish(out, module, history.records, test if test is not None else train, log, cfg.data)
    return 0


def _finish(out: Path, module: Any, records: list[dict[str, Any]], shown: Any, log: Any, source: str) -> None:
    from mixvae.data import folder_class_names
    from mixvae.figures import write_figures
    from mixvae.runfolder import WEIGHTS_FILE

    if module.kind.shows_images:
        write_figures(out, module, records, shown.images, shown.labels, class_names=folder_class_names(source))
    if records and log:
        last = records[-1]
        if "test_acc" in last:
            log(f"test ACC {last['test_acc']:.4f}  NMI {last['test_nmi']:.4f}  ARI {last['test_ari']:.4f}")
        log(f"saved {out / WEIGHTS_FILE}; next: mixvae evaluate {out}")
    sys.stdout.flush()
