"""Training: the one loop, with exact resume, per-epoch records and checkpoints.

``fit`` reads top to bottom: build the model and optimiser (or restore them), then for each epoch
draw the data order, take optimiser steps on batches, evaluate, write records and a checkpoint.
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

from mixvae import checkpoint as ckpt
from mixvae import objectives, refine
from mixvae.config import ConfigError, RunConfig
from mixvae.augment import random_affine
from mixvae.model import MixtureModule

__all__ = ["fit", "make_adam", "History", "TrainingError", "images_to_tensor", "predict_proba", "nearest_neighbors",
           "cosine_neighbors", "read_rows"]


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
    n = len(images)
    total = torch.zeros(int(np.prod(images.shape[1:])), dtype=torch.float64)
    for start in range(0, n, chunk):  # chunks, so that a memory-mapped array is never read whole
        total += images_to_tensor(images, start, start + chunk).sum(0, dtype=torch.float64)
    mean = (total / n).float()  # (D,)
    dims = min(dims, total.shape[0], n)
    gen = torch.Generator().manual_seed(0)
    pick = torch.randperm(n, generator=gen)[:10000].numpy()
    sample = torch.cat([torch.from_numpy(read_rows(images, pick[s:s + chunk])).reshape(-1, total.shape[0])
                        for s in range(0, len(pick), chunk)]).float().div_(255.0) - mean  # (<= 10000, D)
    _, _, v = torch.linalg.svd(sample, full_matrices=False)  # principal axes from a sample
    e = torch.cat([(images_to_tensor(images, s, s + chunk) - mean) @ v[:dims].t()
                   for s in range(0, n, chunk)])  # (N, dims)
    return cosine_neighbors(e, k, chunk)


def cosine_neighbors(e: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Indices (N, k) of each row's k most cosine-similar other rows of embeddings e (N, d)."""
    e = torch.nn.functional.normalize(e, dim=1)  # cosine similarity: the nearest have the largest e_i . e_j
    sq = (e * e).sum(1)  # (N,)
    out = torch.empty(e.shape[0], k, dtype=torch.long)
    for start in range(0, e.shape[0], chunk):
        d = sq[start:start + chunk, None] - 2 * e[start:start + chunk] @ e.t() + sq[None]  # (c, N)
        rows = torch.arange(start, min(start + chunk, e.shape[0]))
        d[rows - start, rows] = float("inf")  # not its own neighbour
        out[start:start + chunk] = d.topk(k, dim=1, largest=False).indices
    return out


def read_rows(images: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Images idx (n,) of an (N, H, W) array, in memory or on disk -> uint8 (n, H, W).

    Rows are read in increasing order, which keeps reads from a memory map close to sequential.
    """
    order = np.argsort(idx, kind="stable")
    rows = np.empty((len(idx), *images.shape[1:]), np.uint8)
    rows[order] = np.asarray(images[idx[order]])
    return rows


class _GatherRows(torch.autograd.Function):
    """Every process's rows of t (B, ...) -> (world * B, ...), differentiably (all processes' B equal).

    Every process computes the same batch-level term on the gathered rows. In backward each one
    receives the sum over processes of the gradient with respect to its own rows, that is world
    times its one-process share; DistributedDataParallel then averages over the processes, so the
    term gets exactly its one-process gradient.
    """

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        dist = torch.distributed
        ctx.rank, ctx.rows = dist.get_rank(), t.shape[0]
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts, 0)  # (world * B, ...)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        torch.distributed.all_reduce(grad)  # sum over processes
        return grad.narrow(0, ctx.rank * ctx.rows, ctx.rows)  # (B, ...)


def _gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Every process's rows of t (B, ...) -> (world * B, ...), with gradients (see _GatherRows)."""
    return _GatherRows.apply(t)


def _barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


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
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    compile_loss: bool = False,
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
    on_epoch
        Called on the main process with each finished epoch's record (a dict of numbers).
    compile_loss
        Run the loss through ``torch.compile`` (fused kernels; the first step pays the compile
        time); when compiling fails, training goes on without it after a one-line message.

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

    if tc.batch_size % world:
        raise ConfigError(f"batch_size={tc.batch_size} is invalid for {world} processes: expected a multiple of {world}")

    torch.manual_seed(tc.seed)
    module = MixtureModule(mc).to(device)
    model: torch.nn.Module = module
    gather = None
    if world > 1:
        if device.type == "cuda":  # batch norm over the global batch (SyncBatchNorm needs GPUs)
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        # every parameter gets a gradient in every step, except the manager's when it learns only
        # from a regulariser that is not on yet (route_by_loss = False)
        model = torch.nn.parallel.DistributedDataParallel(module, find_unused_parameters=not mc.route_by_loss)
        gather = _gather_rows
    optimizer = make_adam(module.parameters(), tc.lr)
    forward = _Compiled(model, (log or _to_stderr) if main else None) if compile_loss else model
    gen = torch.Generator().manual_seed(tc.seed + 1)  # reparameterisation noise, neighbour picks
    z_fixed = torch.randn(1, mc.latent_dim, generator=torch.Generator().manual_seed(tc.seed + 2))
    history = History()
    frames: list[torch.Tensor] = []  # progress figure: per epoch, one z decoded by every expert
    epoch, step, step_in_epoch = 0, 0, 0
    self_labels: tuple[torch.Tensor, torch.Tensor] | None = None  # (N,) targets (-1: none), (K,) weights
    resplits = 0  # expert pairs re-split when this epoch's self-labelling targets were made

    if resume and run_dir is not None:
        path, state = ckpt.load_latest_checkpoint(run_dir, warn=lambda m: warnings.warn(m, RuntimeWarning, 2))
        ckpt._load_state(module, state["model"], path)
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as e:
            raise ckpt.CheckpointError(f"{path} holds an optimiser state that does not fit this model ({e})") from None
        try:
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            epoch, step, step_in_epoch = int(state["epoch"]), int(state["step"]), int(state["step_in_epoch"])
            history = History(json.loads(state["history"]))
            frames = list(state["frames"]) if len(state["frames"]) else []
            if len(state.get("self_labels", ())):
                self_labels = (state["self_labels"], state["self_label_weight"])
            resplits = int(state.get("resplits", 0))
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ckpt.CheckpointError(f"{path} is not a complete mixvae checkpoint ({type(e).__name__})") from None
        if main:
            ckpt.remove_temp_files(run_dir)  # left by a run killed in the middle of a write
        if log and main:
            log(f"resumed from {path} at epoch {epoch + 1}, step {step}")

    neighbors = None
    if tc.router_reg == "neighbors" and n > 1:
        t0 = time.perf_counter()
        k = min(tc.router_neighbors, n - 1)  # a tiny dataset has fewer neighbours to offer
        neighbors = nearest_neighbors(train_images, k, tc.router_pca)
        if log and main:
            log(f"found {k} nearest neighbours of {n} images in {time.perf_counter() - t0:.1f}s")

    # a memory map (or any array-like that reads on access) stays on disk; batches read their rows
    in_memory = torch.is_tensor(train_images) or type(train_images) is np.ndarray
    train_u8 = torch.as_tensor(train_images) if in_memory else train_images
    # Each process takes batch_size / world images per step, so a step sees batch_size images in
    # all. The sampler deals the shuffled indices out in turn (process r gets positions r, r +
    # world, ...) and pads them to a multiple of world by repeating the first few indices.
    per_rank = tc.batch_size // world
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=tc.seed)

    def mine(t: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """This process's share of a draw made for the global batch, on the device."""
        return t.index_select(dim, torch.arange(rank, t.shape[dim], world)).to(device)

    def batch(idx: np.ndarray) -> torch.Tensor:
        if in_memory:
            x = train_u8[torch.from_numpy(idx)]
        else:
            x = torch.from_numpy(read_rows(train_u8, idx))
        x = x.reshape(len(idx), -1).to(device).float().div_(255.0)  # (B, D)
        if tc.binarize:  # uniforms drawn for the global batch, so every process count binarises alike
            x = (mine(torch.rand(len(idx) * world, x.shape[1], generator=gen)) < x).float()
        return x

    def view(x: torch.Tensor) -> torch.Tensor:
        """A randomly deformed copy of each image, for the routing regularisers (or x itself)."""
        if not tc.augment:
            return x
        u = mine(torch.rand(len(x) * world, 5, generator=gen))  # drawn for the global batch, like the noise
        return random_affine(x, mc.image_shape, flip=tc.augment_flip, uniforms=u)

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
            "self_labels": self_labels[0] if self_labels is not None else torch.zeros(0),
            "self_label_weight": self_labels[1] if self_labels is not None else torch.zeros(0),
            "resplits": resplits,
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
            self_labelling = neighbors is not None and 0 < tc.self_label_epoch <= epoch
            if self_labelling and (self_labels is None or step_in_epoch == 0):
                self_labels, moves = _self_labels(module, train_u8, tc.self_label_threshold, tc.eval_batch_size,
                                                  device, neighbors, tc.resplit_ratio)
                resplits = len(moves)
                if log and main:
                    for move in moves:
                        log(f"epoch {epoch + 1}: {move}")
            bar = _progress_bar(len(batches), step_in_epoch, f"epoch {epoch + 1}/{tc.epochs}", progress)
            t0 = time.perf_counter()
            sums: dict[str, float] = {}
            counted = 0
            for i in range(step_in_epoch, len(batches)):
                idx = batches[i]
                x = batch(idx)
                # noise for the global batch; this process's images sit at positions rank::world
                noise = mine(torch.randn(mc.n_components, len(idx) * world, mc.latent_dim, generator=gen), 1)
                x_views = None
                regularise = neighbors is not None and epoch >= tc.router_warmup_epochs
                if regularise and self_labelling:
                    x_views = view(x)  # (B, D)
                elif regularise:
                    pick = torch.randint(neighbors.shape[1], (len(idx) * world,), generator=gen)[rank::world]
                    x_nb = batch(neighbors[torch.from_numpy(idx), pick].numpy())  # (B, D)
                    x_views = torch.cat([view(x), view(x_nb)])  # (2B, D)
                out = forward(x, noise, x_views, gather)  # the one forward call, through DDP when world > 1
                loss = out.loss
                if regularise and self_labelling:
                    targets, weight = self_labels
                    reg = objectives.self_label(out.view_logits, targets[torch.from_numpy(idx)].to(device),
                                                weight.to(device))
                    loss = loss + tc.router_weight * reg
                elif regularise:
                    p_x, p_nb = out.view_logits.softmax(-1).chunk(2)  # (B, K) each
                    reg = tc.router_weight * objectives.neighbor_consistency(p_x, p_nb)
                    reg = reg - tc.router_entropy * objectives.marginal_entropy(p_x if gather is None else gather(p_x))
                    loss = loss + reg
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"the loss became {loss.item()} at epoch {epoch + 1}, step {i + 1} (global step {step + 1}); "
                        f"the last good checkpoint is kept; try a lower learning rate or --detect-anomaly"
                    )
                optimizer.zero_grad(set_to_none=True)
                try:
                    loss.backward()
                except RuntimeError as e:  # --detect-anomaly names the operation that made NaN
                    if not detect_anomaly:
                        raise
                    raise TrainingError(f"{_where(epoch, i, step)}: {str(e).splitlines()[0]}") from None
                _check_finite("gradients", [p.grad for p in module.parameters() if p.grad is not None],
                              epoch, i, step)  # a bad step is never taken, so never saved
                optimizer.step()
                _check_finite("parameters", list(module.parameters()), epoch, i, step)
                step += 1
                for k, v in out.parts().items():
                    sums[k] = sums.get(k, 0.0) + v
                counted += 1
                if bar is not None:
                    bar.update(1)
                    if i % 10 == 0:
                        bar.set_postfix(loss=f"{loss.item():.2f}")
                stop_now = max_steps is not None and step >= max_steps
                if (tc.checkpoint_every and step % tc.checkpoint_every == 0) or stop_now:
                    done = i + 1 == len(batches)
                    if done:
                        break  # the end-of-epoch checkpoint below covers it
                    write_state(epoch, step, i + 1)
                    if stop_now:
                        _barrier(world)  # the checkpoint is complete before any process exits
                        if bar is not None:
                            bar.close()
                        return module, history
            if bar is not None:
                bar.close()
            seconds = time.perf_counter() - t0
            if world > 1:  # per-process means of equal-sized batches -> means over the global batches
                keys = sorted(sums)
                total = torch.tensor([sums[k] for k in keys], dtype=torch.float64)
                torch.distributed.all_reduce(total)
                sums = dict(zip(keys, (total / world).tolist()))
            record = {"epoch": epoch + 1, "step": step, "seconds": round(seconds, 3)}
            if self_labelling:
                record["resplits"] = resplits
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
                if on_epoch is not None:  # e.g. a TensorBoard writer
                    on_epoch(record)
            _barrier(world)  # the others wait while process 0 evaluates and writes the checkpoint
            if max_steps is not None and step >= max_steps:
                break
    return module, history


def _self_labels(module: MixtureModule, images, threshold: float, batch_size: int, device,
                 neighbors: torch.Tensor | None = None, resplit_ratio: float = 0.0
                 ) -> tuple[tuple[torch.Tensor, torch.Tensor], list[refine.Resplit]]:
    """Targets for self-labelling: each training image's expert where the manager is at least
    ``threshold`` sure (else -1), and per-expert weights inversely proportional to their counts.

    With ``resplit_ratio`` > 0, the images of expert pairs that :func:`mixvae.refine.resplit_pairs`
    re-splits on the neighbour graph all get their new expert as the target."""
    probs = torch.from_numpy(predict_proba(module, images, batch_size, device))  # (N, K)
    conf, expert = probs.max(1)
    targets = torch.where(conf > threshold, expert, torch.full_like(expert, -1))  # (N,)
    moves: list[refine.Resplit] = []
    if resplit_ratio > 0 and neighbors is not None:
        new, changed, moves = refine.resplit_pairs(expert.numpy(), neighbors.numpy(), probs.shape[1],
                                                   ratio=resplit_ratio)
        changed = torch.from_numpy(changed)
        targets[changed] = torch.from_numpy(new)[changed]
    counts = torch.bincount(targets[targets >= 0], minlength=probs.shape[1]).float()  # (K,)
    weight = 1.0 / counts.clamp_min(1.0)
    return (targets, weight / weight.sum() * probs.shape[1]), moves


def _where(epoch: int, i: int, step: int) -> str:
    return f"at epoch {epoch + 1}, step {i + 1} (global step {step + 1})"


def make_adam(params, lr: float) -> torch.optim.Adam:
    """Adam with the fused update (one kernel for all parameters) where torch has it for their
    device, else the usual one; the two take the same steps up to rounding."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(params, lr=lr)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Compiled:
    """``torch.compile(model)`` that falls back to ``model`` itself, with a one-line message, when
    compiling fails; the first call's time (mostly compiling) is logged."""

    def __init__(self, model: torch.nn.Module, log: Callable[[str], None] | None):
        self.model, self.log = model, log
        self.compiled: Any = None
        self.first = True
        try:
            self.compiled = torch.compile(model)
        except Exception as e:  # noqa: BLE001 - any failure means: run without compiling
            self._fall_back(e)

    def _fall_back(self, e: BaseException) -> None:
        self.compiled = None
        if self.log:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            self.log(f"torch.compile is unavailable here ({type(e).__name__}: {first}); training without it")

    def __call__(self, *args: Any) -> Any:
        if self.compiled is not None:
            t0 = time.perf_counter()
            try:
                out = self.compiled(*args)
            except Exception as e:  # noqa: BLE001
                self._fall_back(e)
            else:
                if self.first and self.log:
                    self.log(f"compiled the loss in {time.perf_counter() - t0:.1f}s")
                self.first = False
                return out
        return self.model(*args)


def _check_finite(what: str, tensors: list[torch.Tensor], epoch: int, i: int, step: int) -> None:
    """Raise TrainingError, naming the epoch and step, when any of ``tensors`` holds NaN or inf.

    A NaN or inf anywhere makes the tensor's sum NaN or inf, so one summing pass per tensor finds
    it (isfinite().all() takes several passes: it made up a third of a seed training step).
    """
    if tensors and not bool(torch.stack([t.detach().sum() for t in tensors]).isfinite().all()):
        raise TrainingError(
            f"the {what} became NaN or infinite {_where(epoch, i, step)}; the last good checkpoint is kept; "
            f"try a lower learning rate or --detect-anomaly"
        )


def _evaluate(module: MixtureModule, images, labels, batch_size: int, device) -> dict[str, Any]:
    if images is None:
        return {}
    probs = predict_proba(module, images, batch_size, device)
    from mixvae.metrics import clustering_report  # scikit-learn: only process 0 evaluates

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
