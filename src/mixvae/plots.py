"""Figures: image grids (samples, reconstructions, the seed-style progress figure), the confusion
matrix, and training curves. Every function writes a PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["confusion_figure", "curves_figure", "image_grid", "progress_figure", "sample_grid", "save_grid", "usage_figure"]


def _plt():
    import matplotlib  # about 0.5 s: only when a figure is drawn, the Agg backend chosen first

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # the same reason as the import above

    return plt


def _finish(fig, path: Path) -> Path:
    """Lay out, write and close a figure."""
    fig.tight_layout()
    fig.savefig(path)
    _plt().close(fig)
    return Path(path)


def image_grid(images: np.ndarray, shape: tuple[int, ...], pad: int = 1) -> np.ndarray:
    """Tile images (rows, cols, D) or (rows, cols, *shape) in [0, 1] into one (R*H, C*W) array, or
    (R*H, C*W, 3) for colour images of ``shape`` (H, W, 3)."""
    rows, cols = images.shape[:2]
    h, w = shape[:2]
    imgs = images.reshape(rows, cols, *shape)
    out = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, *shape[2:]), dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            out[y:y + h, x:x + w] = imgs[r, c]
    return out


def save_grid(grid: np.ndarray, path: Path, row_labels: Sequence[str] | None, title: str | None,
               col_labels: Sequence[str] | None = None, cell: float = 0.45) -> Path:
    plt = _plt()
    h, w = grid.shape[:2]
    fig_w = max(3.0, w / 29 * cell + (0.8 if row_labels else 0.2))
    fig_h = max(1.5, h / 29 * cell + (0.5 if title else 0.2) + (0.3 if col_labels else 0))
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=110)
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")  # an (H, W, 3) grid is drawn in colour
    ax.set_xticks([])
    n_rows = len(row_labels) if row_labels else 0
    if row_labels:
        step = h / n_rows
        ax.set_yticks([step * (i + 0.5) for i in range(n_rows)], list(row_labels), fontsize=7)
    else:
        ax.set_yticks([])
    if col_labels:
        step = w / len(col_labels)
        ax.set_xticks([step * (i + 0.5) for i in range(len(col_labels))], list(col_labels), fontsize=7)
        ax.xaxis.tick_top()
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def progress_figure(frames: np.ndarray, shape: tuple[int, ...], path: Path) -> Path:
    """The seed post's figure: one fixed z per epoch decoded by every expert; frames (E, K, D)."""
    frames = np.asarray(frames)
    E, K = frames.shape[:2]
    shown = np.arange(E) if E <= 40 else np.unique(np.linspace(0, E - 1, 40).round().astype(int))
    labels = [f"epoch {i + 1}" for i in shown]
    return save_grid(image_grid(frames[shown], shape), path, labels, "one z per epoch, decoded by each expert",
                      [f"E{k}" for k in range(K)])


def sample_grid(samples: np.ndarray, shape: tuple[int, ...], path: Path, row_labels: Sequence[str] | None = None,
                title: str | None = None) -> Path:
    """A grid with one row per expert; samples (K, n, D)."""
    return save_grid(image_grid(np.asarray(samples), shape), path, row_labels, title)


def confusion_figure(conf: np.ndarray, path: Path, matched: Sequence[int] | None = None,
                     class_names: Sequence[str] | None = None) -> Path:
    """Confusion matrix, experts (rows, ordered by matched class) x true classes (columns)."""
    plt = _plt()
    conf = np.asarray(conf)
    order = np.argsort(matched, kind="stable") if matched is not None else np.arange(conf.shape[0])
    c = conf[order]
    fig, ax = plt.subplots(figsize=(0.5 * c.shape[1] + 2, 0.45 * c.shape[0] + 1.5), dpi=110)
    ax.imshow(c / np.maximum(c.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(c.shape[0]):
        for j in range(c.shape[1]):
            ax.text(j, i, str(c[i, j]), ha="center", va="center", fontsize=6,
                    color="white" if c[i, j] > 0.5 * max(c[i].sum(), 1) else "black")
    names = list(class_names) if class_names else [str(j) for j in range(c.shape[1])]
    ax.set_xticks(range(c.shape[1]), names, fontsize=7, rotation=45 if class_names else 0)
    ax.set_yticks(range(c.shape[0]), [f"expert {k}" for k in order], fontsize=7)
    ax.set_xlabel("true class (evaluation only)")
    ax.set_title("routing vs. labels", fontsize=9)
    return _finish(fig, path)


def curves_figure(records: list[dict], path: Path) -> Path:
    """Loss and test metrics against epochs."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator  # the same reason as the import above

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=110)
    panels: tuple[tuple[tuple[str, ...], str, dict[str, str]], ...] = (
        (("loss", "mixture", "recon", "kl"), "training loss (per image)", {}),
        (("test_acc", "test_nmi", "test_ari"), "test clustering (labels used only to evaluate)", {"marker": "."}),
    )
    for ax, (keys, title, style) in zip(axes, panels):
        for key in keys:
            vals = [r.get(key) for r in records]
            if all(v is not None for v in vals):
                ax.plot([r["epoch"] for r in records], vals, label=key.removeprefix("test_").upper()
                        if key.startswith("test_") else key, **style)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, fontsize=9)
        if ax.get_legend_handles_labels()[0]:  # no test split: nothing to label (matplotlib would warn)
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no labelled test split", ha="center", va="center", transform=ax.transAxes,
                    color="#888")
    axes[1].set_ylim(0, 1)
    return _finish(fig, path)


def usage_figure(records: list[dict], path: Path) -> Path:
    """Share of test images routed to each expert, per epoch (stacked)."""
    plt = _plt()
    recs = [r for r in records if "usage" in r]
    fig, ax = plt.subplots(figsize=(6, 3), dpi=110)
    if recs:
        u = np.array([r["usage"] for r in recs])  # (E, K)
        ax.stackplot([r["epoch"] for r in recs], u.T, labels=[f"E{k}" for k in range(u.shape[1])])
        ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_xlabel("epoch")
    ax.set_ylabel("share of test images")
    ax.set_ylim(0, 1)
    ax.set_title("expert usage", fontsize=9)
    return _finish(fig, path)
