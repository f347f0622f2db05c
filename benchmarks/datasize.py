"""Test accuracy of the default preset against the number of training images, with k-means.

For each size N, the first N images of a fixed shuffle (seed 0) of the training split train
``MixtureVAE()`` with its defaults (the training length follows N: see mixvae.config.budget) and
k-means (scikit-learn, n_init=10) on the same images' pixels; both are scored on the whole test
split (ACC with the Hungarian matching, NMI, ARI). Labels only score.

    python benchmarks/datasize.py --data mnist --sizes 1000 5000 20000 --seeds 0
    python benchmarks/datasize.py --data fashion-mnist --sizes 1000 5000 20000 --seeds 0

At 60,000 images the default's schedule is the one of benchmarks/results/quality-<data>-default.json
(8 epochs of 60,000), so that file's runs stand for N = 60,000 (``--kmeans-only 60000`` adds the
k-means row there). Results are merged into benchmarks/results/datasize-<data>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import machine

from mixvae import MixtureVAE
from mixvae.data import load_split_pair
from mixvae.metrics import cluster_accuracy

RESULTS = Path(__file__).resolve().parent / "results"


def scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {"acc": cluster_accuracy(y, pred), "nmi": float(normalized_mutual_info_score(y, pred)),
            "ari": float(adjusted_rand_score(y, pred))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--sizes", nargs="*", type=int, default=[1000, 5000, 20000])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--kmeans-only", nargs="*", type=int, default=[], help="sizes that get only the k-means row")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    train, test = load_split_pair(args.data, log=lambda m: None)
    assert test is not None and test.labels is not None and train.labels is not None
    order = np.random.default_rng(0).permutation(len(train))
    x_test = np.asarray(test.images)
    path = RESULTS / f"datasize-{args.data}.json"
    results = json.loads(path.read_text()) if path.exists() else {"data": args.data, "sizes": {}}
    for n in [*args.sizes, *args.kmeans_only]:
        x = np.asarray(train.images)[np.sort(order[:n])]
        entry: dict[str, Any] = results["sizes"].setdefault(str(n), {"runs": []})
        if n not in args.kmeans_only:
            for seed in args.seeds:
                t0 = time.perf_counter()
                model = MixtureVAE(random_state=seed).fit(x)
                row = {"seed": seed, **scores(test.labels, model.predict(x_test)),
                       "epochs": model.config_.train.epochs, "steps": model.history_[-1]["step"],
                       "seconds": round(time.perf_counter() - t0, 1), "machine": machine()}
                entry["runs"] = [r for r in entry["runs"] if r["seed"] != seed] + [row]
                print(f"{args.data} N={n} seed {seed}: {row}", flush=True)
        t0 = time.perf_counter()
        km = KMeans(10, n_init=10, random_state=0).fit(x.reshape(n, -1).astype(np.float32) / 255.0)
        pred = km.predict(x_test.reshape(len(x_test), -1).astype(np.float32) / 255.0)
        entry["kmeans"] = {**scores(test.labels, pred), "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{args.data} N={n} k-means: {entry['kmeans']}", flush=True)
        entry.update(machine=machine(), shared=f"load average {os.getloadavg()[0]:.1f} at the end (2 cores, shared)",
                     command=" ".join(["python benchmarks/datasize.py", *sys.argv[1:]]))
        path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
