"""How often an image's nearest neighbours share its class: the signal behind the default
preset's routing regulariser. Labels are used here to measure that signal, never in training.

    python benchmarks/neighbours.py --data mnist fashion-mnist --k 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


from mixvae.data import load
from mixvae.train import nearest_neighbors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=["mnist", "fashion-mnist"])
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--pca", type=int, default=50)
    args = p.parse_args()
    results = {}
    for name in args.data:
        d = load(name, "train")
        t0 = time.perf_counter()
        nb = nearest_neighbors(d.images, args.k, args.pca).numpy()  # (N, k)
        same = d.labels[nb] == d.labels[:, None]  # (N, k)
        results[name] = {"k": args.k, "pca": args.pca, "same_class": float(same.mean()),
                         "nearest_same_class": float(same[:, 0].mean()), "seconds": time.perf_counter() - t0}
        print(f"{name}: {same.mean():.3f} of the {args.k} nearest neighbours share the image's class "
              f"(nearest one: {same[:, 0].mean():.3f}); {results[name]['seconds']:.0f} s", flush=True)
    out = Path(__file__).resolve().parent / "results" / "neighbours.json"
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
