"""Clustering, generation and density quality of mixvae presets, with reference rows.

Trains a preset for several seeds on a built-in dataset and reports, on the test split:
Hungarian accuracy, NMI, ARI (mean +/- std, worst seed), experts in use, wall time, and
optionally per-expert generation accuracy (a classifier trained on labelled data, used only to
judge samples) and an importance-weighted log-likelihood bound. Labels are used for evaluation
only; no seed or run is picked by them: every seed run is reported.

    python benchmarks/quality.py --data mnist --preset default --seeds 0 1 2 3 4 --gen-eval --kmeans --jobs 2
    python benchmarks/quality.py --data mnist --preset seed --seeds 42 --epochs 15
    python benchmarks/quality.py --data fashion-mnist --preset default --seeds 0 1 2
    python benchmarks/quality.py --data mnist --preset seed --seeds 42 --runs RUNS --resume   # continue stopped runs

Results go to benchmarks/results/quality-<data>-<preset>[-<tag>].json and a markdown table is printed.
``--set train.KEY=VALUE`` changes one setting of the preset (give it a ``--tag``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from mixvae.checkpoint import latest_checkpoint
from mixvae.config import config_from_dict, parse_overrides
from mixvae.config import preset as make_preset
from mixvae.data import load_split_pair, mixvae_home
from mixvae.inference import images_to_tensor, predict_proba
from mixvae.metrics import cluster_accuracy, clustering_report
from mixvae.runfolder import save_config
from mixvae.train import Runtime, fit

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, Python {platform.python_version()}"


# ------------------------------------------------------------------ the judge for generated images
def judge(data: str, train_images: np.ndarray, train_labels: np.ndarray) -> torch.nn.Module:
    """An MLP classifier trained on the labelled training split, cached; used only to evaluate samples."""
    from safetensors.torch import load_file, save_file

    net = torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Dropout(0.2),
        torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Dropout(0.2),
        torch.nn.Linear(512, 10),
    )
    path = mixvae_home() / f"judge-{data}.safetensors"
    if path.exists():
        net.load_state_dict(load_file(path))
        return net.eval()
    torch.manual_seed(0)
    x = images_to_tensor(train_images)
    y = torch.as_tensor(train_labels)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for epoch in range(5):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(net.state_dict(), path)
    return net.eval()


@torch.no_grad()
def generation_accuracy(module, matched: list[int], classifier: torch.nn.Module, n: int = 1000) -> dict:
    """Classify n samples from every expert; accuracy against the expert's matched class."""
    gen = torch.Generator().manual_seed(0)
    per_expert, majority = [], []
    for k, c in enumerate(matched):
        pred = classifier(module.sample(n, k, generator=gen)).argmax(1)
        per_expert.append(float((pred == c).float().mean()))
        majority.append(int(pred.mode().values))
    return {
        "per_expert": [round(a, 4) for a in per_expert],
        "mean": float(np.mean(per_expert)),
        "classes_covered": len(set(majority)),
    }


# ------------------------------------------------------------------ rows
def kmeans_row(test_images: np.ndarray, test_labels: np.ndarray, k: int) -> dict:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    t0 = time.perf_counter()
    x = test_images.reshape(len(test_images), -1).astype(np.float32) / 255.0
    pred = KMeans(k, n_init=10, random_state=0).fit_predict(x)
    return {
        "name": "k-means on raw pixels (scikit-learn, n_init=10, test split)",
        "acc": cluster_accuracy(test_labels, pred, k),
        "nmi": float(normalized_mutual_info_score(test_labels, pred)),
        "ari": float(adjusted_rand_score(test_labels, pred)),
        "seconds": time.perf_counter() - t0,
    }


def run_seed(args, seed: int, train, test, classifier) -> dict:
    cfg = make_preset(args.preset, n_components=args.experts, image_shape=tuple(train.images.shape[1:3]))
    changes = {"seed": seed}
    if args.epochs:
        changes["epochs"] = args.epochs
    cfg = dataclasses.replace(cfg, data=args.data, train=dataclasses.replace(cfg.train, **changes))
    cfg = config_from_dict(parse_overrides(args.set), base=cfg)
    run_dir = Path(args.runs) / f"{args.data}-{_name(args)}-seed{seed}" if args.runs else None
    load_at_start = list(os.getloadavg())  # 1, 5 and 15 minutes: what else the machine ran
    t0 = time.perf_counter()
    resume = bool(args.resume and run_dir is not None and latest_checkpoint(run_dir) is not None)
    module, history = fit(cfg, train.images, test.images, test.labels, run_dir=run_dir, resume=resume,
                          log=(lambda m: print(f"  [seed {seed}] {m}", flush=True)), runtime=Runtime(progress=False))
    seconds = time.perf_counter() - t0
    load_at_end = list(os.getloadavg())
    if run_dir is not None:
        save_config(run_dir, cfg)
    rep = clustering_report(test.labels, predict_proba(module, test.images))
    row = {
        "seed": seed, "acc": rep["acc"], "nmi": rep["nmi"], "ari": rep["ari"],
        "experts_used": rep["experts_used"], "seconds": seconds, "epochs": cfg.train.epochs,
        "load_average": {"start": load_at_start, "end": load_at_end},
        "seconds_per_epoch": float(np.mean(history.column("seconds"))),
        # a resumed run's "seconds" is this process's share; its epochs' own times are in seconds_per_epoch
        "resumed": resume,
        "acc_per_epoch": history.column("test_acc"),
        "resplits": sum(r.get("resplits", 0) for r in history.records),  # label-free repairs made
    }
    if classifier is not None:
        row["generation"] = generation_accuracy(module, rep["matched_class"], classifier)
    if args.iw:
        gen = torch.Generator().manual_seed(0)
        n = min(args.iw_images, len(test.images))
        vals = [module.log_likelihood(images_to_tensor(test.images, s, min(s + 50, n)), args.iw, generator=gen)
                for s in range(0, n, 50)]
        row["log_likelihood"] = {"mean_nats": float(torch.cat(vals).mean()), "iw_samples": args.iw, "images": n,
                                 "likelihood": cfg.model.likelihood}
    return row


def _name(args) -> str:
    return args.preset + (f"-{args.tag}" if args.tag else "")


def summarise(rows: list[dict], key: str) -> str:
    """mean +/- sample std (ddof=1), as BENCHMARKS.md reports them."""
    v = np.array([r[key] for r in rows], dtype=float)
    return f"{v.mean():.4f} +/- {v.std(ddof=1):.4f}" if len(v) > 1 else f"{v[0]:.4f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="mnist")
    p.add_argument("--preset", default="default")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--experts", type=int, default=10)
    p.add_argument("--kmeans", action="store_true", help="add the k-means reference row")
    p.add_argument("--gen-eval", action="store_true", help="judge 1000 samples per expert with a classifier")
    p.add_argument("--iw", type=int, default=0, help="importance samples for the log-likelihood bound")
    p.add_argument("--iw-images", type=int, default=1000)
    p.add_argument("--runs", default=None, help="keep run folders under this folder")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--jobs", type=int, default=1, help="train this many seeds at once, in separate processes")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="change one setting of the preset, as in 'mixvae train --set'")
    p.add_argument("--resume", action="store_true",
                   help="continue each seed's run in --runs from its last checkpoint (exact resume)")
    p.add_argument("--tag", default=None, help="results go to quality-<data>-<preset>-<tag>.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from provenance import fingerprint

    code = fingerprint()  # at the start: the code that runs
    train, test = load_split_pair(args.data)
    classifier = judge(args.data, train.images, train.labels) if args.gen_eval else None
    rows = []
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"quality-{args.data}-{_name(args)}.json"
    pool = (ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                                initializer=torch.set_num_threads, initargs=(args.threads or 1,))
            if args.jobs > 1 else contextlib.nullcontext())
    with pool:
        if args.jobs > 1:  # results still arrive in seed order
            finished = pool.map(run_seed, *zip(*[(args, s, train, test, classifier) for s in args.seeds]))
        else:
            finished = (run_seed(args, s, train, test, classifier) for s in args.seeds)
        for seed, row in zip(args.seeds, finished):
            rows.append(row)
            out.with_suffix(".partial.json").write_text(json.dumps({"runs": rows}, indent=2))  # survives a stop
            print(f"seed {seed}: acc {row['acc']:.4f} nmi {row['nmi']:.4f} ari {row['ari']:.4f} "
                  f"experts {row['experts_used']} {row['seconds']:.0f}s resplits {row['resplits']}"
                  + (f" gen-acc {row['generation']['mean']:.3f} covered {row['generation']['classes_covered']}"
                     if "generation" in row else ""), flush=True)
    result = {
        "data": args.data, "preset": args.preset, "set": args.set, "seeds": args.seeds, "machine": machine(),
        **code,
        "command": "python benchmarks/quality.py " + " ".join(_argv()), "runs": rows,
    }
    if args.kmeans:
        result["kmeans"] = kmeans_row(test.images, test.labels, args.experts)
    out.write_text(json.dumps(result, indent=2))
    out.with_suffix(".partial.json").unlink(missing_ok=True)

    accs = [r["acc"] for r in rows]
    print(f"\n{args.preset} on {args.data} test split, {len(rows)} seed(s), {rows[0]['epochs']} epochs; "
          f"machine: {result['machine']}")
    print("| model | ACC | NMI | ARI | worst ACC | experts used | s / run |")
    print("|---|---|---|---|---|---|---|")
    print(f"| mixvae `{args.preset}` | {summarise(rows, 'acc')} | {summarise(rows, 'nmi')} | {summarise(rows, 'ari')} | "
          f"{min(accs):.4f} | {min(r['experts_used'] for r in rows)}-{max(r['experts_used'] for r in rows)} | "
          f"{np.mean([r['seconds'] for r in rows]):.0f} |")
    if "kmeans" in result:
        k = result["kmeans"]
        print(f"| {k['name']} | {k['acc']:.4f} | {k['nmi']:.4f} | {k['ari']:.4f} | - | - | {k['seconds']:.0f} |")
    if classifier is not None:
        g = [r["generation"]["mean"] for r in rows]
        print(f"\ngeneration accuracy per expert (mean over experts): {np.mean(g):.3f} +/- {np.std(g, ddof=1):.3f}; "
              f"classes covered: {[r['generation']['classes_covered'] for r in rows]}")
    if args.iw:
        ll = [r["log_likelihood"]["mean_nats"] for r in rows]
        print(f"IW bound (k={args.iw}, {args.iw_images} test images): {np.mean(ll):.2f} nats")
    print(f"written {out}")


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]


if __name__ == "__main__":
    main()
