"""Test log-likelihood of the default preset on MNIST: an importance-weighted bound per image.

Trains (when its folder holds no model yet) the default preset with seed 0 on continuous pixels
and on dynamically binarised pixels, then evaluates each with ``mixvae evaluate RUN --iw K
--iw-images N`` (the library function behind it), and writes benchmarks/results/density.json.

    python benchmarks/density.py --runs /tmp/density --iw 1000 --iw-images 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from mixvae.cli import main as mixvae
from mixvae.evaluation import evaluate_run
from mixvae.runfolder import WEIGHTS_FILE

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {
    "continuous": ["--data", "mnist", "--seed", "0"],
    "binarised": ["--data", "mnist", "--seed", "0", "--set", "train.binarize=true"],
}


def machine() -> dict[str, object]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "unknown"
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "load_average_at_start": os.getloadavg()[0]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, required=True, help="folder for the two run folders")
    p.add_argument("--iw", type=int, default=1000, help="importance samples per expert")
    p.add_argument("--iw-images", type=int, default=1000, help="first N test images")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="which runs")
    args = p.parse_args()
    out: dict[str, object] = {"command": "python " + " ".join(sys.argv), "machine": machine(), "runs": {}}
    for name in args.variants:
        flags = VARIANTS[name]
        run = args.runs / name
        train = ["train", *flags, "--out", str(run), "--quiet"]
        if not (run / WEIGHTS_FILE).exists():
            t0 = time.perf_counter()
            if mixvae(train) != 0:
                return 1
            print(f"{name}: trained in {time.perf_counter() - t0:.0f}s", flush=True)
        t0 = time.perf_counter()
        result = evaluate_run(run, iw_samples=args.iw, iw_images=args.iw_images)
        ll = result["log_likelihood"]
        out["runs"][name] = {  # type: ignore[index]
            "train_command": "mixvae " + " ".join(train),
            "evaluate_command": f"mixvae evaluate {run} --iw {args.iw} --iw-images {args.iw_images}",
            "test_acc": result["test"]["acc"], "mean_nats": ll["mean_nats"], "stderr": ll["stderr"],
            "images": ll["images"], "iw_samples": ll["iw_samples"], "pixels": ll["pixels"],
            "seconds_to_evaluate": round(time.perf_counter() - t0, 1),
        }
        print(f"{name}: test ACC {result['test']['acc']:.4f}, IW bound {ll['mean_nats']:.2f} +/- "
              f"{ll['stderr']:.2f} nats", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "density.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
