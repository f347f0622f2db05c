"""Evaluating a model: the per-epoch test metrics of training and a run's ``eval.json``.

Labels are used here only to report ACC/NMI/ARI, never to train or to choose anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixvae import memory, plots, runfolder
from mixvae.checkpoint import load_run
from mixvae.inference import log_likelihood, predict_proba
from mixvae.kinds import kind_of
from mixvae.kinds.base import EvaluationError
from mixvae.metrics import clustering_report
from mixvae.model import MixtureModule

__all__ = ["EvaluationError", "epoch_metrics", "evaluate_run"]


def epoch_metrics(module: MixtureModule, images: Any, labels: np.ndarray | None, batch_size: int,
                  device: torch.device | str) -> dict[str, Any]:
    """The numbers a training record keeps about held-out images: usage, experts used, routing
    entropy and, with labels, test ACC/NMI/ARI."""
    if images is None:
        return {}
    rep = clustering_report(labels, predict_proba(module, images, batch_size, device))
    out = {key: rep[key] for key in ("usage", "experts_used", "routing_entropy")}
    for key in ("acc", "nmi", "ari"):
        if key in rep:
            out[f"test_{key}"] = round(rep[key], 5)
    return out


@memory.stage("evaluation")
def evaluate_run(run_dir: Path, data: str | None = None, iw_samples: int = 0, iw_images: int | None = None,
                 device: str = "cpu") -> dict[str, Any]:
    """Evaluate a run on its test and train splits (or on ``data``, images only); write
    ``RUN/eval.json`` and, for images with labels, ``RUN/confusion.png``; return the results.

    With ``iw_samples`` > 0, also a K-sample importance-weighted bound on the log-likelihood of
    the first ``iw_images`` test samples (all by default), as :meth:`MixtureVAE.score_samples`
    computes it: in nats of the data's own units (the kind's Jacobian included).
    """
    module, cfg = load_run(run_dir, device)
    kind = kind_of(cfg.model)
    splits, names = kind.evaluation_splits(cfg, data)
    result: dict[str, Any] = {"run": str(run_dir), "data": data or cfg.data}
    if names is not None:
        result["class_names"] = names  # labels index them: an image folder's sub-folders, a .csv's label column
    for split, (x, y) in splits.items():
        result[split] = clustering_report(y, predict_proba(module, x, device=device))
    if iw_samples:
        split = "test" if "test" in splits else "train"
        x = splits[split][0]
        n = min(iw_images or len(x), len(x))
        ll = log_likelihood(module, x, iw_samples, binarize=cfg.train.binarize, stop=n, device=device)
        ll = ll - kind.log_jacobian(cfg.model)
        result["log_likelihood"] = {
            "iw_samples": iw_samples,
            "images": n,
            "split": split,
            "mean_nats": float(ll.mean()),
            "stderr": float(ll.std(ddof=1) / np.sqrt(len(ll))) if len(ll) > 1 else 0.0,
            **kind.bound(cfg),
        }
    runfolder.write_eval(run_dir, result)
    main_split = result.get("test") or result.get("train")
    if kind.shows_images and main_split and "confusion" in main_split:
        plots.confusion_figure(np.array(main_split["confusion"]), Path(run_dir) / "confusion.png",
                         main_split["matched_class"], names)
    return result
