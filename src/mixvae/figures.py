"""The figures of a run folder, written at the end of training and by ``mixvae report``.

``write_figures`` draws, from a trained model, its per-epoch records and (optionally) held-out
images: curves.png, usage.png, samples.png, reconstructions.png, traversals.png and, when labels
are given, confusion.png. progress.png is written by the training loop itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixvae import memory, plots
from mixvae.checkpoint import load_run
from mixvae.data import DataError, folder_class_names, load_split_pair
from mixvae.inference import images_to_tensor, predict_proba
from mixvae.metrics import clustering_report
from mixvae.model import MixtureModule
from mixvae.rows import Subset
from mixvae.runfolder import read_metrics

__all__ = ["FIGURES", "FIGURE_IMAGES", "figures_for_run", "reconstruction_images", "traversal_images", "write_figures"]

FIGURE_IMAGES = 20_000  # the confusion and expert names come from at most this many images (a fixed sample)

# file name -> what it shows, in the order a report presents them
FIGURES = {
    "curves.png": "Training loss and test clustering per epoch",
    "usage.png": "Share of test images routed to each expert, per epoch",
    "samples.png": "Samples from each expert (one row per expert)",
    "reconstructions.png": "Test images and their reconstruction by the expert they are routed to",
    "traversals.png": "Latent traversals: each expert's most active latent dimension from -2.5 to 2.5",
    "confusion.png": "Experts against true classes (labels used only to evaluate)",
    "progress.png": "One fixed z per epoch, decoded by every expert",
}


@torch.no_grad()
def reconstruction_images(module: MixtureModule, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image x (B, D) decoded from its latent mean by its routed expert -> ((B, D), experts (B,))."""
    mu, _ = module.encode(x)  # (K, B, L)
    k = module.manager_logits(x).argmax(-1)  # (B,)
    rec = module.decode(mu)  # (K, B, D)
    return rec[k, torch.arange(x.shape[0], device=x.device)], k


@torch.no_grad()
def traversal_images(module: MixtureModule, steps: int = 9, span: float = 2.5) -> tuple[torch.Tensor, torch.Tensor]:
    """For each expert, walk its most active latent dimension (the one whose +-2 changes the decoded
    image most) from -span to span, others 0 -> (images (K, steps, D), dims (K,))."""
    c = module.config
    K, L = c.n_components, c.latent_dim
    dev = next(module.parameters()).device
    eye = torch.eye(L, device=dev)  # (L, L)
    probe = torch.cat([2 * eye, -2 * eye]).expand(K, 2 * L, L)  # (K, 2L, L)
    dec = module.decode(probe)  # (K, 2L, D)
    change = (dec[:, :L] - dec[:, L:]).abs().mean(-1)  # (K, L)
    dims = change.argmax(-1)  # (K,)
    vals = torch.linspace(-span, span, steps, device=dev)  # (S,)
    z = torch.zeros(K, steps, L, device=dev)
    z[torch.arange(K, device=dev)[:, None], torch.arange(steps, device=dev)[None], dims[:, None]] = vals
    return module.decode(z), dims  # (K, S, D), (K,)


def _figure_sample(n: int, seed: int) -> np.ndarray | None:
    """Sorted indices of the images whose routing the figures show: all up to ``FIGURE_IMAGES``,
    else a fixed random sample of that many (None: all of them)."""
    if n <= FIGURE_IMAGES:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, FIGURE_IMAGES, replace=False))


@memory.stage("figures")
def write_figures(
    run_dir: Path,
    module: MixtureModule,
    records: list[dict[str, Any]],
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    per_expert: int = 10,
    seed: int = 0,
    class_names: list[str] | None = None,
) -> list[Path]:
    """Write the run's figures into ``run_dir``; return the paths written.

    ``images`` uint8 (N, H, W) are held-out images (reconstructions, confusion); ``labels``, when
    given, are used only for the confusion matrix and to name the experts by matched class;
    ``class_names`` (indexed by label) name the classes, e.g. an image folder's sub-folders.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    c = module.config
    K, shape = c.n_components, c.array_shape
    dev = next(module.parameters()).device
    was_training = module.training
    module.eval()
    written = []
    if records:
        written.append(plots.curves_figure(records, run_dir / "curves.png"))
        written.append(plots.usage_figure(records, run_dir / "usage.png"))
    names = [f"expert {k}" for k in range(K)]
    if images is not None and len(images):
        pick = _figure_sample(len(images), seed)  # the confusion of a fixed sample: bounded time and memory
        shown = images if pick is None else Subset(images, pick)
        probs = predict_proba(module, shown, device=dev)  # (n, K)
        rep = clustering_report(labels if labels is None or pick is None else np.asarray(labels)[pick], probs)
        if labels is not None:
            names = [f"expert {k}: {class_names[m] if class_names else m}" for k, m in enumerate(rep["matched_class"])]
            written.append(plots.confusion_figure(np.array(rep["confusion"]), run_dir / "confusion.png",
                                                  rep["matched_class"], class_names))
        n = min(16, len(images))
        x = images_to_tensor(images, 0, n).to(dev)  # (n, D)
        rec, k = reconstruction_images(module, x)
        grid = torch.stack([x, rec]).cpu().numpy()  # (2, n, D)
        written.append(plots.save_grid(plots.image_grid(grid, shape), run_dir / "reconstructions.png",
                                        ["image", "reconstruction"], "reconstructed by the routed expert",
                                        [f"E{int(e)}" for e in k]))
    gen = torch.Generator().manual_seed(seed)
    experts = torch.arange(K, device="cpu").repeat_interleave(per_expert)  # (K * n,)
    samples = module.sample(K * per_expert, experts, generator=gen).cpu().numpy()
    written.append(plots.sample_grid(samples.reshape(K, per_expert, -1), shape, run_dir / "samples.png", names,
                                     f"{per_expert} samples per expert"))
    trav, dims = traversal_images(module)
    written.append(plots.save_grid(plots.image_grid(trav.cpu().numpy(), shape), run_dir / "traversals.png",
                                    [f"{n} (z{int(d)})" for n, d in zip(names, dims)],
                                    "latent traversal, z from -2.5 to 2.5"))
    module.train(was_training)
    return written


def figures_for_run(run_dir: Path, device: str = "cpu") -> list[Path]:
    """Load a run folder's model, records and held-out data, and write its figures."""

    module, cfg = load_run(run_dir, device)
    records = read_metrics(run_dir)
    try:
        # a one-channel model (whatever its run's grayscale setting) was trained on grayscale images
        grayscale = cfg.grayscale or cfg.model.channels == 1
        train, test = load_split_pair(cfg.data, image_size=cfg.image_size, grayscale=grayscale)
        split = test if test is not None else train
        images, labels = split.images, split.labels
    except DataError:  # the data has moved: draw what needs no data
        images, labels = None, None
    if images is not None and (tuple(images.shape[1:3]) != tuple(cfg.model.image_shape)
                               or (images.shape[3] if images.ndim == 4 else 1) != cfg.model.channels):
        images, labels = None, None
    return write_figures(run_dir, module, records, images, labels, class_names=folder_class_names(cfg.data))
