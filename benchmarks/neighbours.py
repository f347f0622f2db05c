"""How often an image's nearest neighbours share its class: the signal behind the default
preset's routing regulariser. Labels are used here to measure that signal, never in training.

    python benchmarks/neighbours.py --data mnist fashion-mnist --k 10
    python benchmarks/neighbours.py --features RUN   # neighbours in a trained manager's last hidden layer
    python benchmarks/neighbours.py --data fashion-mnist --k 20 --mutual   # train.neighbour_filter=mutual
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mixvae.checkpoint import load_run
from mixvae.data import load
from mixvae.inference import images_to_tensor
from mixvae.neighbours import cosine_neighbours, mutual_counts, mutual_neighbours, nearest_neighbours


@torch.no_grad()
def feature_neighbors(run: Path, images: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """(N, k) nearest neighbours by cosine similarity of the manager's last hidden layer."""
    module, _ = load_run(run)
    trunk = module.manager.net[:-1]  # everything before the routing logits
    feats = torch.cat([trunk(images_to_tensor(images, s, s + chunk)) for s in range(0, len(images), chunk)])
    return cosine_neighbours(feats, k, chunk).numpy()

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=["mnist", "fashion-mnist"])
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--pca", type=int, default=50)
    p.add_argument("--features", type=Path, help="a run folder: use its manager's features, on its data")
    p.add_argument("--mutual", action="store_true", help="keep the mutual neighbours alone, as training does with "
                   "train.neighbour_filter=mutual (a row's k slots repeat its kept neighbours)")
    args = p.parse_args()
    results = {}
    sources = [(str(args.features), load_run(args.features)[1].data)] if args.features else \
        [(name, name) for name in args.data]
    for key, name in sources:
        d = load(name, "train")
        t0 = time.perf_counter()
        if args.features:
            nb = feature_neighbors(args.features, d.images, args.k)
        else:
            nb = nearest_neighbours(d.images, args.k, args.pca).numpy()  # (N, k)
        full = nb
        if args.mutual:
            nb = mutual_neighbours(torch.from_numpy(nb)).numpy()
        same = d.labels[nb] == d.labels[:, None]  # (N, k): a slot is drawn uniformly, so this is per draw
        results[key] = {"data": name, "k": args.k, "embedding": "manager features" if args.features else
                        f"PCA-{args.pca} pixels", "same_class": float(same.mean()),
                        "nearest_same_class": float(same[:, 0].mean()), "seconds": time.perf_counter() - t0}
        if args.mutual:
            kept, none = mutual_counts(torch.from_numpy(full), torch.from_numpy(nb))
            results[key].update(filter="mutual", distinct_per_image=kept, without_mutual=none)
            print(f"{key}: {results[key]['distinct_per_image']:.1f} mutual neighbours per image on average; "
                  f"{results[key]['without_mutual']:.3f} of the images have none (they keep their nearest)")
        print(f"{key}: {same.mean():.3f} of the {args.k} nearest neighbours share the image's class "
              f"(nearest one: {same[:, 0].mean():.3f}); {results[key]['seconds']:.0f} s", flush=True)
    name = "neighbours" + ("-features" if args.features else "") + (f"-k{args.k}" if args.k != 10 else "") + \
        ("-mutual" if args.mutual else "")
    out = Path(__file__).resolve().parent / "results" / f"{name}.json"
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
