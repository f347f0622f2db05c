"""Does the label-free criterion keep the better trainings? Each restart of the default, alone.

For each set of ``benchmarks/robust_sets.py`` and each seed s, trains the default once at each of
the seeds its restarts use for s (``mixvae.restarts.restart_seed(s, r)``, r below the number of
restarts the default decides for the set's size, or ``--restarts``), and records each training's
normalised cut of the run's neighbour graph (``mixvae.graphcut.partition_cut``: the criterion,
no label) and its ACC against the labels (to score the choice, never to make it). The default
with its restarts keeps, for seed s, the training with the lowest cut (``tests/test_restarts.py``
checks that it equals that training trained alone).

    python benchmarks/restart_choice.py --sets digits8 --seeds 0 1 2 3 4 --threads 1

Writes ``benchmarks/results/restart-choice-<set>.json`` with the machine, its load and the code;
``benchmarks/tables.py`` reads it.
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
from robust import scores
from robust_sets import SETS

from mixvae import MixtureVAE
from mixvae.config import restarts_for
from mixvae.graphcut import partition_cut
from mixvae.kinds import kind_of_array
from mixvae.neighbours import nearest_neighbours
from mixvae.restarts import restart_seed

RESULTS = Path(__file__).resolve().parent / "results"


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if len(a) > 2 else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["digits8"], choices=list(SETS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--restarts", type=int, default=None, help="trainings per seed (default: as the default decides)")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    code = fingerprint()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.sets:
        images, labels, description = SETS[name]()
        k = len(np.unique(labels))
        count = args.restarts or restarts_for(len(images))
        graph = nearest_neighbours(images, 10, 50, metric=kind_of_array(images).neighbour_metric).numpy()
        seeds = []
        for seed in args.seeds:
            runs = []
            for r in range(count):
                load_start, t0 = list(os.getloadavg()), time.perf_counter()
                est = MixtureVAE(n_components=k, random_state=restart_seed(seed, r),
                                 settings={"train": {"restarts": 1}}).fit(images)
                row = {"restart": r + 1, "seed": restart_seed(seed, r),
                       "cut": round(partition_cut(graph, est.labels_, k), 6), **scores(labels, est.labels_, k),
                       "seconds": time.perf_counter() - t0,
                       "load_average": {"start": load_start, "end": list(os.getloadavg())}}
                runs.append(row)
                print(f"{name} seed {seed} restart {r + 1}: cut {row['cut']:.4f} acc {row['acc']:.4f}", flush=True)
            kept = min(runs, key=lambda x: (x["cut"], x["restart"]))
            seeds.append({"seed": seed, "kept": kept["restart"], "kept_acc": kept["acc"], "trainings": runs})
            all_runs = [x for s in seeds for x in s["trainings"]]
            result = {"set": name, "description": description, "n": len(images), "k": k, "restarts": count,
                      "machine": f"{machine()}, {os.cpu_count()} cores", **code,
                      "command": "python benchmarks/restart_choice.py " + " ".join(sys.argv[1:]),
                      "spearman_cut_acc": spearman([x["cut"] for x in all_runs], [x["acc"] for x in all_runs]),
                      "seeds": seeds}
            (RESULTS / f"restart-choice-{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"== {name}: kept ACC {np.mean([s['kept_acc'] for s in seeds]):.4f}, every training "
              f"{np.mean([x['acc'] for s in seeds for x in s['trainings']]):.4f}, Spearman(cut, ACC) "
              f"{result['spearman_cut_acc']:.3f}", flush=True)


if __name__ == "__main__":
    main()
