"""The post's figure: a mixture of two experts finds where a function splits; k-means on x does not.

The function is made of two parabolas that meet, with a jump, at x' = 0::

    y = 4 (x + 0.5)^2        for x < 0     (a narrow valley on [-1, 0))
    y = 0.5 (x - 1)^2 - 1    for x >= 0    (a wide valley on [0, 3])

plus N(0, 0.05^2) noise, with x uniform on [-1, 3] (``mixvae.regression.make_two_parabolas``).
Three quarters of the inputs lie right of the split, so k-means on x puts its split x'' near 1,
half-way between its two centres. A manager and two experts trained together with the post's
loss sum_k p_k (y - y_k)^2 put it at x' (the model's ``split_points_``; its experts are
quadratics by default). The top panel shows the data, both splits and each expert's curve (solid
where the manager chooses it); the bottom panel the manager's probability of each expert.

    python examples/two_parabolas.py            # writes docs/images/two_parabolas.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.cluster import KMeans

from mixvae import MixtureOfExperts
from mixvae.regression import TWO_PARABOLAS_SPLIT, make_two_parabolas

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "two_parabolas.png")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    matplotlib.use("Agg")
    torch.set_num_threads(1)

    X, y = make_two_parabolas(500, random_state=args.seed)
    centres = np.sort(KMeans(n_clusters=2, n_init=10, random_state=args.seed).fit(X).cluster_centers_.ravel())
    kmeans_split = centres.mean()
    model = MixtureOfExperts(random_state=args.seed).fit(X, y)
    learned = model.split_points_  # where the manager's most probable expert changes
    print(f"true split {TWO_PARABOLAS_SPLIT:.3f}, k-means split {kmeans_split:.3f}, learned split(s) "
          + ", ".join(f"{s:.3f}" for s in learned))

    grid = np.linspace(-1, 3, 801)
    proba, experts = model.predict_proba(grid[:, None]), model.predict_experts(grid[:, None])  # (G, K)
    chosen = proba.argmax(1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, height_ratios=[3, 1.3])
    top.scatter(X[:, 0], y, s=6, color="0.6", label="data")
    for k, colour in enumerate(["tab:blue", "tab:orange"]):
        top.plot(grid, experts[:, k], color=colour, lw=0.8, ls=":")
        top.plot(grid, np.where(chosen == k, experts[:, k], np.nan), color=colour, lw=2.2, label=f"expert {k}")
        bottom.plot(grid, proba[:, k], color=colour, lw=2, label=f"p(expert {k} | x)")
    for ax in (top, bottom):
        ax.axvline(kmeans_split, color="tab:red", ls="--", lw=1.2)
        for s in learned:
            ax.axvline(s, color="black", lw=1.2)
    top.plot([], [], color="tab:red", ls="--", label=f"k-means split x'' = {kmeans_split:.2f}")
    top.plot([], [], color="black", label="learned split x' = " + ", ".join(f"{s:.3f}" for s in learned))
    top.set_ylim(y.min() - 0.3, y.max() + 0.6)
    top.set_ylabel("y")
    top.legend(loc="upper right", fontsize=8, ncol=2)
    top.set_title(f"Two parabolas that meet at x' = {TWO_PARABOLAS_SPLIT:g}: k-means on x vs. a mixture of experts")
    bottom.axhline(0.5, color="0.5", lw=0.8)
    bottom.set_ylabel("manager")
    bottom.set_xlabel("x")
    bottom.legend(loc="center right", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
