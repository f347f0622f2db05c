"""Which expert pairs a trained run's neighbour graph flags, and what re-splitting them would do.

For each run folder: the expert pairs joined by the largest share of neighbour edges (training
split, the same 10-nearest-neighbour graph as training), the normalised cut of each pair before
and after the spectral re-split of :mod:`mixvae.refine`, whether the default ratio (0.5) accepts
it, and the training-split accuracy before and after. Labels are used here to evaluate only.

    mixvae train --seed 2 --set train.resplit_ratio=0 --out runs/no-resplit-2   # a run without repair
    python benchmarks/pair_cuts.py runs/no-resplit-2 runs/default0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mixvae import refine
from mixvae.checkpoint import load_run
from mixvae.data import load
from mixvae.inference import predict_proba
from mixvae.metrics import cluster_accuracy
from mixvae.neighbours import nearest_neighbours


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--pairs", type=int, default=3, help="how many of the most joined pairs to show")
    args = p.parse_args()
    datasets: dict[str, object] = {}
    graphs: dict[tuple, np.ndarray] = {}
    results = {}
    for run in args.runs:
        module, cfg = load_run(run)
        if cfg.data not in datasets:
            datasets[cfg.data] = load(cfg.data, "train")
        data = datasets[cfg.data]
        key = (cfg.data, cfg.train.n_neighbours, cfg.train.neighbour_pca_dims)
        if key not in graphs:
            graphs[key] = nearest_neighbours(data.images, key[1], key[2]).numpy()
        nb = graphs[key]
        K = cfg.model.n_components
        assign = predict_proba(module, data.images).argmax(1)
        cuts = refine.pair_cuts(assign, nb, K)
        iu = np.triu_indices(K, 1)
        rows = []
        for i in np.argsort(-cuts[iu], kind="stable")[:args.pairs]:
            a, b = int(iu[0][i]), int(iu[1][i])
            found = refine.split_pair(assign, nb, a, b)
            move = found[1] if found else None
            after = assign.copy()
            if found:
                after[(assign == a) | (assign == b)] = found[0]
            rows.append({
                "experts": [a, b], "edge_share": float(cuts[a, b]),
                "ncut_before": move.ncut_before if move else None,
                "ncut_after": move.ncut_after if move else None,
                "accepted_at_0.5": bool(move and move.ncut_after <= 0.5 * move.ncut_before),
                "train_acc_before": cluster_accuracy(data.labels, assign, K),
                "train_acc_after": cluster_accuracy(data.labels, after, K) if move else None,
            })
        results[str(run)] = rows
        print(f"{run}: training-split ACC {rows[0]['train_acc_before']:.4f}")
        for r in rows:
            cut = (f"normalised cut {r['ncut_before']:.3f} -> {r['ncut_after']:.3f} "
                   f"({'accepted' if r['accepted_at_0.5'] else 'rejected'} at ratio 0.5), "
                   f"ACC after {r['train_acc_after']:.4f}") if r["ncut_before"] is not None else "no cut found"
            print(f"  experts {r['experts'][0]} and {r['experts'][1]}: {r['edge_share']:.4f} of their edges "
                  f"join them; {cut}")
    out = Path(__file__).resolve().parent / "results" / "pair_cuts.json"
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
