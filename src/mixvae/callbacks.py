"""Per-epoch outputs of training, as callbacks: the summary line, metrics.jsonl, the progress
figure, TensorBoard. Each gets every finished epoch's record on the main process; adding an
output never edits the training loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mixvae import runfolder
from mixvae.plots import progress_figure

if TYPE_CHECKING:
    from mixvae.train import Trainer

__all__ = ["Callback", "MetricsFile", "OnEpoch", "ProgressFigure", "SummaryLine", "TensorBoard", "standard"]

Record = dict[str, Any]


class Callback:
    """The interface: both methods do nothing unless overridden."""

    def on_epoch_end(self, record: Record, trainer: Trainer) -> None:
        pass

    def on_train_end(self, trainer: Trainer) -> None:
        pass


class OnEpoch(Callback):
    """A plain function of each epoch's record as a callback."""

    def __init__(self, fn: Callable[[Record], None]):
        self.fn = fn

    def on_epoch_end(self, record: Record, trainer: Trainer) -> None:
        self.fn(record)


class SummaryLine(Callback):
    """One line per epoch: loss, test ACC/NMI/ARI when known, experts used, seconds."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log

    def on_epoch_end(self, record: Record, trainer: Trainer) -> None:
        self.log(summary(record, trainer.cfg.train.epochs))


def summary(r: Record, epochs: int) -> str:
    parts = [f"epoch {r['epoch']:>3}/{epochs}", f"loss {r.get('loss', math.nan):9.3f}"]
    for key, name in (("test_acc", "acc"), ("test_nmi", "nmi"), ("test_ari", "ari")):
        if key in r:
            parts.append(f"{name} {r[key]:.4f}")
    if "experts_used" in r:
        parts.append(f"experts {r['experts_used']}")
    parts.append(f"{r['seconds']:.1f}s")
    if "host_copies_per_step" in r:  # off the CPU: what each step copied from the host
        parts.append(f"host copies/step {r['host_copies_per_step']:g} ({r['host_bytes_per_step'] / 1024:.0f} KiB"
                     + (", images on the device)" if r.get("data_on_device") else ")"))
    return "  ".join(parts)


class MetricsFile(Callback):
    """``RUN/metrics.jsonl``: every record so far, rewritten atomically after each epoch."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def on_epoch_end(self, record: Record, trainer: Trainer) -> None:
        runfolder.write_metrics(self.run_dir, trainer.state.history.records)


class ProgressFigure(Callback):
    """``RUN/progress.png``: one fixed z per epoch, decoded by every expert."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / runfolder.PROGRESS_FILE

    def on_epoch_end(self, record: Record, trainer: Trainer) -> None:
        progress_figure(torch.stack(trainer.state.frames).numpy(), trainer.cfg.model.array_shape, self.path)


class TensorBoard(Callback):
    """Per-epoch scalars in ``RUN/tensorboard`` (expert usage as usage/E<k>)."""

    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter  # the optional tensorboard extra
        except ImportError:
            raise ImportError("--tensorboard needs the tensorboard package: pip install 'mixvae[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=str(folder))

    def on_epoch_end(self, record: Record, trainer: Trainer) -> None:
        epoch = int(record["epoch"])
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                self.writer.add_scalar(key, value, epoch)
        for k, u in enumerate(record.get("usage") or []):
            self.writer.add_scalar(f"usage/E{k}", u, epoch)
        self.writer.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        self.writer.close()


def standard(run_dir: Path | None, log: Callable[[str], None] | None) -> list[Callback]:
    """The outputs every training has: ``metrics.jsonl`` and ``progress.png`` in ``run_dir`` (none
    without a folder) and the summary line to ``log`` (none when silent)."""
    out: list[Callback] = [MetricsFile(run_dir), ProgressFigure(run_dir)] if run_dir is not None else []
    if log is not None:
        out.append(SummaryLine(log))
    return out
