"""The commands that put a trained run to use on a collection: assign and serve."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mixvae.cli.errors import UsageError

__all__ = ["cmd_assign", "cmd_serve"]


def _check_outputs(args: argparse.Namespace) -> None:
    if args.out.exists() and not args.overwrite:
        raise UsageError(f"{args.out} exists; pass --overwrite to replace it")
    if args.out.exists() and args.out.is_dir():
        raise UsageError(f"{args.out} is a folder; expected a CSV file name")
    if not args.out.parent.is_dir():
        raise UsageError(f"{args.out.parent} does not exist; expected the folder for --out")
    d = args.sort_into
    if d is not None and d.exists():
        if not d.is_dir():
            raise UsageError(f"--sort-into {d} is a file; expected a folder")
        if any(d.iterdir()) and not args.overwrite:
            raise UsageError(f"--sort-into {d} is not empty; pass --overwrite to replace its expert folders")


def _clear_sorted(folder: Path) -> None:
    """Remove the expert folders an earlier ``--sort-into`` wrote there (and nothing else)."""
    import re
    import shutil

    from mixvae.assign import INDEX_FILE

    for sub in folder.iterdir():
        if sub.is_dir() and not sub.is_symlink() and re.fullmatch(r"expert-\d+(-[A-Za-z0-9._-]+)?|junk", sub.name) \
                and (sub / INDEX_FILE).exists():
            shutil.rmtree(sub)


def _kind(run: Path) -> Any:
    """The kind of input ``run`` was trained on; images when it has no configuration (the run's
    loader then says what is missing)."""
    from mixvae.config import CONFIG_FILE, load_config
    from mixvae.kinds import GreyImages, kind_of

    return kind_of(load_config(run).model) if (Path(run) / CONFIG_FILE).is_file() else GreyImages()


def cmd_assign(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mixvae.assign import assign, sort_into, write_csv
    from mixvae.checkpoint import load_run
    from mixvae.curation import read_curation
    from mixvae.runfolder import matched_classes, read_eval

    if args.iw < 1 or args.batch_size < 1:
        raise UsageError(f"--iw {args.iw} and --batch-size {args.batch_size} are invalid: expected integers >= 1")
    kind = _kind(args.run)
    if not kind.shows_images and args.sort_into is not None:
        raise UsageError(f"--sort-into sorts image files into folders; a run on {kind.name} has rows, not files")
    _check_outputs(args)
    module, cfg = load_run(args.run, args.device)
    sources, images, files = kind.collection(args.data, args.split, cfg, log=lambda m: print(m, file=sys.stderr))
    if args.sort_into is not None and files is None:
        raise UsageError("--sort-into needs a folder of image files; an array's images have no files to link")
    with tqdm(total=len(sources), unit=kind.unit, disable=args.quiet or None,
              file=sys.stderr) as bar:
        result = assign(module, images, sources, iw_samples=args.iw, binarize=cfg.train.binarize,
                        chunk=args.batch_size, device=args.device, progress=bar.update)
    # the bound in nats of the data in its own units, as MixtureVAE.score_samples gives it
    result.outlier_score = result.outlier_score + kind.log_jacobian(cfg.model)
    result.matched_class = matched_classes(read_eval(args.run))
    result = read_curation(args.run, cfg.model.n_components).label(result, cfg.model.n_components)  # names, merges
    write_csv(result, args.out)
    if args.sort_into is not None and files is not None:
        if args.sort_into.exists():
            _clear_sorted(args.sort_into)
        sort_into(result, files, args.sort_into, copy=args.copy)
    print(args.out)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from mixvae.app import Explorer, check_address, create_app, make_server
    except ImportError as e:
        raise UsageError(f"mixvae serve needs the app extra ({e}): pip install 'mixvae[app]'") from None
    if args.port < 0 or args.port > 65535:
        raise UsageError(f"--port {args.port} is invalid: expected 0..65535")

    def listen(check: Any) -> Any:
        try:
            return check()
        except OSError as e:
            raise UsageError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e}); "
                             "try another --port") from None

    kind = _kind(args.run)
    if not kind.shows_images:
        raise UsageError(f"{args.run} was trained on {kind.name}; mixvae serve shows runs on images only "
                         "(use mixvae predict, assign, evaluate or sample on a run on vectors)")
    listen(lambda: check_address(args.host, args.port))  # before the model is loaded
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"mixvae: warning: serving on {args.host}: anyone who can reach this machine can use the app"
              + (" (requests must name an --allow-host NAME or a loopback address)" if args.host in ("0.0.0.0", "::")
                 else ""), file=sys.stderr)
    explorer = Explorer.open(args.run, device=args.device, log=lambda m: print(m, file=sys.stderr))
    allowed = (*([] if args.host in ("0.0.0.0", "::") else [args.host]), *args.allow_host)
    server = listen(lambda: make_server(create_app(explorer, allowed), args.host, args.port))
    print(f"mixvae: serving {args.run} at http://{args.host}:{server.server_port}/ (Ctrl-C stops)", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("mixvae: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
