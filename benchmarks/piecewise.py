"""Piecewise functions: a mixture of experts against one MLP and against splitting x by k-means.

Two functions of one input, each with noise N(0, 0.05^2) (so 0.0025 is the lowest test MSE):

- ``two_parabolas`` (K = 2): the post's example, ``mixvae.regression.make_two_parabolas``:
  y = 4 (x + 0.5)^2 for x < 0, 0.5 (x - 1)^2 - 1 for x >= 0, x uniform on [-1, 3].
- ``step_line_parabola`` (K = 3): y = 1 for x < -1, y = x for -1 <= x < 0.25,
  y = (x - 1)^2 - 1 for x >= 0.25, x uniform on [-2, 2].

For each of ``--seeds`` seeds (new training and test data, new initialisation) it fits

- the mixture of experts, with the post's loss (``moe``) and with the mixture likelihood
  (``gaussian``): K experts of one hidden layer of 16 tanh units, a manager of 16;
- one MLP with (about) as many parameters as the mixture: one hidden tanh layer, as wide as fits;
- k-means on x (K clusters), then one expert MLP (16 tanh units) per cluster, each test point
  predicted by the regressor of its cluster;

all with full-batch Adam (learning rate 0.01) for ``--max-iter`` steps on standardised data. It
reports the test MSE and the error of the split points: for each true split, the distance to the
nearest split found (where the manager's most probable expert changes, or half-way between
neighbouring k-means centres), averaged over the true splits; a function's whole input range
when none was found. Mean and sample standard deviation over the seeds, and the worst seed.

    python benchmarks/piecewise.py          # writes benchmarks/results/piecewise.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans

from mixvae import MixtureOfExperts
from mixvae.regression import TWO_PARABOLAS_SPLIT, make_two_parabolas, split_points

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = 16  # each expert's hidden width


def make_step_line_parabola(n_samples: int, noise: float = 0.05,
                            random_state: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(random_state)
    x = rng.uniform(-2.0, 2.0, n_samples)
    y = np.select([x < -1.0, x < 0.25], [np.ones_like(x), x], (x - 1.0) ** 2 - 1.0)
    return x[:, None], y + noise * rng.standard_normal(n_samples)


@dataclass(frozen=True)
class Problem:
    sample: Callable[..., tuple[np.ndarray, np.ndarray]]
    splits: tuple[float, ...]
    low: float
    high: float

    @property
    def n_experts(self) -> int:
        return len(self.splits) + 1


PROBLEMS = {
    "two_parabolas": Problem(make_two_parabolas, (TWO_PARABOLAS_SPLIT,), -1.0, 3.0),
    "step_line_parabola": Problem(make_step_line_parabola, (-1.0, 0.25), -2.0, 2.0),
}


def split_error(found: np.ndarray, problem: Problem) -> float:
    """Mean over the true splits of the distance to the nearest split found."""
    if len(found) == 0:
        return problem.high - problem.low
    return float(np.mean([np.abs(found - s).min() for s in problem.splits]))


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def run_seed(problem: Problem, seed: int, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    X, y = problem.sample(args.n_train, random_state=seed)
    X_test, y_test = problem.sample(args.n_test, random_state=1000 + seed)
    K = problem.n_experts
    common = {"max_iter": args.max_iter, "learning_rate": 0.01, "random_state": seed}
    out: dict[str, dict[str, Any]] = {}
    moe_params = 0
    for loss in ("moe", "gaussian"):
        moe = MixtureOfExperts(n_experts=K, expert_hidden=(HIDDEN,), manager_hidden=(HIDDEN,), loss=loss,
                               **common).fit(X, y)
        found = split_points(moe, problem.low, problem.high)
        moe_params = n_params(moe.module_)
        out[f"mixture of experts ({loss} loss)"] = {
            "params": moe_params, "test_mse": _mse(moe.predict(X_test), y_test),
            "split_error": split_error(found, problem), "splits": found.round(4).tolist()}
    # one MLP: K = 1 is a plain MLP (tested); its 1-logit manager is constant and never moves
    width = round((moe_params - 1) / (X.shape[1] + 2))  # D h + h + h + 1 parameters
    mlp = MixtureOfExperts(n_experts=1, expert_hidden=(width,), manager_hidden=(), **common).fit(X, y)
    out["one MLP"] = {"params": n_params(mlp.module_.experts),
                      "width": width, "test_mse": _mse(mlp.predict(X_test), y_test)}
    kmeans = KMeans(n_clusters=K, n_init=10, random_state=seed).fit(X)
    centres = np.sort(kmeans.cluster_centers_.ravel())
    pred, params = np.empty(len(X_test)), 0
    test_cluster = kmeans.predict(X_test)
    for c in range(K):
        side = MixtureOfExperts(n_experts=1, expert_hidden=(HIDDEN,), manager_hidden=(), **common)
        side.fit(X[kmeans.labels_ == c], y[kmeans.labels_ == c])
        pred[test_cluster == c] = side.predict(X_test[test_cluster == c])
        params += n_params(side.module_.experts)
    found = (centres[1:] + centres[:-1]) / 2
    out["k-means on x + one MLP per cluster"] = {
        "params": params, "test_mse": _mse(pred, y_test),
        "split_error": split_error(found, problem), "splits": found.round(4).tolist()}
    return out


def _mse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((pred - y) ** 2))


def summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "worst": float(a.max()), "worst_seed": int(a.argmax())}


def table(results: dict[str, Any]) -> str:
    header = ("| function | K | method | params | test MSE, mean +/- std | worst seed "
              "| split error, mean +/- std | worst seed |")
    lines = [header, "|---|---:|---|---:|---:|---:|---:|---:|"]
    for name, res in results.items():
        for method, r in res["methods"].items():
            mse, err = r["test_mse"], r.get("split_error")
            split = (f"{err['mean']:.3f} +/- {err['std']:.3f} | {err['worst']:.3f}" if err else "- | -")
            lines.append(f"| {name} | {res['n_experts']} | {method} | {r['params']} | {mse['mean']:.4f} +/- "
                         f"{mse['std']:.4f} | {mse['worst']:.4f} | {split} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "threads": 1,
            "torch": torch.__version__, "python": platform.python_version()}


def _relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--n-train", type=int, default=500)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--max-iter", type=int, default=2000)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "piecewise.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for name, problem in PROBLEMS.items():
        runs = [run_seed(problem, seed, args) for seed in range(args.seeds)]
        methods = {}
        for method in runs[0]:
            per_seed = [r[method] for r in runs]
            methods[method] = {"params": per_seed[0]["params"], "test_mse": summary([r["test_mse"] for r in per_seed]),
                               "per_seed": per_seed}
            if "split_error" in per_seed[0]:
                methods[method]["split_error"] = summary([r["split_error"] for r in per_seed])
        results[name] = {"n_experts": problem.n_experts, "true_splits": list(problem.splits), "methods": methods}
        print(f"{name}: done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    md = table(results)
    record = {"command": " ".join(["python benchmarks/piecewise.py", *sys.argv[1:]]),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "settings": {**vars(args), "out": _relative(args.out)},
              "seconds": round(time.perf_counter() - started, 1), "results": results, "table": md}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(md)


if __name__ == "__main__":
    main()
