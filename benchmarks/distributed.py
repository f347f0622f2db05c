"""Training throughput on one and on two processes (torch.distributed, gloo, CPU).

Trains the ``seed`` preset on MNIST for a fixed number of optimiser steps with the same global batch
(100 images) in three ways: one process with one thread, one process with two threads, and two
processes with one thread each under ``torchrun``. Prints a markdown table of images per second and
writes ``benchmarks/results/distributed.json``.

    python benchmarks/distributed.py [--steps 300] [--repeats 2]

Only the optimiser steps are timed (from a barrier after the model is built to the last step);
starting the processes and loading MNIST are not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "distributed.json"
SETUPS = [  # (processes, threads per process)
    (1, 1),
    (1, 2),
    (2, 1),
]


def worker(steps: int, threads: int, out: Path) -> None:
    """One process of a run (started by torchrun): train, time the steps, process 0 writes the result."""
    import torch
    import torch.distributed as dist

    from mixvae.config import config_from_dict, preset
    from mixvae.data import load
    from mixvae.train import Runtime, fit

    torch.set_num_threads(threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    images = load("mnist").images
    cfg = config_from_dict({"data": "mnist", "train": {"epochs": 1}}, base=preset("seed"))
    if world > 1:
        dist.barrier()
    t0 = time.perf_counter()
    fit(cfg, images, log=None, runtime=Runtime(progress=False, max_steps=steps))  # ends with a barrier when world > 1
    seconds = time.perf_counter() - t0
    if int(os.environ.get("RANK", "0")) == 0:
        out.write_text(json.dumps({"seconds": seconds, "images": steps * cfg.train.batch_size}))
    if world > 1:
        dist.destroy_process_group()


def run(processes: int, threads: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               __file__, "--worker", "--steps", str(steps), "--threads", str(threads), "--result", str(out)]
        subprocess.run(cmd, env=env, check=True)
        return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200, help="optimiser steps of 100 images (at most 600: one epoch)")
    p.add_argument("--repeats", type=int, default=2, help="runs per setup; the fastest is reported")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.steps, args.threads, args.result)
        return

    rows = []
    for processes, threads in SETUPS:
        times = [run(processes, threads, args.steps) for _ in range(args.repeats)]
        print(f"{processes} process(es) x {threads} thread(s): {[round(t['seconds'], 2) for t in times]} s",
              file=sys.stderr, flush=True)
        best = min(times, key=lambda r: r["seconds"])
        rows.append({"processes": processes, "threads_per_process": threads, "steps": args.steps,
                     "images": best["images"], "seconds": round(best["seconds"], 3),
                     "images_per_s": round(best["images"] / best["seconds"], 1),
                     "all_seconds": [round(r["seconds"], 3) for r in times]})
    base = rows[0]["images_per_s"]
    lines = ["| processes | threads each | steps | seconds | images/s | vs 1 process, 1 thread |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['processes']} | {r['threads_per_process']} | {r['steps']} | {r['seconds']:.2f} | "
                     f"{r['images_per_s']:.0f} | {r['images_per_s'] / base:.2f}x |")
    print("\n".join(lines))
    import torch

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "seed preset on MNIST, global batch 100, gloo on CPU",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
