"""The training length for a dataset of N images: the budget in images seen, and the epochs it makes.

A preset with ``train.budget_images`` > 0 names the number of images a dataset of 60,000
(``REFERENCE_IMAGES``) sees in training; a dataset of N images sees

    budget_images * sqrt(N / 60,000)

so the number of optimisation steps grows with the data, but more slowly than the data: 1,000
images get about 240 steps of 256 instead of 4, a million about 2 epochs. The epochs are the
derived figure, ``round(images seen / N)`` (at least 1), and the settings counted in epochs
(``self_label_epoch``, ``regulariser_warmup_epochs``) keep their fraction of the training. At
60,000 images nothing changes: ``epochs`` must then equal ``budget_images / 60,000``.

Rules that depend on the kind of input as well as on N are the kind's
(:meth:`mixvae.kinds.base.Kind.for_size`, applied by :func:`mixvae.kinds.fit_to_data`).
"""

from __future__ import annotations

import dataclasses
import math

from mixvae.config.schema import RunConfig

__all__ = ["REFERENCE_IMAGES", "for_data", "images_seen"]

REFERENCE_IMAGES = 60_000


def images_seen(budget_images: int, n: int) -> int:
    """Images seen in training by a dataset of n images, for a budget of ``budget_images`` at 60,000."""
    return round(budget_images * math.sqrt(n / REFERENCE_IMAGES))


def _scaled(epoch: int, epochs: int, reference: int) -> int:
    """An epoch number of a ``reference``-epoch schedule, moved to the same fraction of ``epochs``."""
    if epoch <= 0:
        return epoch
    return max(1, round(epoch * epochs / reference))


def for_data(cfg: RunConfig, n: int) -> RunConfig:
    """``cfg`` with its training length fitted to n training images (unchanged when the budget is
    0, as it is after this has been applied: the returned config repeats the run as it is)."""
    tc = cfg.train
    if tc.budget_images <= 0:
        return cfg
    epochs = max(1, round(images_seen(tc.budget_images, n) / max(n, 1)))
    train = dataclasses.replace(
        tc, budget_images=0, epochs=epochs,
        self_label_epoch=_scaled(tc.self_label_epoch, epochs, tc.epochs),
        regulariser_warmup_epochs=_scaled(tc.regulariser_warmup_epochs, epochs, tc.epochs),
        graph_start_epochs=_scaled(tc.graph_start_epochs, epochs, tc.epochs),
    )
    return dataclasses.replace(cfg, train=train)
