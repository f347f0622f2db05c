"""Time and memory against the number of training images: 60,000 to 1,000,000, on disk.

Writes MNIST's training images and randomly deformed copies of them (rotation, zoom, shift; the
labels kept, for evaluation only) as memory-mapped ``.npy`` files of N = 60k, 250k and 1M
images, then, for each N, in a fresh process: builds the neighbour graph (``auto``: exact at 60k,
approximate above), trains the default preset for one epoch from the memory map, takes the
self-labelling pass (the manager over all N images, then the re-split repair) and records peak
memory; test ACC on MNIST's test split is taken after a fixed budget of 235 optimiser steps (one
epoch of 60,000 images). It also measures the recall of the approximate graph against the exact
one at the smallest N, and, with ``--two-processes``, trains one epoch of the largest file on two
processes (torchrun), given the graph the one-process run built (process 0 loads it from the run
folder and process 1 loads it after process 0). Writes benchmarks/results/scale.json.

    python benchmarks/scale.py --work /tmp/scale --two-processes
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (60_000, 250_000, 1_000_000)
BUDGET = 235  # optimiser steps of batch 256: one epoch of 60,000 images


def write_data(work: Path, n: int) -> Path:
    """MNIST's training images, then deformed copies, as x_<n>.npy and y_<n>.npy (memory maps)."""
    from mixvae.augment import random_affine
    from mixvae.data import load_split_pair

    path = work / f"x_{n}.npy"
    if path.exists():
        return path
    train, _ = load_split_pair("mnist")
    base, labels = np.asarray(train.images), np.asarray(train.labels)
    x = np.lib.format.open_memmap(work / f".x_{n}.npy", mode="w+", dtype=np.uint8, shape=(n, 28, 28))
    y = np.empty(n, np.int64)
    gen = torch.Generator().manual_seed(n)
    for start in range(0, n, 10_000):
        idx = np.arange(start, min(start + 10_000, n)) % len(base)
        batch = torch.from_numpy(base[idx]).reshape(len(idx), -1).float() / 255
        if start >= len(base):  # the first 60,000 are MNIST itself; the rest are deformed copies
            batch = random_affine(batch, (28, 28), uniforms=torch.rand(len(idx), 5, generator=gen))
        x[start:start + len(idx)] = (batch.reshape(-1, 28, 28) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        y[start:start + len(idx)] = labels[idx]
    x.flush()
    del x
    np.save(work / f"y_{n}.npy", y)
    os.replace(work / f".x_{n}.npy", path)
    return path


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def one_size(work: Path, n: int) -> dict[str, Any]:
    """Everything measured at one N, in this (fresh) process."""
    from mixvae.config import resolve_config
    from mixvae.data import load_split_pair
    from mixvae.inference import predict_proba
    from mixvae.metrics import cluster_accuracy
    from mixvae.neighbours import neighbour_graph, search_method
    from mixvae.regularisers import self_labels
    from mixvae.train import Runtime, fit

    images = np.load(work / f"x_{n}.npy", mmap_mode="r")
    _, test = load_split_pair("mnist")
    start_rss = rss_mib()
    run = work / f"run_{n}"
    cfg = resolve_config("default", values={"data": str(work / f"x_{n}.npy"), "train": {"epochs": 1}})
    tc = cfg.train
    t0 = time.perf_counter()
    graph = neighbour_graph(images, tc.n_neighbours, tc.neighbour_pca_dims, tc.neighbour_search, run)
    graph_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    module, _ = fit(cfg, images, run_dir=run, log=None, runtime=Runtime(progress=False, max_steps=BUDGET))
    budget_s = time.perf_counter() - t0
    acc = cluster_accuracy(test.labels, predict_proba(module, test.images).argmax(1))
    t0 = time.perf_counter()
    module, history = fit(cfg, images, run_dir=run, resume=True, log=None, runtime=Runtime(progress=False))
    rest_s = time.perf_counter() - t0  # loads the saved graph: no second search
    t0 = time.perf_counter()
    (targets, _), moves = self_labels(module, images, tc.self_label_threshold, tc.eval_batch_size,
                                      torch.device("cpu"), graph, tc.resplit_ratio)
    self_label_s = time.perf_counter() - t0
    steps = math.ceil(n / tc.batch_size)
    return {"n": n, "search": search_method(n, tc.neighbour_search), "graph_seconds": round(graph_s, 1),
            "epoch_seconds": round(budget_s + rest_s, 1), "steps_per_epoch": steps,
            "self_label_seconds": round(self_label_s, 1), "confident": float((targets >= 0).float().mean()),
            "resplits": len(moves), f"test_acc_after_{BUDGET}_steps": acc,
            "rss_start_mib": round(start_rss), "rss_peak_mib": round(rss_mib()),
            "rss_growth_mib": round(rss_mib() - start_rss), "epoch_record": history.records[-1]["seconds"]}


def recall(work: Path, n: int) -> dict[str, Any]:
    """Recall@10 of the approximate graph against the exact one, on the file of n images."""
    from mixvae.neighbours import approximate_neighbours, cosine_neighbours, pca_embedding

    images = np.load(work / f"x_{n}.npy", mmap_mode="r")
    e = pca_embedding(images, 50)
    t0 = time.perf_counter()
    exact = cosine_neighbours(e, 10).numpy()
    exact_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    approx = approximate_neighbours(e, 10).numpy()
    approx_s = time.perf_counter() - t0
    found = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx, exact)]))
    return {"n": n, "recall_at_10": found, "exact_seconds": round(exact_s, 1),
            "approximate_seconds": round(approx_s, 1)}


def two_processes(work: Path, n: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    from mixvae.runfolder import NEIGHBOURS_FILE, NEIGHBOURS_META

    run = work / "run_two"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    for name in (NEIGHBOURS_FILE, NEIGHBOURS_META):  # the graph the one-process run built: loaded, not searched
        if (work / f"run_{n}" / name).exists():
            shutil.copyfile(work / f"run_{n}" / name, run / name)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "mixvae",
           "train", "--data", str(work / f"x_{n}.npy"), "--epochs", "1", "--out", str(run), "--quiet"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] if done.returncode == 0 \
        else []
    return {"n": n, "command": " ".join(["torchrun --standalone --nproc-per-node=2", *cmd[6:]]),
            "exit_status": done.returncode, "seconds": round(seconds, 1),
            "epoch_seconds": records[-1]["seconds"] if records else None,
            "stderr_tail": done.stderr[-1500:] if done.returncode else ""}


def slope(rows: list[dict[str, Any]]) -> float:
    """Least-squares slope of log(graph + one epoch) against log(N)."""
    x = np.log([r["n"] for r in rows])
    y = np.log([r["graph_seconds"] + r["epoch_seconds"] for r in rows])
    return float(np.polyfit(x, y, 1)[0])


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "load_average_at_start": os.getloadavg()[0]}


def collect(log: Path, command: str) -> int:
    """The result file from the lines a run printed: its recall, size and two-process records."""
    out: dict[str, Any] = {"command": command, "collected_from_output": True, "machine": machine(), "sizes": []}
    for line in log.read_text().splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if "recall_at_10" in record:
            out["recall"] = record
        elif "search" in record:
            out["sizes"].append(record)
        elif "exit_status" in record:
            out["two_processes"] = record
    out["slope"] = slope(out["sizes"])
    (RESULTS / "scale.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"slope of log(graph + one epoch) against log(N): {out['slope']:.3f}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="folder for the .npy files and run folders")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    p.add_argument("--two-processes", action="store_true", help="also train one epoch of the largest on 2 processes")
    p.add_argument("--collect", type=Path, metavar="LOG",
                   help="write the result file from the JSON lines a run of this script printed (a run stopped "
                        "before its end); the command that made them goes in --command")
    p.add_argument("--command", help="with --collect: the command whose output LOG is")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size in this process
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(one_size(args.work, args.one)))
        return 0
    if args.collect:
        return collect(args.collect, args.command or "unknown")
    out: dict[str, Any] = {"command": "python " + " ".join(sys.argv), "machine": machine(), "sizes": []}
    for n in args.sizes:
        t0 = time.perf_counter()
        write_data(args.work, n)
        print(f"wrote {n} images in {time.perf_counter() - t0:.0f}s", flush=True)
    out["recall"] = recall(args.work, min(args.sizes))
    print(json.dumps(out["recall"]), flush=True)
    for n in args.sizes:
        done = subprocess.run([sys.executable, __file__, "--work", str(args.work), "--one", str(n)],
                              capture_output=True, text=True, check=True)
        out["sizes"].append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(out["sizes"][-1]), flush=True)
    out["slope"] = slope(out["sizes"])
    if args.two_processes:
        out["two_processes"] = two_processes(args.work, max(args.sizes))
        print(json.dumps(out["two_processes"]), flush=True)
    out["load_average_at_end"] = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"slope of log(graph + one epoch) against log(N): {out['slope']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
