"""The MNIST default on a GPU against the same on the CPU: time per epoch, total time, test ACC,
peak GPU memory and what each step copies from the host.

Two recipes, one seed: the shipping default (its convolutional manager, as the kind decides for
28x28 images) and the same with the dense manager (``model.manager_network=mlp``). Each runs on
every device asked for (default: ``cuda`` when torch sees one, and ``cpu``). Without a GPU the
script says so, runs the CPU rows and writes them, so that the GPU rows can be added beside them
when a machine with one is at hand.

Usage:
    python benchmarks/gpu.py                          # every device present, 60,000 images
    python benchmarks/gpu.py --devices cpu --images 10000 --threads 2 --tag cpu-10k
Writes benchmarks/results/gpu[-TAG].json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import fingerprint
from quality import machine

from mixvae.config import config_from_dict, preset
from mixvae.data import load_split_pair
from mixvae.inference import predict_proba
from mixvae.kinds import fit_to_data
from mixvae.metrics import clustering_report
from mixvae.train import Runtime, fit

RESULTS = Path(__file__).resolve().parent / "results"
RECIPES = {"default": {}, "default, dense manager": {"model": {"manager_network": "mlp"}}}


def gpu_name() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def run(recipe: str, device: str, images: int, seed: int) -> dict:
    train, test = load_split_pair("mnist")
    x = train.images[:images]
    cfg = config_from_dict({**RECIPES[recipe], "train": {"seed": seed}}, base=preset("default"))
    cfg = fit_to_data(cfg, len(x))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    load_at_start = list(os.getloadavg())
    t0 = time.perf_counter()
    module, history = fit(cfg, x, test.images, test.labels, runtime=Runtime(device=device, progress=False))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    rep = clustering_report(test.labels, predict_proba(module, test.images, device=device))
    last = history.records[-1]
    return {
        "recipe": recipe, "device": device, "gpu": gpu_name() if device.startswith("cuda") else None,
        "images": len(x), "epochs": cfg.train.epochs, "seed": seed, "seconds": round(seconds, 1),
        "seconds_per_epoch": round(float(np.mean(history.column("seconds"))), 2),
        "test_acc": rep["acc"], "experts_used": rep["experts_used"],
        "peak_gpu_memory_mib": (round(torch.cuda.max_memory_allocated() / 2**20) if device.startswith("cuda")
                                else None),
        "host_copies_per_step": last.get("host_copies_per_step", 0.0),
        "host_bytes_per_step": last.get("host_bytes_per_step", 0),
        "data_on_device": last.get("data_on_device", False),
        "load_average": {"start": load_at_start, "end": list(os.getloadavg())},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", nargs="+", default=None, help="default: cuda (when present) and cpu")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--images", type=int, default=60_000, help="the first N training images (the budget follows N)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--tag", default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    code = fingerprint()  # at the start: the code that runs
    present = gpu_name()
    devices = args.devices or (["cuda", "cpu"] if present else ["cpu"])
    note = f"GPU: {present}" if present else "no GPU present: CPU rows only"
    print(note, flush=True)
    if any(d.startswith("cuda") for d in devices) and not present:
        sys.exit("benchmarks/gpu.py: --devices names cuda, but torch sees no GPU on this machine")
    rows = []
    for recipe in args.recipes:
        for device in devices:
            row = run(recipe, device, args.images, args.seed)
            print(json.dumps(row), flush=True)
            rows.append(row)
    out = RESULTS / (f"gpu-{args.tag}.json" if args.tag else "gpu.json")
    result = {"note": note, "machine": f"{machine()}, {os.cpu_count()} cores", **code,
              "command": "python " + " ".join([str(Path(sys.argv[0]).as_posix()), *sys.argv[1:]]), "rows": rows}
    out.write_text(json.dumps(result, indent=2))
    print(out)


if __name__ == "__main__":
    main()
