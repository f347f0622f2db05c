"""Peak resident memory of each stage of a run, against the number of images and how they are stored.

For each size N and format it writes N images (MNIST's training images, then randomly deformed
copies of them, as ``benchmarks/scale.py`` makes them) as

- ``npy``: an uncompressed ``.npy`` file (read from disk as a memory map),
- ``npz``: an uncompressed ``.npz`` archive (``np.savez``; its images are memory-mapped too),
- ``npz-compressed``: a compressed archive (``np.savez_compressed``; read whole into memory),

then, in a fresh process, runs ``mixvae train --data FILE --epochs 1 --max-steps 1`` (the default
preset: load, neighbour graph, one optimiser step, figures) and, in another fresh process, the
self-labelling pass over every image (the manager's routing and the re-split repair, with the
run's weights and graph). Each stage writes its peak resident memory (Linux's VmHWM, started
again at each stage) through ``MIXVAE_MEMORY_LOG``; the whole process's peak comes from the
kernel's accounting of the child (``wait4``). The plan that ``mixvae train`` checks before a run
(:func:`mixvae.plan.memory_plan`) is recorded beside each measurement. Writes
``benchmarks/results/memory.json`` (rows of earlier runs are kept unless they had the same size,
format, code and parts).

    python benchmarks/memory.py --work /tmp/memory --sizes 60000 1000000 5000000 --formats npz npy
    python benchmarks/memory.py --work /tmp/memory --sizes 10000000 --formats npy --no-self-labelling
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import fingerprint
from scale import write_data

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "memory.json"
FORMATS = ("npy", "npz", "npz-compressed")
SELF_LABEL = """
import sys, numpy as np, torch
from pathlib import Path
from mixvae.checkpoint import load_run
from mixvae.data import load
from mixvae.neighbours import neighbour_graph
from mixvae.regularisers import self_labels
run, data = Path(sys.argv[1]), sys.argv[2]
module, cfg = load_run(run, "cpu")
tc = cfg.train
images = load(data).images
graph = neighbour_graph(images, tc.n_neighbours, tc.neighbour_pca_dims, tc.neighbour_search, run,
                        keep=tc.neighbour_filter, metric=tc.neighbour_metric)
(targets, _), moves = self_labels(module, images, tc.self_label_threshold, tc.eval_batch_size, torch.device("cpu"),
                                  graph, tc.resplit_ratio)
print(len(moves), float((targets >= 0).float().mean()))
"""


def data_file(work: Path, n: int, fmt: str) -> Path:
    """The file of n images in format fmt (written once, from the .npy file)."""
    npy = write_data(work, n)
    if fmt == "npy":
        return npy
    path = work / f"x_{n}{'-compressed' if fmt == 'npz-compressed' else ''}.npz"
    if not path.exists():
        images = np.load(npy, mmap_mode="r")
        part = path.with_name(".part-" + path.name)
        (np.savez_compressed if fmt == "npz-compressed" else np.savez)(part, x_train=images)
        os.replace(part, path)
    return path


def measured(cmd: list[str], log: Path, threads: int) -> dict[str, Any]:
    """Run cmd in a fresh process with stage logging into log: its exit status, seconds, the
    process's peak resident memory and each stage's record."""
    log.unlink(missing_ok=True)
    env = {**os.environ, "MIXVAE_MEMORY_LOG": str(log), "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampled = [0]  # the child's resident memory read every half second: a peak no stage boundary can hide
    watch = threading.Thread(target=_sample, args=(child.pid, sampled), daemon=True)
    watch.start()
    output = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - t0
    stages = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    # each stage starts the kernel's peak count again, which the child's accounting at exit then
    # reads too: the process's peak is the largest of its stages' peaks, of the peaks between
    # stages (each stage records the count it found at its start) and of that count
    peak = max([usage.ru_maxrss * 1024, *(s["peak_rss"] for s in stages), *(s.get("peak_before", 0) for s in stages)])
    return {"exit_status": os.waitstatus_to_exitcode(status), "seconds": round(seconds, 1),
            "peak_rss": peak, "sampled_peak_rss": sampled[0], "stages": stages, "output_tail": output[-1500:]}


def _sample(pid: int, peak: list[int]) -> None:
    """Keep in peak[0] the largest VmRSS of process pid, read every half second while it lives."""
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            text = status.read_text()
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        time.sleep(0.5)


def one(work: Path, n: int, fmt: str, threads: int, self_labelling: bool = True) -> dict[str, Any]:
    from mixvae.config import CONFIG_FILE, load_config
    from mixvae.plan import memory_plan

    path = data_file(work, n, fmt)
    run = work / f"run-{n}-{fmt}"
    shutil.rmtree(run, ignore_errors=True)  # a new folder: the graph is built, not loaded
    train = measured([sys.executable, "-m", "mixvae", "train", "--data", str(path), "--epochs", "1", "--max-steps", "1",
                      "--out", str(run), "--threads", str(threads)], work / "stages-train.jsonl", threads)
    row: dict[str, Any] = {"n": n, "format": fmt, "data_bytes": int(n * 28 * 28), "file_bytes": path.stat().st_size,
                           "train": train}
    if train["exit_status"] == 0 and self_labelling:
        row["self_labelling"] = measured([sys.executable, "-c", SELF_LABEL, str(run), str(path)],
                                         work / "stages-self.jsonl", threads)
    if (run / CONFIG_FILE).exists():  # the plan the command checked, from the configuration it saved
        row["plan"] = {need.stage: need.bytes for need in memory_plan(load_config(run / CONFIG_FILE), n)}
    return row


def machine(threads: int) -> dict[str, Any]:
    import platform

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    meminfo = Path("/proc/meminfo").read_text().split()
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "load_average_at_start": os.getloadavg()[0],
            "memory_total_kib": int(meminfo[meminfo.index("MemTotal:") + 1])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="folder for the data files and run folders")
    p.add_argument("--sizes", type=int, nargs="+", default=[60_000, 1_000_000, 5_000_000])
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=["npz", "npy"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-self-labelling", action="store_true",
                   help="measure the training run alone (the self-labelling pass over every image takes as long "
                        "again at the largest sizes)")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    code = fingerprint()  # at the start: the code that runs
    done = json.loads(OUT.read_text()) if OUT.exists() else {"rows": []}
    for n in args.sizes:
        for fmt in args.formats:
            start = machine(args.threads)
            row = {**one(args.work, n, fmt, args.threads, not args.no_self_labelling), **code, "machine": start,
                   "load_average_at_end": os.getloadavg()[0],
                   "command": f"python benchmarks/memory.py --work W --sizes {n} --formats {fmt} "
                              f"--threads {args.threads}" + (" --no-self-labelling" if args.no_self_labelling else "")}
            key = (n, fmt, str(row["code"]), "self_labelling" in row)  # a row per size, format, code and what ran
            done["rows"] = [r for r in done["rows"]
                            if (r["n"], r["format"], str(r.get("code")), "self_labelling" in r) != key] + [row]
            done["rows"].sort(key=lambda r: (r["n"], FORMATS.index(r["format"])))
            OUT.write_text(json.dumps(done, indent=2) + "\n")
            stages = {s["stage"]: s["peak_rss"] / 2**30 for s in row["train"]["stages"]}
            print(f"{n} {fmt}: exit {row['train']['exit_status']}, peak {row['train']['peak_rss'] / 2**30:.2f} GiB, "
                  f"stages {', '.join(f'{k} {v:.2f}' for k, v in stages.items())}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
