"""Training: the one loop, with exact resume, per-epoch records and checkpoints.

``fit`` reads top to bottom: build the model and optimiser (or restore them), then for each epoch
draw the data order, take optimiser steps on batches, evaluate, write records and a checkpoint.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

from mixvae import checkpoint as ckpt
from mixvae import objectives
from mixvae.config import RunConfig
from mixvae.metrics import clustering_report
from mixvae.model import MixtureModule

__all__ = ["fit", "History", "TrainingError", "images_to_tensor", "predict_proba", "nearest_neighbors"]


class TrainingError(RuntimeError):
    """Training cannot go on (for example the loss became NaN); the message says where."""


@dataclass
class History:
    """One record per finished epoch: loss parts, test metrics, expert usage, seconds."""

    records: list[dict[str, Any]] = field(default_factory=list)

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]

    def column(self, key: str) -> list[Any]:
        return [r.get(key) for r in self.records]


def images_to_tensor(images: np.ndarray | torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """uint8 images (N, H, W) -> float32 (n, H*W) in [0, 1] for rows start:stop."""
    part = images[start:stop]
    t = torch.as_tensor(np.asarray(part)) if not torch.is_tensor(part) else part
    return t.reshape(t.shape[0], -1).float().div_(255.0)


@torch.no_grad()
def predict_proba(module: MixtureModule, images: np.ndarray, batch_size: int = 1000,
                  device: str | torch.device = "cpu") -> np.ndarray:
    """Routing probabilities q(k|x) for uint8 images (N, H, W) -> (N, K) float32."""
    was_training = module.training
    module.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = images_to_tensor(images, start, start + batch_size).to(device)
        out.append(module.predict_proba(x).float().cpu())
    module.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, module.config.n_components), np.float32)


def nearest_neighbors(images: np.ndarray, k: int, dims: int = 50, chunk: int = 2048) -> torch.Tensor:
    """Indices (N, k) of each image's k nearest other images, by Euclidean distance after PCA to
    ``dims`` dimensions. An unsupervised embedding: no label is involved."""
    x = images_to_tensor(images)  # (N, D)
    x = x - x.mean(0, keepdim=True)
    dims = min(dims, x.shape[1], x.shape[0])
    gen = torch.Generator().manual_seed(0)
    sample = x[torch.randperm(x.shape[0], generator=gen)[:10000]]
    _, _, v = torch.linalg.svd(sample, full_matrices=False)  # principal axes from a sample
    e = x @ v[:dims].t()  # (N, dims)
    sq = (e * e).sum(1)  # (N,)
    out = torch.empty(e.shape[0], k, dtype=torch.long)
    for start in range(0, e.shape[0], chunk):
        d = sq[start:start + chunk, None] - 2 * e[start:start + chunk] @ e.t() + sq[None]  # (c, N)
        rows = torch.arange(start, min(start + chunk, e.shape[0]))
        d[rows - start, rows] = float("inf")  # not its own neighbour
        out[start:start + chunk] = d.topk(k, dim=1, largest=False).indices
    return out


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _progress_bar(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


def fit(
    cfg: RunConfig,
    train_images: np.ndarray,
    test_images: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    run_dir: Path | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = print,
    progress: bool | None = None,
    max_steps: int | None = None,
    detect_anomaly: bool = False,
) -> tuple[MixtureModule, History]:
    """Train a mixture of VAEs on uint8 images (N, H, W).

    Parameters
    ----------
    cfg
        The resolved run configuration.
    train_images, test_images, test_labels
        Training images, and optionally a held-out split; its labels, when given, are used only
        to report ACC/NMI/ARI after each epoch, never to train or to choose anything.
    run_dir
        Where checkpoints, ``metrics.jsonl``, ``model.safetensors`` and figures go; None keeps
        everything in memory.
    resume
        Continue exactly from the newest checkpoint in ``run_dir``.
    max_steps
        Stop after this many optimiser steps in total (a checkpoint is written there).

    Returns
    -------
    (module, history)
    """
    mc, tc = cfg.model, cfg.train
    rank, world = _rank_world()
    main = rank == 0
    device = torch.device(device)
    n = len(train_images)
    if progress is None:
        progress = sys.stderr.isatty()
    progress = progress and main

    torch.manual_seed(tc.seed)
    module = MixtureModule(mc).to(device)
    model = module
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(module)
    optimizer = torch.optim.Adam(module.parameters(), lr=tc.lr)
    gen = torch.Generator().manual_seed(tc.seed + 1)  # reparameterisation noise, neighbour picks
    z_fixed = torch.randn(1, mc.latent_dim, generator=torch.Generator().manual_seed(tc.seed + 2))
    history = History()
    frames: list[torch.Tensor] = []  # progress figure: per epoch, one z decoded by every expert
    epoch, step, step_in_epoch = 0, 0, 0

    if resume and run_dir is not None:
        path = ckpt.latest_checkpoint(run_dir)
        if path is None:
            raise ckpt.CheckpointError(f"{run_dir} holds no checkpoint to resume from")
        state = ckpt.load_checkpoint(path)
        ckpt._load_state(module, state["model"], path)
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as e:
            raise ckpt.CheckpointError(f"{path} holds an optimiser state that does not fit this model ({e})") from None
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        epoch, step, step_in_epoch = int(state["epoch"]), int(state["step"]), int(state["step_in_epoch"])
        history = History(json.loads(state["history"]))
        frames = list(state["frames"]) if len(state["frames"]) else []
        if log and main:
            log(f"resumed from {path} at epoch {epoch + 1}, step {step}")

    neighbors = None
    if tc.router_reg == "neighbors":
        t0 = time.perf_counter()
        neighbors = nearest_neighbors(train_images, tc.router_neighbors, tc.router_pca)
        if log and main:
            log(f"found {tc.router_neighbors} nearest neighbours of {n} images in {time.perf_counter() - t0:.1f}s")

    train_u8 = train_images if isinstance(train_images, np.memmap) else torch.as_tensor(np.asarray(train_images))
    per_rank = max(tc.batch_size // world, 1)
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=tc.seed)

    def batch(idx: np.ndarray) -> torch.Tensor:
        if isinstance(train_u8, np.memmap):
            order = np.argsort(idx)
            rows = np.empty((len(idx), *train_u8.shape[1:]), np.uint8)
            rows[order] = train_u8[idx[order]]  # sorted reads from the memory map
            x = torch.from_numpy(rows)
        else:
            x = train_u8[torch.from_numpy(idx)]
        x = x.reshape(len(idx), -1).to(device).float().div_(255.0)  # (B, D)
        if tc.binarize:
            x = torch.bernoulli(x, generator=None if device.type != "cpu" else gen)
        return x

    def write_state(done_epoch: int, at_step: int, in_epoch: int) -> None:
        if run_dir is None or not main:
            return
        state = {
            "model": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": done_epoch,
            "step": at_step,
            "step_in_epoch": in_epoch,
            "history": json.dumps(history.records),
            "frames": torch.stack(frames) if frames else torch.zeros(0),
            "config": cfg.to_json(),
        }
        ckpt.save_checkpoint(run_dir, at_step, state, keep=tc.keep_checkpoints)
        ckpt.save_weights(Path(run_dir) / ckpt.WEIGHTS_FILE, module, cfg)

    module.train()
    with torch.autograd.set_detect_anomaly(detect_anomaly):
        while epoch < tc.epochs:
            sampler.set_epoch(epoch)
            order = np.fromiter(iter(sampler), dtype=np.int64)
            batches = [order[i:i + per_rank] for i in range(0, len(order), per_rank)]
            bar = _progress_bar(len(batches), step_in_epoch, f"epoch {epoch + 1}/{tc.epochs}", progress)
            t0 = time.perf_counter()
            sums: dict[str, float] = {}
            counted = 0
            for i in range(step_in_epoch, len(batches)):
                idx = batches[i]
                x = batch(idx)
                noise = torch.randn(mc.n_components, len(idx) * world, mc.latent_dim, generator=gen)
                noise = noise[:, rank * len(idx):(rank + 1) * len(idx)].to(device)  # this rank's share
                out = module.loss(x, noise) if world == 1 else _ddp_loss(model, x, noise)
                loss = out.loss
                if neighbors is not None and epoch >= tc.router_warmup_epochs:
                    pick = torch.randint(neighbors.shape[1], (len(idx),), generator=gen)
                    nb = neighbors[torch.from_numpy(idx), pick].numpy()  # (B,)
                    nb_probs = module.route(batch(nb)).softmax(-1)
                    reg = tc.router_weight * objectives.neighbor_consistency(out.probs, nb_probs)
                    reg = reg - tc.router_entropy * objectives.marginal_entropy(out.probs)
                    loss = loss + reg
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"the loss became {float(loss)} at epoch {epoch + 1}, step {i + 1} (global step {step + 1}); "
                        f"the last good checkpoint is kept; try a lower learning rate or --detect-anomaly"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                for k, v in out.parts().items():
                    sums[k] = sums.get(k, 0.0) + v
                counted += 1
                if bar is not None:
                    bar.update(1)
                    if i % 10 == 0:
                        bar.set_postfix(loss=f"{float(loss):.2f}")
                stop_now = max_steps is not None and step >= max_steps
                if (tc.checkpoint_every and step % tc.checkpoint_every == 0) or stop_now:
                    done = i + 1 == len(batches)
                    if done:
                        break  # the end-of-epoch checkpoint below covers it
                    write_state(epoch, step, i + 1)
                    if stop_now:
                        if bar is not None:
                            bar.close()
                        return module, history
            if bar is not None:
                bar.close()
            seconds = time.perf_counter() - t0
            record = {"epoch": epoch + 1, "step": step, "seconds": round(seconds, 3)}
            record.update({k: round(v / max(counted, 1), 5) for k, v in sums.items()})
            if main:
                record.update(_evaluate(module, test_images, test_labels, tc.eval_batch_size, device))
                with torch.no_grad():
                    module.eval()
                    frames.append(module.decode(z_fixed.to(device).expand(mc.n_components, 1, -1))[:, 0].cpu())
                    module.train()
            history.append(record)
            epoch += 1
            step_in_epoch = 0
            if main:
                write_state(epoch, step, 0)
                if run_dir is not None:
                    _write_metrics(Path(run_dir), history)
                    _write_progress(Path(run_dir), frames, mc.image_shape)
                if log:
                    log(_summary(record, tc.epochs))
            if max_steps is not None and step >= max_steps:
                break
    return module, history


def _ddp_loss(model: torch.nn.Module, x: torch.Tensor, noise: torch.Tensor):
    """Run MixtureModule.loss through DistributedDataParallel so gradients are all-reduced."""
    return model(x, noise)


def _evaluate(module: MixtureModule, images, labels, batch_size: int, device) -> dict[str, Any]:
    if images is None:
        return {}
    probs = predict_proba(module, images, batch_size, device)
    rep = clustering_report(labels, probs)
    out = {
        "usage": rep["usage"],
        "experts_used": rep["experts_used"],
        "routing_entropy": rep["routing_entropy"],
    }
    for key in ("acc", "nmi", "ari"):
        if key in rep:
            out[f"test_{key}"] = round(rep[key], 5)
    return out


def _summary(r: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {r['epoch']:>3}/{epochs}", f"loss {r.get('loss', math.nan):9.3f}"]
    for key, name in (("test_acc", "acc"), ("test_nmi", "nmi"), ("test_ari", "ari")):
        if key in r:
            parts.append(f"{name} {r[key]:.4f}")
    if "experts_used" in r:
        parts.append(f"experts {r['experts_used']}")
    parts.append(f"{r['seconds']:.1f}s")
    return "  ".join(parts)


def _write_metrics(run_dir: Path, history: History) -> None:
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in history.records)
    ckpt.atomic_write(run_dir / "metrics.jsonl", text.encode())


def _write_progress(run_dir: Path, frames: list[torch.Tensor], shape: tuple[int, int]) -> None:
    from mixvae.plots import progress_figure

    progress_figure(torch.stack(frames).numpy(), shape, run_dir / "progress.png")
