"""The command line: ``mixvae fetch | train | evaluate | sample | predict | assign | serve | report | presets``.

torch is imported only inside the commands that need it, so ``mixvae --help`` answers at once.
Every error a user can fix is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from mixvae.cli.errors import EXIT_FAILED, EXIT_USAGE, is_user_error

__all__ = ["main", "parser"]


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage block), like every other mixvae error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"mixvae: error: {message} (see 'mixvae --help')\n")


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    print(f"mixvae: warning: {str(message).strip().splitlines()[0]}", file=sys.stderr)


def _train_parser(t: argparse.ArgumentParser) -> None:
    t.add_argument("--data", help="mnist, fashion-mnist, or a path: IDX folder, .npz/.npy file, image folder; "
                   "or vectors: a .csv table or a float .npy/.npz feature matrix")
    t.add_argument("--label-column", help="the .csv column (name or 0-based index) of labels, used only to evaluate")
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
    t.add_argument("--grayscale", action="store_true", default=None,
                   help="convert colour images to grayscale (by default colour is kept)")
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


def _explore_parsers(sub: Any) -> None:
    a = sub.add_parser("assign", help="write a CSV: each image's (or row's) expert, probabilities and outlier score")
    a.add_argument("run", type=Path)
    a.add_argument("--data", required=True, help="image folder, .npz/.npy file, IDX folder, mnist or fashion-mnist "
                                                 "(a run on vectors: a .csv, .npy or .npz of rows)")
    a.add_argument("--out", type=Path, required=True, help="CSV file to write")
    a.add_argument("--split", choices=("train", "test"), default="train", help="for data with two splits")
    a.add_argument("--sort-into", type=Path, metavar="DIR", help="one folder per expert of links to the image files")
    a.add_argument("--copy", action="store_true", help="with --sort-into: copy the files instead of linking them")
    a.add_argument("--iw", type=int, default=10, metavar="K", help="draws per expert of the outlier score's bound")
    a.add_argument("--batch-size", type=int, default=1000, help="images read and scored at a time")
    a.add_argument("--overwrite", action="store_true", help="replace --out and the expert folders of --sort-into")
    a.add_argument("--device", default="cpu")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    v = sub.add_parser("serve", help="explore a run in the browser (needs: pip install 'mixvae[app]')")
    v.add_argument("run", type=Path, help="a run folder, or a folder written by MixtureVAE.save")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a name (or address) requests may use to reach the app besides 127.0.0.1, localhost and "
                        "--host; others get 403 (DNS rebinding)")
    v.add_argument("--device", default="cpu")


def parser() -> argparse.ArgumentParser:
    """The ``mixvae`` argument parser."""
    p = _Parser(prog="mixvae",
                description="Unsupervised clustering and per-cluster generation of images with a mixture of VAEs.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    f = sub.add_parser("fetch", help="download and cache a dataset (mnist, fashion-mnist)")
    f.add_argument("name", help="mnist or fashion-mnist")
    _train_parser(sub.add_parser("train", help="train a mixture of VAEs and write a run folder"))
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
    s.add_argument("--out", type=Path, help="PNG file (default RUN/samples.png; a run on vectors: RUN/samples.csv)")
    s.add_argument("--seed", type=int, default=0)
    pr = sub.add_parser("predict", help="print the expert each image (or row) is routed to, and its probability")
    pr.add_argument("run", type=Path)
    pr.add_argument("files", nargs="+", type=Path,
                    help="image files (PNG/JPEG) or .npy/.npz arrays (a run on vectors: .csv, .npy or .npz rows)")
    _explore_parsers(sub)
    rp = sub.add_parser("report", help="write RUN/report.html: figures, metrics and config on one offline page")
    rp.add_argument("run", type=Path)
    rp.add_argument("--device", default="cpu")
    sub.add_parser("presets", help="list the named presets")
    return p


def _commands() -> dict[str, Callable[[argparse.Namespace], int]]:
    from mixvae.cli import explore, run, use

    return {"fetch": use.cmd_fetch, "train": run.cmd_train, "evaluate": use.cmd_evaluate,
            "sample": use.cmd_sample, "predict": use.cmd_predict, "report": use.cmd_report,
            "presets": use.cmd_presets, "assign": explore.cmd_assign, "serve": explore.cmd_serve}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``mixvae`` command; return its exit status."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2), already printed
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # one line each, without the source line
            return int(_commands()[args.command](args) or 0)
    except KeyboardInterrupt:
        print("mixvae: interrupted; a run can be continued with 'mixvae train --resume RUN'", file=sys.stderr)
        return 130
    except Exception as e:  # user-facing errors become one line; anything else is a bug
        if is_user_error(e):
            print(f"mixvae: error: {e}", file=sys.stderr)
            return EXIT_USAGE
        if type(e).__name__ == "TrainingError":
            print(f"mixvae: error: {e}", file=sys.stderr)
            return EXIT_FAILED
        raise
