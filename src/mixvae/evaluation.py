"""Evaluating a model: the per-epoch test metrics of training and a run's ``eval.json``.

Labels are used here only to report ACC/NMI/ARI, never to train or to choose anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixvae import runfolder
from mixvae.inference import log_likelihood, predict_proba
from mixvae.model import MixtureModule

__all__ = ["EvaluationError", "epoch_metrics", "evaluate_run"]


class EvaluationError(ValueError):
    """The data does not fit the run (for example images of another size)."""


def epoch_metrics(module: MixtureModule, images: Any, labels: np.ndarray | None, batch_size: int,
                  device: torch.device | str) -> dict[str, Any]:
    """The numbers a training record keeps about held-out images: usage, experts used, routing
    entropy and, with labels, test ACC/NMI/ARI."""
    if images is None:
        return {}
    from mixvae.metrics import clustering_report  # scikit-learn: only process 0 evaluates

    rep = clustering_report(labels, predict_proba(module, images, batch_size, device))
    out = {key: rep[key] for key in ("usage", "experts_used", "routing_entropy")}
    for key in ("acc", "nmi", "ari"):
        if key in rep:
            out[f"test_{key}"] = round(rep[key], 5)
    return out


def evaluate_run(run_dir: Path, data: str | None = None, iw_samples: int = 0, iw_images: int | None = None,
                 device: str = "cpu") -> dict[str, Any]:
    """Evaluate a run on its test and train splits (or on ``data``); write ``RUN/eval.json`` and,
    with labels, ``RUN/confusion.png``; return the results.

    With ``iw_samples`` > 0, also a K-sample importance-weighted bound on the log-likelihood of
    the first ``iw_images`` test images (all by default), as :meth:`MixtureVAE.score_samples`
    computes it.
    """
    from mixvae.checkpoint import load_run
    from mixvae.data import folder_class_names, load_split_pair
    from mixvae.metrics import clustering_report
    from mixvae.plots import confusion_figure

    module, cfg = load_run(run_dir, device)
    # a one-channel model (whatever its run's grayscale setting) was trained on grayscale images
    grayscale = cfg.grayscale or cfg.model.channels == 1
    train, test = load_split_pair(data or cfg.data, image_size=cfg.image_size, grayscale=grayscale)
    shape = tuple(int(s) for s in train.images.shape[1:3])
    channels = int(train.images.shape[3]) if train.images.ndim == 4 else 1
    if channels != cfg.model.channels:
        raise EvaluationError(f"the data's images have {channels} channel(s), but the model was trained on "
                              f"{cfg.model.channels}")
    if shape != tuple(cfg.model.image_shape):
        raise EvaluationError(f"the data's images are {shape}, but the model was trained on "
                              f"{tuple(cfg.model.image_shape)}")
    result: dict[str, Any] = {"run": str(run_dir), "data": data or cfg.data}
    names = folder_class_names(data or cfg.data)
    if names is not None:
        result["class_names"] = names  # labels index them: the sub-folder names of an image folder
    for split, d in (("test", test), ("train", train)):
        if d is not None:
            result[split] = clustering_report(d.labels, predict_proba(module, d.images, device=device))
    if iw_samples:
        d = test if test is not None else train
        n = min(iw_images or len(d), len(d))
        ll = log_likelihood(module, d.images, iw_samples, binarize=cfg.train.binarize, stop=n, device=device)
        result["log_likelihood"] = {
            "iw_samples": iw_samples,
            "images": n,
            "split": "test" if test is not None else "train",
            "mean_nats": float(ll.mean()),
            "stderr": float(ll.std(ddof=1) / np.sqrt(len(ll))) if len(ll) > 1 else 0.0,
            "likelihood": cfg.model.likelihood,
            "pixels": ("continuous in [0, 1], not binarised" if not cfg.train.binarize
                       else "binarised once, each pixel 1 with probability its intensity (seed 1)"),
        }
    runfolder.write_eval(run_dir, result)
    main_split = result.get("test") or result.get("train")
    if main_split and "confusion" in main_split:
        confusion_figure(np.array(main_split["confusion"]), Path(run_dir) / "confusion.png",
                         main_split["matched_class"], names)
    return result
