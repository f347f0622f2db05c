"""The tables of BENCHMARKS.md's "Robust by default" section, from benchmarks/robust.py's result files.

``robust-<set>-<method>.json`` is the code that ships (its ``code`` field names the commit);
``robust-<set>-<method>-main.json`` the default before the input kind chose its settings;
``robust-<set>-mixvae-x-<variant>.json`` the variants measured to choose them.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
SETS = ("digits8", "mnist-test-inverted", "mnist-test", "fashion-test", "photo-patches", "photo-patches-2")
VARIANTS = (
    ("x-conv", "convolutional manager"),
    ("x-conv-border", "convolutional manager, border fill (colour: Euclidean graph)"),
    ("x-conv-gs2", "convolutional manager, graph start (2 of 8 epochs)"),
    ("x-conv-gs4", "convolutional manager, graph start (4 of 8 epochs)"),
    ("x-conv-border-gs2", "convolutional manager, border fill (colour: Euclidean graph), graph start (2 of 8)"),
    ("x-mlp-gs2", "MLP manager, graph start (2 of 8)"),
    ("x-kinds", ("the kinds decide (manager, graph distance), border fill: the default of 4b36ef0 (for grey "
                "images the same computation as the default now)")),
    ("x-kinds-10seeds", "the same, 10 seeds"),
    ("x-sl-entropy", ("the same, and self-labelling keeps the routing spread with weight 5 (run as "
                     "`train.self_label_entropy=true`, since renamed `train.self_label_entropy_weight=5`)")),
    ("x-sl-entropy-10seeds", "the same, 10 seeds"),
    ("x-sl-entropy1", ("the same with weight 1 (`train.self_label_entropy_weight=1`; for colour images the "
                      "same computation as the default now)")),
    ("x-sl-entropy1-10seeds", "the same, 10 seeds"),
    ("x-conv-border-long", "convolutional manager, border fill, 4 times the images seen (stopped after 2 seeds)"),
    ("x-budget2", "the default as it ships, twice the images seen (`train.budget_images=960000`), seeds 0-4"),
    ("x-slthr95", "the same, self-labelling from routings above 0.95 instead of 0.99, seeds 0-4"),
    ("x-nn20", "the same, 20 neighbours instead of 10, seeds 0-4"),
    ("x-ent2", "the same, the consistency phase's spread weight 2 instead of 5, seeds 0-4"),
    ("x-mlp", "the same with the dense manager (`model.manager_network=mlp`), seeds 0-4"),
    ("x-lat5", "the same with 5 latent dimensions instead of 10, seeds 0-4"),
    ("x-one-training", ("the default before restarts: one training per run (a843eaf and 414ecad; as "
                        "`train.restarts=1` now)")),
)


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"robust-{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _accs(d: dict[str, Any] | None) -> list[float]:
    return [r["acc"] for r in d["runs"]] if d else []


def _cell(accs: list[float]) -> str:
    if not accs:
        return "not run"
    if len(accs) == 1:
        return f"{accs[0]:.3f} (1 seed)"
    return f"{statistics.mean(accs):.3f} +/- {statistics.stdev(accs):.3f} (worst {min(accs):.3f})"


def _verdict(model: list[float], baselines: list[list[float]]) -> str:
    best = max((statistics.mean(b) for b in baselines if b), default=None)
    if not model or best is None:
        return "-"
    return "at or above" if statistics.mean(model) >= best else f"below by {best - statistics.mean(model):.3f}"


def robust() -> str:
    header = ["set", "images", "mixvae default (this version)", "clusters it used, by seed", "default before",
              "k-means on pixels",
              "spectral on mixvae's graph", "mean vs the better baseline"]
    rows = []
    for name in SETS:
        model, before = _load(f"{name}-mixvae"), _load(f"{name}-mixvae-main")
        kmeans, spectral = _load(f"{name}-kmeans"), _load(f"{name}-spectral")
        known = next((d for d in (model, kmeans, spectral, before) if d), None)
        if known is None:
            continue
        used = ", ".join(f"{r['clusters_used']} of {known['k']}" for r in model["runs"]) if model else "-"
        rows.append([f"`{name}`: {known['description']}", f"{known['n']:,}", _cell(_accs(model)), used,
                     _cell(_accs(before)),
                     _cell(_accs(kmeans)), _cell(_accs(spectral)),
                     _verdict(_accs(model), [_accs(kmeans), _accs(spectral)])])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n" + "\n".join(lines) + "\n"


def robust_variants() -> str:
    header = ["variant (over the default before)", *SETS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for tag, what in VARIANTS:
        cells = [_cell(_accs(_load(f"{name}-mixvae-{tag}"))) for name in SETS]
        lines.append("| " + " | ".join([what, *cells]) + " |")
    return "\n" + "\n".join(lines) + "\n"


def robust_values() -> dict[str, str]:
    below = []
    for name in SETS:
        model = _accs(_load(f"{name}-mixvae"))
        if not model:
            continue
        verdict = _verdict(model, [_accs(_load(f"{name}-kmeans")), _accs(_load(f"{name}-spectral"))])
        if verdict == "-":
            continue
        if verdict != "at or above":
            below.append(f"`{name}` ({verdict})")
    measured = [n for n in SETS if _load(f"{n}-mixvae") and (_load(f"{n}-kmeans") or _load(f"{n}-spectral"))]
    machine = next((d["machine"] for n in SETS if (d := _load(f"{n}-mixvae"))), "not run")
    return {
        "robust.verdict": (f"at or above the better of k-means and spectral clustering on all {len(measured)} sets"
                           if not below else f"below the better baseline on {', '.join(below)}"),
        "robust.machine": machine,
    }


# the default as it ships, on MNIST's 60,000 training images: `make bench` (quality.py --tag bench, all seeds in
# one file, the code at hand) when it has run, else the earlier runs (quality.py --tag kinds[-seedsA-B])
MNIST_FILES = (("quality-mnist-default-bench.json",) if (RESULTS / "quality-mnist-default-bench.json").exists() else
               ("quality-mnist-default-kinds-sle0.json", "quality-mnist-default-kinds-seeds1-2.json",
                "quality-mnist-default-kinds-seeds3-5.json", "quality-mnist-default-kinds-seeds6-7.json",
                "quality-mnist-default-kinds-seeds8-9.json"))


def mnist_kinds_values() -> dict[str, str]:
    """The shipping default on MNIST (train on the training split, score the test split)."""
    found = [json.loads((RESULTS / name).read_text()) for name in MNIST_FILES if (RESULTS / name).exists()]
    if not found:
        return {"mnist.kinds.seeds": "0", **{f"mnist.kinds.{key}": "not run"
                                             for key in ("acc", "nmi", "ari", "generation", "minutes", "machine")}}
    rs = sorted((r for d in found for r in d["runs"]), key=lambda r: r["seed"])
    acc = [r["acc"] for r in rs]
    experts = [a for r in rs for a in r["generation"]["per_expert"]]
    means = [r["generation"]["mean"] for r in rs]
    return {
        "mnist.kinds.seeds": f"{len(rs)} (seeds {', '.join(str(r['seed']) for r in rs)})",
        "mnist.kinds.acc": _cell(acc),
        "mnist.kinds.nmi": _cell([r["nmi"] for r in rs]),
        "mnist.kinds.ari": _cell([r["ari"] for r in rs]),
        "mnist.kinds.generation": (f"mean over experts {', '.join(f'{m:.3f}' for m in means)} by seed; worst "
                                   f"expert {min(experts):.3f}; {sum(a < 0.90 for a in experts)} of {len(experts)} "
                                   f"experts below 0.90"),
        "mnist.kinds.minutes": ", ".join(f"{r['seconds'] / 60:.0f}" for r in rs),
        "mnist.kinds.machine": "; ".join(sorted({d["machine"] for d in found})),
    }


FASHION_FILES = (("quality-fashion-mnist-default-bench.json",)
                 if (RESULTS / "quality-fashion-mnist-default-bench.json").exists()
                 else ("quality-fashion-mnist-default-kinds.json",))


def fashion_kinds_values() -> dict[str, str]:
    """The shipping default on Fashion-MNIST (train on the 60,000 training images, score the test split)."""
    found = [json.loads((RESULTS / name).read_text()) for name in FASHION_FILES if (RESULTS / name).exists()]
    rs = sorted((r for d in found for r in d["runs"]), key=lambda r: r["seed"])
    if not rs:
        return {f"fashion.kinds.{key}": "not run" for key in ("seeds", "acc", "nmi", "minutes", "machine", "code")}
    return {
        "fashion.kinds.seeds": f"{len(rs)} (seeds {', '.join(str(r['seed']) for r in rs)})",
        "fashion.kinds.acc": _cell([r["acc"] for r in rs]),
        "fashion.kinds.nmi": _cell([r["nmi"] for r in rs]),
        "fashion.kinds.minutes": ", ".join(f"{r['seconds'] / 60:.0f}" for r in rs),
        "fashion.kinds.machine": "; ".join(sorted({d["machine"] for d in found})),
        "fashion.kinds.code": "; ".join(sorted({str(d.get("code", "not recorded")) for d in found})),
    }


def restart_choice() -> str:
    """Each training of the default's restarts scored alone (benchmarks/restart_choice.py): does the
    lowest cut keep the better training?"""
    header = ["set", "restarts per seed", "seeds", "Spearman (cut, ACC) over every training", "ACC kept by the cut",
              "ACC of every training", "ACC of the best training per seed (known only with labels)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in SETS:
        path = RESULTS / f"restart-choice-{name}.json"
        if not path.exists():
            continue
        d = json.loads(path.read_text())
        every = [t["acc"] for s in d["seeds"] for t in s["trainings"]]
        best = [max(t["acc"] for t in s["trainings"]) for s in d["seeds"]]
        lines.append("| " + " | ".join([f"`{name}`", str(d["restarts"]), str(len(d["seeds"])),
                                         f"{d['spearman_cut_acc']:.2f}", _cell([s["kept_acc"] for s in d["seeds"]]),
                                         _cell(every), _cell(best)]) + " |")
    return "\n" + "\n".join(lines) + "\n"


TABLES: dict[str, Callable[[], str]] = {"robust": robust, "robust-variants": robust_variants,
                                        "restart-choice": restart_choice}
VALUES: tuple[Callable[[], dict[str, str]], ...] = (robust_values, mnist_kinds_values, fashion_kinds_values)
