"""The default recipe against the classic baselines, on image sets it was not tuned on.

For each set of ``benchmarks/robust_sets.py`` and each method, clusters the whole set without
labels and scores the clusters against the labels (Hungarian ACC, NMI, ARI):

- ``mixvae``: ``MixtureVAE(n_components=K, random_state=seed).fit(images)``, the default preset as
  it ships (``--settings`` changes settings, as ``mixvae train --set`` does; give it a ``--tag``);
- ``kmeans``: scikit-learn's k-means on the pixels in [0, 1] (n_init=10);
- ``spectral``: scikit-learn's spectral clustering of the neighbour graph mixvae itself builds
  for the set (its kind's features and its number of neighbours, symmetrised).

    python benchmarks/robust.py --sets digits8 photo-patches --methods kmeans spectral mixvae --seeds 0 1 2

Each (set, method[, tag]) writes ``benchmarks/results/robust-<set>-<method>[-<tag>].json`` with the
machine, its load average before and after each run, and the command; ``benchmarks/tables.py``
reads them. Labels are used to score, never to train or to choose.
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
from robust_sets import SETS

from mixvae.config import parse_overrides
from mixvae.metrics import cluster_accuracy

RESULTS = Path(__file__).resolve().parent / "results"


def scores(labels: np.ndarray, pred: np.ndarray, k: int) -> dict:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {"acc": cluster_accuracy(labels, pred, k), "nmi": float(normalized_mutual_info_score(labels, pred)),
            "ari": float(adjusted_rand_score(labels, pred)), "clusters_used": len(np.unique(pred))}


def run_kmeans(images: np.ndarray, k: int, seed: int, settings: dict) -> tuple[np.ndarray, dict]:
    from sklearn.cluster import KMeans

    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return KMeans(k, n_init=10, random_state=seed).fit_predict(x), {}


def run_spectral(images: np.ndarray, k: int, seed: int, settings: dict) -> tuple[np.ndarray, dict]:
    from mixvae.graphcut import spectral_partition
    from mixvae.kinds import kind_of_array
    from mixvae.neighbours import nearest_neighbours

    kind = kind_of_array(images)
    graph = nearest_neighbours(images, 10, 50, metric=kind.neighbour_metric)
    return spectral_partition(graph.numpy(), k, seed=seed), {"features": kind.graph_features}


def run_mixvae(images: np.ndarray, k: int, seed: int, settings: dict) -> tuple[np.ndarray, dict]:
    from mixvae import MixtureVAE

    est = MixtureVAE(n_components=k, random_state=seed, **({"settings": settings} if settings else {})).fit(images)
    cfg = est.config_
    return est.labels_, {"epochs": cfg.train.epochs, "manager_network": cfg.model.manager_network,
                         "likelihood": cfg.model.likelihood,
                         "graph_features": getattr(cfg.train, "neighbour_features", "pca-cosine"),
                         "restarts": est.restarts_}


METHODS = {"kmeans": run_kmeans, "spectral": run_spectral, "mixvae": run_mixvae}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--settings", nargs="*", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--tag", default=None)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = parse_overrides(args.settings)
    code = fingerprint()  # at the start: the code that runs
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.sets:
        images, labels, description = SETS[name]()
        k = len(np.unique(labels))
        for method in args.methods:
            out = RESULTS / f"robust-{name}-{method}{'-' + args.tag if args.tag else ''}.json"
            rows = []
            for seed in args.seeds:
                load_start, t0 = list(os.getloadavg()), time.perf_counter()
                pred, extra = METHODS[method](images, k, seed, settings)
                row = {"seed": seed, **scores(labels, np.asarray(pred), k), "seconds": time.perf_counter() - t0,
                       "load_average": {"start": load_start, "end": list(os.getloadavg())}, **extra}
                rows.append(row)
                print(f"{name} {method} seed {seed}: acc {row['acc']:.4f} nmi {row['nmi']:.4f} "
                      f"clusters {row['clusters_used']} {row['seconds']:.0f}s", flush=True)
                result = {"set": name, "description": description, "n": len(images), "k": k, "method": method,
                          "settings": args.settings, "machine": f"{machine()}, {os.cpu_count()} cores", **code,
                          "command": "python benchmarks/robust.py " + " ".join(sys.argv[1:]), "runs": rows}
                out.write_text(json.dumps(result, indent=2) + "\n")
            accs = np.array([r["acc"] for r in rows])
            std = accs.std(ddof=1) if len(accs) > 1 else 0.0
            print(f"== {name} {method}: ACC {accs.mean():.4f} +/- {std:.4f} (worst {accs.min():.4f})", flush=True)


if __name__ == "__main__":
    main()
