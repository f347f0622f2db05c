"""Wall time until a preset's test accuracy first reaches a target (default: the ``default`` preset, 0.95).

Trains with ``mixvae.train.fit`` exactly as ``mixvae train`` does, reading the preset when it
runs, and records the test accuracy that ``fit`` computes after every epoch (the labels are used
for this report only). Writes ``benchmarks/results/time_to_acc.png`` (accuracy against seconds)
and ``time_to_acc.json``::

    python benchmarks/time_to_accuracy.py
    python benchmarks/time_to_accuracy.py --preset seed --target 0.6 --epochs 5

The clock includes everything a user waits for: building the model, any neighbour search, the
training steps and the per-epoch evaluation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class _Reached(Exception):
    """Raised from the per-epoch callback to stop training once the target is met."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--epochs", type=int, help="at most this many epochs (default: the preset's)")
    p.add_argument("--threads", type=int)
    p.add_argument("--data", default="mnist")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from provenance import fingerprint
    from quality import machine

    code = fingerprint()  # at the start: the code that runs
    load_start = os.getloadavg()[0]

    import torch

    from mixvae.callbacks import OnEpoch
    from mixvae.config import preset
    from mixvae.data import load_split_pair
    from mixvae.train import Runtime, fit

    if args.threads:
        torch.set_num_threads(args.threads)
    train, test = load_split_pair(args.data)
    cfg = preset(args.preset, image_shape=tuple(train.images.shape[1:3]))
    if args.epochs:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=args.epochs))
    points: list[tuple[float, int, float]] = []  # (seconds, step, test accuracy)
    t0 = time.perf_counter()

    def on_epoch(record: dict) -> None:
        acc = float(record.get("test_acc", float("nan")))
        points.append((time.perf_counter() - t0, int(record["step"]), acc))
        print(f"{points[-1][0]:8.1f} s  step {record['step']:>6}  test acc {acc:.4f}", flush=True)
        if acc >= args.target:
            raise _Reached

    try:
        fit(cfg, train.images, test.images, test.labels, log=None, runtime=Runtime(progress=False), callbacks=[OnEpoch(on_epoch)])
    except _Reached:
        pass
    reached = next((s for s, _, a in points if a >= args.target), None)
    result = {
        "command": "python benchmarks/time_to_accuracy.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "preset": cfg.to_dict(),
        "target": args.target,
        "threads": torch.get_num_threads(),
        "seconds_to_target": reached, "machine": machine(), "load_average_at_start": load_start, **code,
        "points": [{"seconds": s, "step": n, "test_acc": a} for s, n, a in points],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "time_to_acc.json").write_text(json.dumps(result, indent=2) + "\n")
    _figure(points, args.target, args.preset, args.out / "time_to_acc.png")
    print(f"{args.preset} preset: test accuracy {args.target} "
          + (f"first reached after {reached:.0f} s" if reached is not None else "not reached"))
    return 0


def _figure(points, target: float, name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([p[0] for p in points], [p[2] for p in points], marker="o")
    ax.axhline(target, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{name} preset on this machine")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
