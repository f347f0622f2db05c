"""The commands that use data or a trained run: fetch, evaluate, sample, predict, report, presets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mixvae.cli.errors import UsageError

__all__ = ["cmd_evaluate", "cmd_fetch", "cmd_predict", "cmd_presets", "cmd_report", "cmd_sample"]


def cmd_fetch(args: argparse.Namespace) -> int:
    from mixvae.data import BUILTIN, fetch

    if args.name not in BUILTIN:
        raise UsageError(f"unknown dataset {args.name!r}: expected one of {', '.join(BUILTIN)}")
    print(fetch(args.name, log=lambda m: print(m, file=sys.stderr)))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mixvae.config import load_config
    from mixvae.evaluation import evaluate_run

    if args.iw < 0 or (args.iw_images is not None and args.iw_images < 1):
        raise UsageError("--iw K and --iw-images N are invalid: expected K >= 0 and N >= 1")
    K = load_config(args.run).model.n_components
    result = evaluate_run(args.run, data=args.data, iw_samples=args.iw, iw_images=args.iw_images, device=args.device)
    print_table(result, K)
    return 0


def print_table(result: dict[str, Any], K: int) -> None:
    from mixvae.runfolder import matched_classes

    """The evaluation as a small table, then the experts' matched classes and the IW bound."""
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
    matched = matched_classes(result)
    if r and matched is not None:
        print("expert -> matched class (purity): " + ", ".join(
            f"{k}->{c} ({p:.2f})" for k, (c, p) in enumerate(zip(matched, r["purity"]))))
    if "log_likelihood" in result:
        ll = result["log_likelihood"]
        print(f"log-likelihood bound (IW, k={ll['iw_samples']}, {ll['images']} {ll['split']} images, "
              f"{ll['likelihood']}): {ll['mean_nats']:.2f} +/- {ll['stderr']:.2f} nats")


def cmd_sample(args: argparse.Namespace) -> int:
    from mixvae.checkpoint import load_run
    from mixvae.inference import samples_per_expert
    from mixvae.kinds import kind_of
    from mixvae.runfolder import matched_classes, read_eval

    if args.per_expert < 1:
        raise UsageError(f"--per-expert {args.per_expert} is invalid: expected an integer >= 1")
    module, cfg = load_run(args.run)
    K = cfg.model.n_components
    rows = samples_per_expert(module, args.per_expert, args.seed)
    matched = matched_classes(read_eval(args.run))
    labels = ([f"expert {k}: {c}" for k, c in enumerate(matched)] if matched is not None
              else [f"expert {k}" for k in range(K)])
    print(kind_of(cfg.model).write_samples(cfg, rows, args.out, Path(args.run), labels,
                                           title=f"{args.per_expert} samples per expert"))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from mixvae.checkpoint import load_run
    from mixvae.curation import read_curation
    from mixvae.inference import predict_proba
    from mixvae.kinds import kind_of
    from mixvae.runfolder import matched_classes, read_eval

    module, cfg = load_run(args.run)
    names, data = kind_of(cfg.model).read_all(args.files, cfg)
    curation = read_curation(args.run, cfg.model.n_components)  # names and merges given in mixvae serve
    probs = curation.joined(predict_proba(module, data, batch_size=10000))  # a merged cluster's: its experts' sum
    experts = probs.argmax(1)
    matched = matched_classes(read_eval(args.run))  # the expert's class, when the run was evaluated with labels
    named = bool(curation.names)
    lines = [f"{name}\t{k}\t{probs[i, k]:.4f}" + (f"\t{matched[k]}" if matched else "")
             + (f"\t{curation.name(int(k)) or ''}" if named else "") for i, (name, k) in enumerate(zip(names, experts))]
    header = "file\texpert\tprobability" + ("\tmatched_class" if matched else "") + ("\tname" if named else "")
    sys.stdout.write(header + "\n" + "\n".join(lines) + "\n")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Evaluate the run if it has no eval.json, redraw its figures, and write RUN/report.html."""
    from mixvae.checkpoint import CheckpointError
    from mixvae.config import load_config
    from mixvae.data import DataError
    from mixvae.evaluation import EvaluationError, evaluate_run
    from mixvae.figures import figures_for_run
    from mixvae.report import write_report
    from mixvae.runfolder import EVAL_FILE

    run = Path(args.run)
    if not run.is_dir():
        raise UsageError(f"{run} is not a run folder: expected a folder made by 'mixvae train'")
    load_config(run)  # a clear error before any work
    if not (run / EVAL_FILE).exists():
        try:
            evaluate_run(run, device=args.device)
        except (DataError, CheckpointError, EvaluationError) as e:
            print(f"mixvae: warning: the report has no evaluation ({e})", file=sys.stderr)
    figures_for_run(run, args.device)
    print(write_report(run))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from mixvae.config import PRESETS

    for name, (desc, _) in PRESETS.items():
        print(f"{name:10s} {desc}")
    return 0
