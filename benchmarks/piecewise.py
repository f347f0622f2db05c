"""Piecewise functions: a mixture of experts against one MLP and against splitting x by k-means.

Functions of one input, each with noise N(0, 0.05^2) (so 0.0025 is the lowest test MSE):

- ``two_parabolas`` (K = 2): the post's example, ``mixvae.regression.make_two_parabolas``:
  y = 4 (x + 0.5)^2 for x < 0, 0.5 (x - 1)^2 - 1 for x >= 0, x uniform on [-1, 3].
- ``step_line_parabola`` (K = 3): y = 1 for x < -1, y = x for -1 <= x < 0.25,
  y = (x - 1)^2 - 1 for x >= 0.25, x uniform on [-2, 2].
- ``uneven_two_pieces`` (K = 2): y = 0.5 - x for x < 0.25, (x - 1)^2 - 1 for x >= 0.25 (a jump
  of 0.69), x on [-2, 2] three times as dense left of the split as right of it.
- ``uneven_kink`` (K = 2): the same inputs, y = 0.5 - x for x < 0.25, 0.25 + 2 (x - 0.25)^2 for
  x >= 0.25: no jump, only the slope changes, so one flexible expert fits both pieces.
- ``two_parabolas_k4`` (K = 4): the post's example with two experts more than pieces.

For each of ``--seeds`` seeds (new training and test data, new initialisation) it fits

- the mixture of experts with its defaults (quadratic experts, solved by weighted least squares
  after every pass; a manager of 16 tanh units), with the post's loss (``moe``) and with the
  mixture likelihood (``gaussian``);
- the post's mixture of experts: ``moe`` loss, K experts of one hidden layer of 16 tanh units;
- one MLP with (about) as many parameters as the mixture: one hidden tanh layer, as wide as fits;
- k-means on x (K clusters), then one expert MLP (16 tanh units) per cluster, each test point
  predicted by the regressor of its cluster;

all with full-batch Adam (learning rate 0.01) for ``--max-iter`` steps on standardised data. It
reports the test MSE and the error of the split points: for each true split, the distance to the
nearest split found (where the manager's most probable expert changes, or half-way between
neighbouring k-means centres), averaged over the true splits; a function's whole input range
when none was found; and, for the mixtures, how many experts are the most probable one for no
training input ("unused"). Mean and sample standard deviation over the seeds, and the worst seed.

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
from mixvae.regression import TWO_PARABOLAS_SPLIT, make_two_parabolas

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = 16  # each expert's hidden width


def make_step_line_parabola(n_samples: int, noise: float = 0.05,
                            random_state: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(random_state)
    x = rng.uniform(-2.0, 2.0, n_samples)
    y = np.select([x < -1.0, x < 0.25], [np.ones_like(x), x], (x - 1.0) ** 2 - 1.0)
    return x[:, None], y + noise * rng.standard_normal(n_samples)


def _uneven_inputs(rng: np.random.RandomState, n_samples: int) -> np.ndarray:
    """x on [-2, 2], three times as dense on [-2, 0.25) as on [0.25, 2] (a mixture of two uniforms)."""
    left_mass = 3 * 2.25 / (3 * 2.25 + 1.75)
    left = rng.uniform(size=n_samples) < left_mass
    return np.where(left, rng.uniform(-2.0, 0.25, n_samples), rng.uniform(0.25, 2.0, n_samples))


def make_uneven_two_pieces(n_samples: int, noise: float = 0.05,
                           random_state: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(random_state)
    x = _uneven_inputs(rng, n_samples)
    y = np.where(x < 0.25, 0.5 - x, (x - 1.0) ** 2 - 1.0)
    return x[:, None], y + noise * rng.standard_normal(n_samples)


def make_uneven_kink(n_samples: int, noise: float = 0.05,
                     random_state: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(random_state)
    x = _uneven_inputs(rng, n_samples)
    y = np.where(x < 0.25, 0.5 - x, 0.25 + 2.0 * (x - 0.25) ** 2)
    return x[:, None], y + noise * rng.standard_normal(n_samples)


@dataclass(frozen=True)
class Problem:
    sample: Callable[..., tuple[np.ndarray, np.ndarray]]
    splits: tuple[float, ...]
    low: float
    high: float
    experts: int | None = None  # K; one per piece when None

    @property
    def n_experts(self) -> int:
        return self.experts or len(self.splits) + 1


PROBLEMS = {
    "two_parabolas": Problem(make_two_parabolas, (TWO_PARABOLAS_SPLIT,), -1.0, 3.0),
    "step_line_parabola": Problem(make_step_line_parabola, (-1.0, 0.25), -2.0, 2.0),
    "uneven_two_pieces": Problem(make_uneven_two_pieces, (0.25,), -2.0, 2.0),
    "uneven_kink": Problem(make_uneven_kink, (0.25,), -2.0, 2.0),
    "two_parabolas_k4": Problem(make_two_parabolas, (TWO_PARABOLAS_SPLIT,), -1.0, 3.0, experts=4),
}


def split_errors(found: np.ndarray, problem: Problem) -> list[float]:
    """For each true split, the distance to the nearest split found (the input range if none)."""
    if len(found) == 0:
        return [problem.high - problem.low] * len(problem.splits)
    return [round(float(np.abs(found - s).min()), 4) for s in problem.splits]


def split_error(found: np.ndarray, problem: Problem) -> float:
    """Mean over the true splits of the distance to the nearest split found."""
    return float(np.mean(split_errors(found, problem)))


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def run_seed(problem: Problem, seed: int, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    X, y = problem.sample(args.n_train, random_state=seed)
    X_test, y_test = problem.sample(args.n_test, random_state=1000 + seed)
    K = problem.n_experts
    common = {"max_iter": args.max_iter, "learning_rate": 0.01, "random_state": seed}
    out: dict[str, dict[str, Any]] = {}
    variants = {"mixture of experts (moe loss)": {"loss": "moe"},
                "mixture of experts (gaussian loss)": {"loss": "gaussian"},
                "post's mixture of experts (MLP experts, moe loss)": {"expert_degree": None, "expert_hidden": (HIDDEN,)}}
    for method, setting in variants.items():
        moe = MixtureOfExperts(n_experts=K, manager_hidden=(HIDDEN,), **setting, **common).fit(X, y)  # type: ignore[arg-type]
        found = moe.split_points_
        usage = np.bincount(moe.predict_proba(X).argmax(1), minlength=K) / len(X)
        out[method] = {
            "params": n_params(moe.module_), "test_mse": _mse(moe.predict(X_test), y_test),
            "split_error": split_error(found, problem), "split_errors": split_errors(found, problem),
            "splits": found.round(4).tolist(), "usage": usage.round(4).tolist(), "unused": int((usage == 0).sum())}
    moe_params = out["post's mixture of experts (MLP experts, moe loss)"]["params"]
    # one MLP: K = 1 is a plain MLP (tested); its 1-logit manager is constant and never moves
    width = round((moe_params - 1) / (X.shape[1] + 2))  # D h + h + h + 1 parameters
    mlp = MixtureOfExperts(n_experts=1, expert_degree=None, expert_hidden=(width,), manager_hidden=(),
                           **common).fit(X, y)
    out["one MLP"] = {"params": n_params(mlp.module_.experts),
                      "width": width, "test_mse": _mse(mlp.predict(X_test), y_test)}
    kmeans = KMeans(n_clusters=K, n_init=10, random_state=seed).fit(X)
    centres = np.sort(kmeans.cluster_centers_.ravel())
    pred, params = np.empty(len(X_test)), 0
    test_cluster = kmeans.predict(X_test)
    for c in range(K):
        side = MixtureOfExperts(n_experts=1, expert_degree=None, expert_hidden=(HIDDEN,), manager_hidden=(),
                                **common)
        side.fit(X[kmeans.labels_ == c], y[kmeans.labels_ == c])
        pred[test_cluster == c] = side.predict(X_test[test_cluster == c])
        params += n_params(side.module_.experts)
    found = (centres[1:] + centres[:-1]) / 2
    out["k-means on x + one MLP per cluster"] = {
        "params": params, "test_mse": _mse(pred, y_test),
        "split_error": split_error(found, problem), "split_errors": split_errors(found, problem),
        "splits": found.round(4).tolist()}
    return out


def _mse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((pred - y) ** 2))


def summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "worst": float(a.max()), "worst_seed": int(a.argmax())}


def table(results: dict[str, Any]) -> str:
    header = ("| function | K | method | params | test MSE, mean +/- std | worst seed "
              "| split error, mean +/- std | worst seed | seeds with all splits within 0.05 | unused experts, worst |")
    lines = [header, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, res in results.items():
        for method, r in res["methods"].items():
            mse, err = r["test_mse"], r.get("split_error")
            split = (f"{err['mean']:.3f} +/- {err['std']:.3f} | {err['worst']:.3f}" if err else "- | -")
            near = (f"{r['seeds_within_0.05']}/{len(r['per_seed'])}" if "seeds_within_0.05" in r else "-")
            unused = str(max(s["unused"] for s in r["per_seed"])) if "unused" in r["per_seed"][0] else "-"
            lines.append(f"| {name} | {res['n_experts']} | {method} | {r['params']} | {mse['mean']:.4f} +/- "
                         f"{mse['std']:.4f} | {mse['worst']:.4f} | {split} | {near} | {unused} |")
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
                methods[method]["seeds_within_0.05"] = sum(max(r["split_errors"]) <= 0.05 for r in per_seed)
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
