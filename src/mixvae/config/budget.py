"""The training length for a dataset of N images: the budget in images seen, and the epochs it makes.

A preset with ``train.budget_images`` > 0 names the number of images a dataset of 60,000
(``REFERENCE_IMAGES``) sees in training; a dataset of N images sees

    budget_images * sqrt(N / 60,000)

so the number of optimisation steps grows with the data, but more slowly than the data: 1,000
images get about 240 steps of 256 instead of 4, a million about 2 epochs. The epochs are the
derived figure, ``round(images seen / N)`` (at least 1), and the settings counted in epochs
(``self_label_epoch``, ``regulariser_warmup_epochs``) keep their fraction of the training. At
60,000 images nothing changes: ``epochs`` must then equal ``budget_images / 60,000``.

``train.restarts = "auto"`` spends the images a 60,000-image run sees on whole trainings of a
smaller set: ``floor(sqrt(60,000 / N))`` of them, at least 1 and at most ``MAX_RESTARTS`` (1,797
images get 5, 10,000 get 2, 15,001 and more 1); with no budget (a number of epochs given) it stays
"auto", which :func:`mixvae.kinds.resolve` makes 1.

Rules that depend on the kind of input as well as on N are the kind's
(:meth:`mixvae.kinds.base.Kind.for_size`, applied by :func:`mixvae.kinds.fit_to_data`).
"""

from __future__ import annotations

import dataclasses
import math

from mixvae.config.schema import RunConfig

__all__ = ["MAX_RESTARTS", "REFERENCE_IMAGES", "for_data", "images_seen", "restarts_for"]

REFERENCE_IMAGES = 60_000
MAX_RESTARTS = 5


def restarts_for(n: int) -> int:
    """Whole trainings of n images that see no more images in all than one run of 60,000 (1 to 5)."""
    return max(1, min(MAX_RESTARTS, math.isqrt(REFERENCE_IMAGES // max(n, 1))))


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
        restarts=restarts_for(n) if tc.restarts == "auto" else tc.restarts,
    )
    return dataclasses.replace(cfg, train=train)
