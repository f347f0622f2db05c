"""What ``make demo`` prints, recorded: train the default preset on MNIST, evaluate, time it.

Runs the demo's own commands (``mixvae train --data mnist --out RUN`` then ``mixvae evaluate
RUN``) and writes the test and train ACC/NMI/ARI, the training time, the thread count and the
machine to benchmarks/results/demo.json. The numbers are the same on every run with the same
machine and the same number of torch threads (1 and 2 threads give slightly different sums).

    python benchmarks/demo.py --out runs/demo --gallery
    python benchmarks/demo.py --out RUN --existing    # a run the demo's command already trained

With ``--existing`` the run folder is evaluated as it is (its configuration must be the demo's:
the default preset on MNIST, seed 0) and no training time is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import fingerprint

from mixvae.cli import main as mixvae
from mixvae.runfolder import read_eval

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="the run folder (replaced)")
    p.add_argument("--existing", action="store_true", help="evaluate the run in --out instead of training it")
    p.add_argument("--gallery", action="store_true",
                   help="also draw 10 samples per expert and copy them and progress.png to docs/images")
    args = p.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    load_before = os.getloadavg()[0]
    code = fingerprint()  # at the start: the code that runs
    train = ["train", "--data", "mnist", "--out", str(args.out), "--overwrite", "--quiet"]
    seconds = None
    if args.existing:
        from mixvae.config import load_config, resolve_config

        if load_config(args.out).to_dict() != resolve_config(None, values={"data": "mnist", "model": {
                "image_shape": [28, 28]}}).to_dict():
            print(f"{args.out} is not a run of the demo's configuration", file=sys.stderr)
            return 2
    else:
        t0 = time.perf_counter()
        if mixvae(train) != 0:
            return 1
        seconds = round(time.perf_counter() - t0, 1)
    if mixvae(["evaluate", str(args.out)]) != 0:
        return 1
    if args.gallery:
        if mixvae(["sample", str(args.out), "--per-expert", "10"]) != 0:
            return 1
        images = Path(__file__).resolve().parent.parent / "docs" / "images"
        for name, target in (("samples.png", "samples-default-mnist.png"), ("progress.png", "progress-default-mnist.png")):
            shutil.copyfile(args.out / name, images / target)
    ev = read_eval(args.out)
    keep = ("acc", "nmi", "ari", "experts_used")
    out = {
        "command": "python " + " ".join(sys.argv),
        "commands": ([] if args.existing else ["mixvae " + " ".join(train)]) + [f"mixvae evaluate {args.out}"],
        "existing_run": bool(args.existing),  # trained before, with the demo's configuration (checked)
        "test": {k: ev["test"][k] for k in keep}, "train": {k: ev["train"][k] for k in keep},
        "train_seconds": seconds, **code,
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "load_average_before": load_before, "load_average_after": os.getloadavg()[0]},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "demo.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["test"]), f"trained in {seconds}s" if seconds else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
