"""The tables of vectors and of the data-size curve, for benchmarks/tables.py.

From benchmarks/results/vectors.json (benchmarks/vectors.py) and datasize-<data>.json
(benchmarks/datasize.py); at 60,000 images the curve takes the default preset's runs from
quality-<data>-default.json (and quality-<data>-default-seeds5-9.json where it exists), whose
schedule is the default's at that size. Every seed that ran is in each figure: mean +/- sample
std (ddof=1), worst seed.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
CURVE_DATA = (("mnist", "MNIST"), ("fashion-mnist", "Fashion-MNIST"))
SIZES = (1000, 5000, 20000, 60000)
METHOD_NAMES = {"mixvae": "MixtureVAE (default)", "kmeans": "KMeans", "gmm": "GaussianMixture",
                "kmeans-std": "KMeans, standardised", "gmm-std": "GaussianMixture, standardised"}


def _load(name: str) -> dict[str, Any]:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else {}


def _spread(values: Sequence[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} +/- {statistics.stdev(values):.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n" + "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines) + "\n"


def vectors() -> str:
    rows = []
    for name, entry in _load("vectors.json").get("datasets", {}).items():
        shape = "x".join(str(v) for v in entry["fit_shape"])
        for method, runs in entry["methods"].items():
            acc = [r["acc"] for r in runs]
            rows.append([name, shape, METHOD_NAMES[method], len(runs), _spread(acc), f"{min(acc):.3f}",
                         _spread([r["nmi"] for r in runs]), _spread([r["ari"] for r in runs]),
                         f"{statistics.median(r['seconds'] for r in runs):.1f}"])
    return _table(["data", "fitted on", "method", "seeds", "ACC", "worst ACC", "NMI", "ARI", "median s"], rows)


def _curve_point(data: str, n: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(runs of the default, k-means row) at n training images."""
    entry = _load(f"datasize-{data}.json").get("sizes", {}).get(str(n), {})
    runs = entry.get("runs", [])
    if n == 60000 and not runs:  # every seed of the default preset that ran on the whole training split
        runs = [r for name in (f"quality-{data}-default.json", f"quality-{data}-default-seeds5-9.json")
                for r in _load(name).get("runs", [])]
    return runs, entry.get("kmeans")


def datasize() -> str:
    rows = []
    for data, title in CURVE_DATA:
        for n in SIZES:
            runs, kmeans = _curve_point(data, n)
            if not runs and kmeans is None:
                rows.append([title, f"{n:,}", "not run", "-", "-", "not run", "-"])
                continue
            acc = [r["acc"] for r in runs]
            epochs = sorted({r["epochs"] for r in runs})
            rows.append([title, f"{n:,}", _spread(acc) if runs else "not run", f"{min(acc):.3f}" if runs else "-",
                         len(runs), f"{kmeans['acc']:.3f}" if kmeans else "not run",
                         ", ".join(str(e) for e in epochs) if runs else "-"])
    return _table(["data", "training images", "default: test ACC", "worst seed", "seeds", "k-means: test ACC",
                   "epochs"], rows)


def datasize_values() -> dict[str, str]:
    ran = beaten = 0
    missing = []
    for data, title in CURVE_DATA:
        for n in SIZES:
            runs, kmeans = _curve_point(data, n)
            if runs and kmeans:
                ran += 1
                beaten += min(r["acc"] for r in runs) > kmeans["acc"]
            else:
                missing.append(f"{title} {n:,}")
    return {"datasize.verdict": f"the default's worst seed is above k-means at {beaten} of the {ran} sizes measured"
            + (f"; not measured: {', '.join(missing)}" if missing else "")}


def vectors_values() -> dict[str, str]:
    below_kmeans, above_gmm, total = [], 0, 0
    for name, entry in _load("vectors.json").get("datasets", {}).items():
        m = entry["methods"]
        if "mixvae" not in m:
            continue
        total += 1
        mine = statistics.mean(r["acc"] for r in m["mixvae"])
        best_kmeans = max(statistics.mean(r["acc"] for r in m[k]) for k in ("kmeans", "kmeans-std") if k in m)
        best_gmm = max(statistics.mean(r["acc"] for r in m[k]) for k in ("gmm", "gmm-std") if k in m)
        if mine < best_kmeans:
            below_kmeans.append(name)
        above_gmm += mine >= best_gmm
    return {"vectors.verdict": f"MixtureVAE's mean ACC is below the better k-means on {len(below_kmeans)} of {total} "
            f"data sets ({', '.join(below_kmeans) or 'none'}) and at or above the better Gaussian mixture on "
            f"{above_gmm} of {total}"}


TABLES: dict[str, Callable[[], str]] = {"vectors": vectors, "datasize": datasize}
VALUES: tuple[Callable[[], dict[str, str]], ...] = (datasize_values, vectors_values)
