"""Kinds of input: the one owner of everything that differs between grey images, colour images
and vectors.

A kind (:class:`mixvae.kinds.base.Kind`) owns the defaults that depend on the data, the
likelihood it asks of the experts (:mod:`mixvae.kinds.images`, :mod:`mixvae.kinds.vectors`), the
model's units and back, how a run's data is read and checked for training, evaluation and new
data, and how samples are shown. It is chosen once from the data (:func:`kind_for_source`,
:func:`kind_for_array`) and saved with the run (``model.input_type`` and ``model.channels``), so
every later command gets it back with :func:`kind_of`.

A run's data is one of three kinds: grey images ``(N, H, W)``, colour images ``(N, H, W, C)``
(flattened in (H, W, C) order) or real-valued vectors ``(N, D)`` (``model.input_type =
"vectors"``). A setting whose best value depends on the data is ``"auto"`` in the presets, and the
kind decides it here, once, from the resolved configuration alone (so a saved run rebuilds the
same model, and every caller gets the same answer):

| setting | grey images | colour images | vectors |
|---|---|---|---|
| ``model.manager_network`` | ``conv`` when the images hold its layers, else ``mlp`` | the same | ``mlp`` |
| ``train.neighbour_metric`` | ``cosine`` | ``euclidean`` | ``cosine`` |
| ``train.self_label_entropy_weight`` | 0 | 1 | 0 |
| ``train.restarts`` | by the number of images (:func:`mixvae.config.restarts_for`) | the same | 1 |

Why: a convolutional manager with batch norm sees shapes where a dense one sees absolute pixel
levels, so it holds on light backgrounds and tiny images; on colour, the cosine of centred
coordinates throws away each image's brightness and colour cast, which separate colour classes
(BENCHMARKS.md, "Robust by default"). On colour photographs self-labelling lost experts (those
left with no confident image) unless it also keeps the routing spread; on grey digits that spread
cost accuracy (MNIST) or nothing (8x8 digits), so only colour images get it. Restarts ranked by
the neighbour graph's cut were measured on image sets alone, so vectors train once.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from mixvae import memory
from mixvae.config.budget import for_data
from mixvae.config.schema import ModelConfig, RunConfig
from mixvae.data.arrays import DataError
from mixvae.data.builtin import builtin_name
from mixvae.kinds import arrays as inputs
from mixvae.kinds.base import Kind, Splits
from mixvae.kinds.images import ColourImages, GreyImages
from mixvae.kinds.vectors import Vectors, holds_vectors

__all__ = ["ColourImages", "GreyImages", "Kind", "Splits", "Vectors", "fit_to_data", "kind_for_array", "kind_for_source",
           "kind_of", "kind_of_array", "resolve", "resolve_model", "training_data"]


def kind_of(model: ModelConfig) -> Kind:
    """The kind of input a model configuration is for (a saved run's, or one being built)."""
    if model.input_type == Vectors.input_type:
        return Vectors()
    return ColourImages() if model.channels > 1 else GreyImages()


def kind_of_array(data: Any) -> Kind:
    """The kind of an array as mixvae's loaders return it: (N, H, W) grey images, (N, H, W, C)
    colour images, (N, D) vectors."""
    if data.ndim == 4:
        return ColourImages()
    return GreyImages() if data.ndim == 3 else Vectors()


def kind_for_array(X: np.ndarray, requested: str = "auto") -> Kind:
    """The kind of an array given to the estimator: ``requested`` ("images", "vectors") unless it is
    "auto", then decided from X (:func:`mixvae.kinds.arrays.input_type`); images are grey or colour
    later, from their shape."""
    return Vectors() if inputs.input_type(X, requested) == Vectors.input_type else GreyImages()


def kind_for_source(cfg: RunConfig, resume: bool) -> Kind:
    """The kind of the data a run trains on: the saved kind when resumed, else vectors for a
    table or a float matrix of vectors (:func:`mixvae.kinds.vectors.holds_vectors`), else images."""
    if resume:
        return kind_of(cfg.model)
    if cfg.label_column is not None and not str(cfg.data).lower().endswith(".csv"):
        raise DataError("--label-column names a column of a .csv file given by --data")
    if builtin_name(str(cfg.data)) is None and holds_vectors(Path(str(cfg.data)).expanduser()):
        return Vectors()
    return GreyImages()


@memory.stage("load")
def training_data(cfg: RunConfig, resume: bool) -> tuple[RunConfig, Any, Any]:
    """The one pipeline from data to a run: (config fitted to the data, train, shown) for every
    kind. A new run gets the data's shape, its length from the preset's budget and the kind's
    "auto" settings; a resumed one is checked against its saved shape."""
    cfg, train, shown = kind_for_source(cfg, resume).training_data(cfg, resume)
    if not resume:
        cfg = fit_to_data(cfg, len(train))
    return cfg, train, shown


def fit_to_data(cfg: RunConfig, n: int) -> RunConfig:
    """``cfg`` for n training samples: the preset's budget as epochs, the kind's rules for the
    data's size, and every "auto" setting decided (unchanged once applied: a fitted configuration
    repeats its run)."""
    if cfg.train.budget_images > 0:
        cfg = kind_of(cfg.model).for_size(cfg, n)
    return resolve(for_data(cfg, n))


def resolve_model(model: ModelConfig) -> ModelConfig:
    """``model`` with its ``"auto"`` settings decided by its kind."""
    if model.manager_network != "auto":
        return model
    return dataclasses.replace(model, manager_network=kind_of(model).manager_network(model))


def resolve(cfg: RunConfig) -> RunConfig:
    """``cfg`` with every ``"auto"`` setting decided by the kind of its input (unchanged when it
    has none: a resolved configuration repeats its run)."""
    model = resolve_model(cfg.model)
    train, kind = cfg.train, kind_of(model)
    if train.neighbour_metric == "auto":
        train = dataclasses.replace(train, neighbour_metric=kind.neighbour_metric)
    if train.self_label_entropy_weight == "auto":
        train = dataclasses.replace(train, self_label_entropy_weight=kind.self_label_entropy_weight)
    if train.restarts == "auto" and train.budget_images <= 0:  # no budget to decide it by (config.for_data)
        train = dataclasses.replace(train, restarts=1)
    if model is cfg.model and train is cfg.train:
        return cfg
    return dataclasses.replace(cfg, model=model, train=train)
