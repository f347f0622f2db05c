"""Kinds of input, and the defaults that depend on them.

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

Why: a convolutional manager with batch norm sees shapes where a dense one sees absolute pixel
levels, so it holds on light backgrounds and tiny images; on colour, the cosine of centred
coordinates throws away each image's brightness and colour cast, which separate colour classes
(BENCHMARKS.md, "Robust by default"). On colour photographs self-labelling lost experts (those
left with no confident image) unless it also keeps the routing spread; on grey digits that spread
cost accuracy (MNIST) or nothing (8x8 digits), so only colour images get it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from mixvae.config.schema import ModelConfig, RunConfig

__all__ = ["ColourImages", "GreyImages", "Kind", "Vectors", "kind_of", "kind_of_array", "resolve", "resolve_model"]


class Kind:
    """What the defaults of one kind of input are; a subclass per kind."""

    name: ClassVar[str] = ""
    neighbour_metric: ClassVar[str] = "cosine"
    self_label_entropy_weight: ClassVar[float] = 0.0

    def manager_network(self, model: ModelConfig) -> str:
        """The manager's network for ``model.manager_network = "auto"``."""
        return "mlp"

    @property
    def graph_features(self) -> str:
        """The neighbour graph's features, in words (for reports)."""
        return f"PCA, {self.neighbour_metric}"

    def neighbour_graph(self, data: Any, n_neighbours: int = 10, dims: int = 50) -> torch.Tensor:
        """The (N, k) neighbour graph of ``data`` with this kind's features (no run folder)."""
        from mixvae.neighbours import nearest_neighbours

        return nearest_neighbours(data, n_neighbours, dims, metric=self.neighbour_metric)


class GreyImages(Kind):
    name = "grey images"

    def manager_network(self, model: ModelConfig) -> str:
        least = 2 ** len(model.manager_conv_channels)  # each convolution halves the height and width
        return "conv" if min(model.image_shape) >= least else "mlp"


class ColourImages(GreyImages):
    name = "colour images"
    neighbour_metric = "euclidean"
    self_label_entropy_weight = 1.0


class Vectors(Kind):
    name = "vectors"


def kind_of(model: ModelConfig) -> Kind:
    """The kind of input a model configuration is for."""
    if model.input_type == "vectors":
        return Vectors()
    return ColourImages() if model.channels > 1 else GreyImages()


def kind_of_array(data: Any) -> Kind:
    """The kind of an array as mixvae's loaders return it: (N, H, W) grey images, (N, H, W, C)
    colour images, (N, D) vectors."""
    if data.ndim == 4:
        return ColourImages()
    return GreyImages() if data.ndim == 3 else Vectors()


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
    if model is cfg.model and train is cfg.train:
        return cfg
    return dataclasses.replace(cfg, model=model, train=train)
