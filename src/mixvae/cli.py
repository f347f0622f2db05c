"""The command line: ``mixvae fetch | train | evaluate | sample | predict | report``.

torch is imported only inside the commands that need it, so ``mixvae --help`` answers at once.
Every error a user can fix is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_FAILED = 1


class UsageError(ValueError):
    """A problem with what the user asked for."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage block), like every other mixvae error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"mixvae: error: {message} (see 'mixvae --help')\n")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"mixvae: warning: {str(message).strip().splitlines()[0]}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mixvae",
        description="Unsupervised clustering and per-cluster generation of images with a mixture of VAEs.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    f = sub.add_parser("fetch", help="download and cache a dataset (mnist, fashion-mnist)")
    f.add_argument("name", help="mnist or fashion-mnist")

    t = sub.add_parser("train", help="train a mixture of VAEs and write a run folder")
    t.add_argument("--data", help="mnist, fashion-mnist, or a path: IDX folder, .npz/.npy file, image folder")
    t.add_argument("--preset", help="named preset (see 'mixvae presets'); default: the best one, 'default'")
    t.add_argument("--config", type=Path, help="YAML or TOML config file (e.g. a run's config.yaml)")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set model.latent_dim=16 (repeatable)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--experts", type=int, help="number of experts K")
    t.add_argument("--seed", type=int)
    t.add_argument("--image-size", type=int, help="resize every image to this square size")
    t.add_argument("--out", type=Path, help="run folder (default runs/<preset>-<data>)")
    t.add_argument("--resume", type=Path, metavar="RUN", help="continue the run in this folder from its last checkpoint")
    t.add_argument("--overwrite", action="store_true", help="replace a different run already in --out")
    t.add_argument("--max-steps", type=int, help="stop after this many optimiser steps in total")
    t.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps")
    t.add_argument("--threads", type=int, help="CPU threads for torch")
    t.add_argument("--compile", action="store_true",
                   help="compile the loss with torch.compile (faster steps after a slow first one)")
    t.add_argument("--detect-anomaly", action="store_true", help="find the operation that produced NaN or inf")
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    t.add_argument("--tensorboard", action="store_true",
                   help="also log per-epoch scalars to RUN/tensorboard (needs: pip install 'mixvae[tensorboard]')")

    e = sub.add_parser("evaluate", help="evaluate a run on its test and train splits; writes RUN/eval.json")
    e.add_argument("run", type=Path)
    e.add_argument("--data", help="evaluate on this data instead of the run's")
    e.add_argument("--iw", type=int, default=0, metavar="K",
                   help="also estimate test log-likelihood with a K-sample importance-weighted bound")
    e.add_argument("--iw-images", type=int, default=None, metavar="N", help="use the first N test images for --iw")
    e.add_argument("--device", default="cpu")

    s = sub.add_parser("sample", help="draw images from each expert into a PNG grid")
    s.add_argument("run", type=Path)
    s.add_argument("--per-expert", type=int, default=10)
    s.add_argument("--out", type=Path, help="PNG file (default RUN/samples.png)")
    s.add_argument("--seed", type=int, default=0)

    pr = sub.add_parser("predict", help="print the expert each image is routed to, and its probability")
    pr.add_argument("run", type=Path)
    pr.add_argument("files", nargs="+", type=Path, help="image files (PNG/JPEG) or .npy/.npz arrays")

    rp = sub.add_parser("report", help="write RUN/report.html: figures, metrics and config on one offline page")
    rp.add_argument("run", type=Path)
    rp.add_argument("--device", default="cpu")

    sub.add_parser("presets", help="list the named presets")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2), already printed
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # one line each, without the source line
            return int(COMMANDS[args.command](args) or 0)
    except KeyboardInterrupt:
        print("mixvae: interrupted; a run can be continued with 'mixvae train --resume RUN'", file=sys.stderr)
        return 130
    except Exception as e:  # user-facing errors become one line; anything else is a bug
        if _is_user_error(e):
            print(f"mixvae: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        if type(e).__name__ == "TrainingError":
            print(f"mixvae: error: {e}", file=sys.stderr)
            return EXIT_FAILED
        raise


def _is_user_error(e: Exception) -> bool:
    from mixvae.checkpoint import CheckpointError
    from mixvae.config import ConfigError
    from mixvae.data import DataError

    return isinstance(e, (UsageError, ConfigError, DataError, CheckpointError))


# --------------------------------------------------------------------------- fetch
def cmd_fetch(args: argparse.Namespace) -> int:
    from mixvae.data import BUILTIN, fetch

    if args.name not in BUILTIN:
        raise UsageError(f"unknown dataset {args.name!r}: expected one of {', '.join(BUILTIN)}")
    path = fetch(args.name, log=lambda m: print(m, file=sys.stderr))
    print(path)
    return 0


# --------------------------------------------------------------------------- train
def _set_pairs(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r} is invalid: expected SECTION.KEY=VALUE, e.g. model.latent_dim=16")
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _file_values(path: Path) -> dict[str, Any]:
    """The mapping a YAML/TOML config file (or a run folder's config.yaml) writes, as written."""
    import yaml

    from mixvae.checkpoint import CONFIG_FILE

    path = Path(path)
    path = path / CONFIG_FILE if path.is_dir() else path
    if path.suffix == ".toml":
        import tomllib

        return tomllib.loads(path.read_text())
    return yaml.safe_load(path.read_text()) or {}


def resolve_config(args: argparse.Namespace):
    """defaults < preset < config file < flags (--set, then the named flags)."""
    from mixvae.checkpoint import load_config
    from mixvae.config import config_from_dict, preset

    file_cfg = load_config(args.config) if args.config else None  # checks the whole file first
    name = args.preset or (file_cfg.preset if file_cfg else "default")
    # a preset named on the command line must exist; one named in a saved file may be a custom run's
    cfg = preset(name) if args.preset or file_cfg is None else config_from_dict({"preset": name})
    if file_cfg is not None:
        # only the values the file writes: those it leaves out come from the preset, not the file's own
        values = {k: v for k, v in _file_values(args.config).items() if k != "preset"}
        cfg = config_from_dict(values, base=cfg)
    flags: dict[str, Any] = _set_pairs(args.set)
    model, train = flags.setdefault("model", {}), flags.setdefault("train", {})
    for flag, section, key in (
        ("epochs", train, "epochs"),
        ("batch_size", train, "batch_size"),
        ("lr", train, "lr"),
        ("seed", train, "seed"),
        ("experts", model, "n_components"),
    ):
        if getattr(args, flag) is not None:
            section[key] = getattr(args, flag)
    if args.data is not None:
        flags["data"] = args.data
    if args.image_size is not None:
        flags["image_size"] = args.image_size
    return config_from_dict(flags, base=cfg)


def _prepare_run_dir(out: Path, cfg, overwrite: bool, remove: bool = True) -> None:
    """Refuse to mix two runs in one folder; with --overwrite (and ``remove``) clear the old one."""
    from mixvae.checkpoint import CONFIG_FILE, load_config

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file: expected a folder for the run")
    if (out / CONFIG_FILE).exists():
        try:
            old = load_config(out)
        except Exception:
            old = None
        if old is None or old.to_dict() != cfg.to_dict():
            if not overwrite:
                raise UsageError(
                    f"{out} already holds a different run: use --resume {out} to continue it, "
                    f"--overwrite to replace it, or another --out"
                )
        elif not overwrite:
            raise UsageError(f"{out} already holds this run: use --resume {out} to continue it or --overwrite")
        if not remove:
            return
        for name in ("checkpoints",):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("metrics.jsonl", "model.safetensors", "eval.json", "progress.png", CONFIG_FILE, "report.html",
                     "curves.png", "usage.png", "samples.png", "reconstructions.png", "traversals.png",
                     "confusion.png"):
            (out / name).unlink(missing_ok=True)


def cmd_train(args: argparse.Namespace) -> int:
    from mixvae.config import config_from_dict
    from mixvae.data import load_split_pair

    for flag in ("epochs", "batch_size", "experts", "max_steps", "threads"):
        v = getattr(args, flag, None)
        if v is not None and v < 1:
            raise UsageError(f"--{flag.replace('_', '-')} {v} is invalid: expected an integer >= 1")
    if args.lr is not None and not args.lr > 0:
        raise UsageError(f"--lr {args.lr} is invalid: expected a number > 0")
    if args.resume is not None:
        if args.out is not None and args.out != args.resume:
            raise UsageError("give either --resume RUN or --out DIR, not both with different folders")
        from mixvae.checkpoint import latest_checkpoint, load_config

        cfg = load_config(args.resume)
        # only the number of epochs may grow on resume; anything else would be another run
        if args.set or any(getattr(args, f) is not None for f in ("preset", "config", "batch_size", "lr", "experts",
                                                                  "seed", "data", "image_size")):
            raise UsageError("--resume continues a run exactly as configured: only --epochs may be changed")
        if args.epochs is not None:
            cfg = config_from_dict({"train": {"epochs": args.epochs}}, base=cfg)
        if latest_checkpoint(args.resume) is None:
            raise UsageError(f"{args.resume} holds no checkpoint to resume from")
        out = args.resume
    else:
        cfg = resolve_config(args)
        out = args.out or Path("runs") / f"{cfg.preset}-{Path(str(cfg.data)).name}"
    train, test = load_split_pair(cfg.data, image_size=cfg.image_size)
    shape = tuple(int(s) for s in train.images.shape[1:3])
    if args.resume is None:
        cfg = config_from_dict({"model": {"image_shape": list(shape)}}, base=cfg)
    elif tuple(cfg.model.image_shape) != shape:
        raise UsageError(f"the data's images are {shape}, but the run was trained on {tuple(cfg.model.image_shape)}")
    if len(train) < cfg.model.n_components:
        raise UsageError(f"{cfg.data} has {len(train)} images, fewer than the {cfg.model.n_components} experts")
    if args.resume is None:
        # under torchrun every process checks; only process 0 removes (and, later, writes) files
        _prepare_run_dir(out, cfg, args.overwrite, remove=int(os.environ.get("RANK", "0")) == 0)
    return _run_training(args, cfg, out, train, test)


def _run_training(args, cfg, out: Path, train, test) -> int:
    import torch

    from mixvae.checkpoint import save_config
    from mixvae.train import fit

    if args.threads:
        torch.set_num_threads(args.threads)
    rank = int(os.environ.get("RANK", "0"))
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    device = args.device
    if distributed:
        device = _init_distributed(args.device)
    main_rank = rank == 0
    quiet = args.quiet or not main_rank
    log = (lambda m: print(m, flush=True)) if not quiet else None
    board = _tensorboard_writer(out / "tensorboard") if args.tensorboard and main_rank else None
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
        if args.resume is None:
            save_config(out, cfg)
        if log:
            log(f"run folder {out}: {len(train)} training images {tuple(train.images.shape[1:])}, "
                f"preset {cfg.preset}, K={cfg.model.n_components}")
    try:
        module, history = fit(
            cfg,
            train.images,
            test.images if test is not None else None,
            test.labels if test is not None else None,
            run_dir=out,
            resume=args.resume is not None,
            device=device,
            log=log,
            progress=None if not quiet else False,
            max_steps=args.max_steps,
            detect_anomaly=args.detect_anomaly,
            compile_loss=args.compile,
            on_epoch=(lambda r: _log_scalars(board, r)) if board is not None else None,
        )
    finally:
        if distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        if board is not None:
            board.close()
    if main_rank:
        from mixvae.figures import write_figures

        shown = test if test is not None else train
        write_figures(out, module, history.records, shown.images, shown.labels)
    if main_rank and history.records and log:
        last = history.records[-1]
        if "test_acc" in last:
            log(f"test ACC {last['test_acc']:.4f}  NMI {last['test_nmi']:.4f}  ARI {last['test_ari']:.4f}")
        log(f"saved {out / 'model.safetensors'}; next: mixvae evaluate {out}")
    return 0


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError("--tensorboard needs the tensorboard package: pip install 'mixvae[tensorboard]'") from None
    return SummaryWriter(log_dir=str(folder))


def _log_scalars(writer, record: dict[str, Any]) -> None:
    """One epoch's numbers as TensorBoard scalars (expert usage as usage/E<k>)."""
    epoch = int(record["epoch"])
    for key, value in record.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
            writer.add_scalar(key, value, epoch)
    for k, u in enumerate(record.get("usage") or []):
        writer.add_scalar(f"usage/E{k}", u, epoch)
    writer.flush()


def _init_distributed(device: str) -> str:
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
        device = f"cuda:{local_rank}"
    else:
        dist.init_process_group("gloo")
    # every process has checked the run folder before process 0 writes to it
    dist.barrier()
    return device


# --------------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from mixvae.checkpoint import atomic_write, load_run
    from mixvae.data import load_split_pair
    from mixvae.metrics import clustering_report
    from mixvae.plots import confusion_figure
    from mixvae.train import images_to_tensor, predict_proba

    module, cfg = load_run(args.run, args.device)
    train, test = load_split_pair(args.data or cfg.data, image_size=cfg.image_size)
    _check_shape(train.images.shape[1:3], cfg)
    result: dict[str, Any] = {"run": str(args.run), "data": args.data or cfg.data}
    for split, d in (("test", test), ("train", train)):
        if d is None:
            continue
        probs = predict_proba(module, d.images, device=args.device)
        rep = clustering_report(d.labels, probs)
        result[split] = rep
    if args.iw:
        d = test if test is not None else train
        n = min(args.iw_images or len(d), len(d))
        gen = torch.Generator().manual_seed(0)
        coins = torch.Generator().manual_seed(1)  # one fixed binarisation of the evaluated images
        vals = []
        for start in range(0, n, 100):
            x = images_to_tensor(d.images, start, min(start + 100, n))
            if cfg.train.binarize:  # the model was trained on binarised pixels: evaluate on them too
                x = (torch.rand(x.shape, generator=coins) < x).float()
            x = x.to(args.device)
            vals.append(module.log_likelihood(x, args.iw, generator=gen).cpu())
        ll = torch.cat(vals)
        result["log_likelihood"] = {
            "iw_samples": args.iw,
            "images": n,
            "split": "test" if test is not None else "train",
            "mean_nats": float(ll.mean()),
            "stderr": float(ll.std() / np.sqrt(len(ll))),
            "likelihood": cfg.model.likelihood,
            "pixels": ("continuous in [0, 1], not binarised" if not cfg.train.binarize
                       else "binarised once, each pixel 1 with probability its intensity (seed 1)"),
        }
    atomic_write(Path(args.run) / "eval.json", json.dumps(result, indent=2).encode())
    main_split = result.get("test") or result.get("train")
    if main_split and "confusion" in main_split:
        confusion_figure(np.array(main_split["confusion"]), Path(args.run) / "confusion.png",
                         main_split["matched_class"])
    _print_table(result, cfg.model.n_components)
    return 0


def _check_shape(shape, cfg) -> None:
    if tuple(int(s) for s in shape) != tuple(cfg.model.image_shape):
        raise UsageError(
            f"the data's images are {tuple(shape)}, but the model was trained on {tuple(cfg.model.image_shape)}"
        )


def _print_table(result: dict, K: int) -> None:
    rows = [("split", "ACC", "NMI", "ARI", "experts used")]
    for split in ("test", "train"):
        r = result.get(split)
        if r is None:
            continue
        if "acc" in r:
            rows.append((split, f"{r['acc']:.4f}", f"{r['nmi']:.4f}", f"{r['ari']:.4f}", f"{r['experts_used']}/{K}"))
        else:
            rows.append((split, "-", "-", "-", f"{r['experts_used']}/{K}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for j, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))
    r = result.get("test") or result.get("train")
    if r and "matched_class" in r:
        print("expert -> matched class (purity): " + ", ".join(
            f"{k}->{c} ({p:.2f})" for k, (c, p) in enumerate(zip(r["matched_class"], r["purity"]))))
    if "log_likelihood" in result:
        ll = result["log_likelihood"]
        print(f"log-likelihood bound (IW, k={ll['iw_samples']}, {ll['images']} {ll['split']} images, "
              f"{ll['likelihood']}): {ll['mean_nats']:.2f} +/- {ll['stderr']:.2f} nats")


# --------------------------------------------------------------------------- sample
def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from mixvae.checkpoint import load_run
    from mixvae.plots import sample_grid

    if args.per_expert < 1:
        raise UsageError(f"--per-expert {args.per_expert} is invalid: expected an integer >= 1")
    module, cfg = load_run(args.run)
    K = cfg.model.n_components
    gen = torch.Generator().manual_seed(args.seed)
    rows = [module.sample(args.per_expert, k, generator=gen).numpy() for k in range(K)]
    labels = [f"expert {k}" for k in range(K)]
    ev = Path(args.run) / "eval.json"
    if ev.exists():
        r = json.loads(ev.read_text())
        r = r.get("test") or r.get("train") or {}
        if "matched_class" in r:
            labels = [f"expert {k}: {c}" for k, c in enumerate(r["matched_class"])]
    out = args.out or Path(args.run) / "samples.png"
    import numpy as np

    sample_grid(np.stack(rows), cfg.model.image_shape, out, labels, title=f"{args.per_expert} samples per expert")
    print(out)
    return 0


# --------------------------------------------------------------------------- predict
def _read_for_predict(path: Path, shape: tuple[int, int]):
    from mixvae.data import check_images, load, read_image

    if not path.exists():
        raise UsageError(f"{path} does not exist")
    if path.suffix.lower() in (".npy", ".npz"):
        d = load(path)
        images = d.images
        names = [f"{path}[{i}]" for i in range(len(images))]
    else:
        images = read_image(path, tuple(shape))[None]  # (1, H, W), resized to the model's size
        names = [str(path)]
    images = check_images(images, str(path))
    if tuple(images.shape[1:]) != tuple(shape):
        raise UsageError(f"{path} holds {tuple(images.shape[1:])} images, but the model takes {tuple(shape)}")
    return names, images


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from mixvae.checkpoint import load_run
    from mixvae.train import predict_proba

    module, cfg = load_run(args.run)
    names, arrays = [], []
    for f in args.files:
        n, a = _read_for_predict(f, cfg.model.image_shape)
        names += n
        arrays.append(a)
    probs = predict_proba(module, np.concatenate(arrays), batch_size=10000)
    experts = probs.argmax(1)
    lines = [f"{name}\t{int(k)}\t{probs[i, k]:.4f}" for i, (name, k) in enumerate(zip(names, experts))]
    sys.stdout.write("file\texpert\tprobability\n" + "\n".join(lines) + "\n")
    return 0


# --------------------------------------------------------------------------- report
def cmd_report(args: argparse.Namespace) -> int:
    """Evaluate the run if it has no eval.json, redraw its figures, and write RUN/report.html."""
    from mixvae.checkpoint import CheckpointError, load_config
    from mixvae.data import DataError
    from mixvae.figures import figures_for_run
    from mixvae.report import write_report

    run = Path(args.run)
    if not run.is_dir():
        raise UsageError(f"{run} is not a run folder: expected a folder made by 'mixvae train'")
    load_config(run)  # a clear error before any work
    if not (run / "eval.json").exists():
        try:
            cmd_evaluate(argparse.Namespace(run=run, data=None, iw=0, iw_images=None, device=args.device))
        except (DataError, CheckpointError, UsageError) as e:
            print(f"mixvae: warning: the report has no evaluation ({e})", file=sys.stderr)
    figures_for_run(run, args.device)
    print(write_report(run))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from mixvae.config import PRESETS

    for name, (desc, _) in PRESETS.items():
        print(f"{name:10s} {desc}")
    return 0


COMMANDS = {
    "fetch": cmd_fetch,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "sample": cmd_sample,
    "predict": cmd_predict,
    "report": cmd_report,
    "presets": cmd_presets,
}

if __name__ == "__main__":
    sys.exit(main())
