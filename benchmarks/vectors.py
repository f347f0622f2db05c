"""MixtureVAE on real-valued vectors beside KMeans and GaussianMixture, on the same data.

Data, all offline: scikit-learn's bundled tables (iris, wine, breast cancer; digits as 64
real-valued features), and PCA embeddings (50 dims, PCA fitted on the training split) of MNIST
and Fashion-MNIST. The small tables are clustered and scored whole; the embeddings are fitted on
the 60,000 training vectors and scored on the 10,000 test vectors. Every method runs with the
same seeds; labels only score the result (ACC with the Hungarian matching, NMI, ARI).

    python benchmarks/vectors.py --datasets iris wine breast-cancer digits --seeds 0 1 2
    python benchmarks/vectors.py --datasets mnist-pca50 fashion-mnist-pca50 --seeds 0 1 2

MixtureVAE is the estimator with its defaults (``MixtureVAE(n_components=K, random_state=seed)``);
KMeans has n_init=10; GaussianMixture full covariances, n_init=1; each also on standardised
features (``-std``: StandardScaler first, as MixtureVAE standardises). Results are merged into
benchmarks/results/vectors.json (one entry per dataset) and a markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import machine  # the same machine line as the other result files

from mixvae import MixtureVAE
from mixvae.metrics import cluster_accuracy

RESULT = Path(__file__).resolve().parent / "results" / "vectors.json"
TABLES = {"iris": "load_iris", "wine": "load_wine", "breast-cancer": "load_breast_cancer", "digits": "load_digits"}


def dataset(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(X_fit, y_fit, X_score, y_score, description)."""
    if name in TABLES:
        import sklearn.datasets

        X, y = getattr(sklearn.datasets, TABLES[name])(return_X_y=True)
        X = X.astype(np.float64)
        return X, y, X, y, f"scikit-learn {TABLES[name]}(): {X.shape[0]} x {X.shape[1]}, fitted and scored whole"
    from sklearn.decomposition import PCA

    from mixvae.data import load_split_pair

    source = name.removesuffix("-pca50")
    train, test = load_split_pair(source, log=lambda m: None)
    assert test is not None and train.labels is not None and test.labels is not None
    x_train = np.asarray(train.images, np.float32).reshape(len(train), -1) / 255.0
    x_test = np.asarray(test.images, np.float32).reshape(len(test), -1) / 255.0
    pca = PCA(50, random_state=0).fit(x_train)
    return (pca.transform(x_train), train.labels, pca.transform(x_test), test.labels,
            f"{source} pixels -> PCA to 50 dims (fitted on the 60,000 training images); fitted on train, scored on test")


def scores(y: np.ndarray, pred: np.ndarray, seconds: float, seed: int) -> dict[str, Any]:
    return {"seed": seed, "acc": cluster_accuracy(y, pred), "nmi": float(normalized_mutual_info_score(y, pred)),
            "ari": float(adjusted_rand_score(y, pred)), "seconds": round(seconds, 1)}


def methods(K: int) -> dict[str, Any]:
    """name -> seed -> an unfitted estimator; ``-std``: on standardised features, as MixtureVAE sees them."""
    return {
        "mixvae": lambda s: MixtureVAE(n_components=K, random_state=s),
        "kmeans": lambda s: KMeans(K, n_init=10, random_state=s),
        "gmm": lambda s: GaussianMixture(K, covariance_type="full", random_state=s),
        "kmeans-std": lambda s: make_pipeline(StandardScaler(), KMeans(K, n_init=10, random_state=s)),
        "gmm-std": lambda s: make_pipeline(StandardScaler(), GaussianMixture(K, covariance_type="full",
                                                                              random_state=s)),
    }


def run(name: str, seeds: list[int], names: list[str], out: dict[str, Any]) -> dict[str, Any]:
    X, y, Xs, ys, about = dataset(name)
    K = len(np.unique(y))
    out.update(about=about, n_clusters=K, fit_shape=list(X.shape))
    out.setdefault("methods", {})
    for method, make in methods(K).items():
        if method not in names:
            continue
        rows = []
        for seed in seeds:
            t0 = time.perf_counter()
            model = make(seed).fit(X)
            rows.append(scores(ys, model.predict(Xs), time.perf_counter() - t0, seed))
            print(f"{name} {method} seed {seed}: ACC {rows[-1]['acc']:.4f} NMI {rows[-1]['nmi']:.4f} "
                  f"ARI {rows[-1]['ari']:.4f} ({rows[-1]['seconds']} s)", flush=True)
            if method == "mixvae":
                rows[-1]["epochs"] = model.config_.train.epochs
        out["methods"][method] = rows
    return out


def summary(entry: dict[str, Any], method: str, key: str) -> str:
    values = [r[key] for r in entry["methods"][method]]
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} +/- {statistics.stdev(values):.3f} (worst {min(values):.3f})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=[*TABLES, "mnist-pca50", "fashion-mnist-pca50"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(methods(2)))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = json.loads(RESULT.read_text()) if RESULT.exists() else {"datasets": {}}
    for name in args.datasets:
        entry = run(name, args.seeds, args.methods, results["datasets"].get(name, {}))
        command = f"python benchmarks/vectors.py --datasets {name} --seeds {' '.join(map(str, args.seeds))}"
        entry.setdefault("commands", {}).update({m: f"{command} --methods {m}" for m in args.methods})
        entry.setdefault("machine", {}).update({m: machine() for m in args.methods})
        entry.setdefault("shared", {}).update(
            {m: f"load average {os.getloadavg()[0]:.1f} at the end (2 cores, shared)" for m in args.methods})
        results["datasets"][name] = entry
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(results, indent=2) + "\n")
    print("| data | method | ACC | NMI | ARI |\n|---|---|---|---|---|")
    for name, entry in results["datasets"].items():
        for method in entry["methods"]:
            print(f"| {name} | {method} | " + " | ".join(summary(entry, method, k) for k in ("acc", "nmi", "ari")) + " |")


if __name__ == "__main__":
    main()
