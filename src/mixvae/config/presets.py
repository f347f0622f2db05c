"""Named presets: the seed post's exact model, and the best recipes found since.

A preset supplies every setting a run does not give itself; ``mixvae presets`` lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mixvae.config.schema import ConfigError, ModelConfig, RunConfig, TrainConfig

if TYPE_CHECKING:  # the kinds build on the settings; the settings only name a kind's type
    from mixvae.kinds.base import Kind

__all__ = ["PRESETS", "preset"]

Overrides = tuple[dict[str, Any], dict[str, Any]]


def _seed_preset() -> Overrides:
    model = {
        "latent_dim": 10,
        "hidden": (128,),
        "manager_hidden": (128,),
        "activation": "sigmoid",
        "manager_activation": "sigmoid",
        "likelihood": "gaussian",
        "gaussian_std": 0.5,
        "min_var": 1e-5,
        "init": "glorot_uniform",
        "objective": "moe",
        "balance": "variance",
        "balance_weight": 0.1,
    }
    train = {"epochs": 100, "batch_size": 100, "lr": 1e-3, "seed": 42}
    return model, train


def _default_preset() -> Overrides:
    """The best recipe found: the manager learns the clusters from neighbour-consistent routing of
    deformed views, then from its own confident routings, where expert pairs that share two kinds
    of image are re-split on the neighbour graph first; each expert, a Bernoulli VAE, learns the
    images routed to it through the mixture ELBO. The kind of input decides the manager's network
    and the neighbour graph's distance (:mod:`mixvae.kinds`); views repeat each image's own edge
    outside its frame, so any background stays itself."""
    model = {
        "latent_dim": 16,
        "hidden": (256,),
        "manager_hidden": (512, 512),
        "activation": "relu",
        "manager_activation": "relu",
        "manager_batchnorm": True,
        "manager_network": "auto",  # a convolutional manager for images that hold its layers
        "likelihood": "bernoulli",
        "init": "torch",
        "objective": "elbo",
        "balance": "none",
        "balance_weight": 0.0,
        "route_by_loss": False,
    }
    train = {
        "epochs": 8,
        "budget_images": 480_000,  # 8 epochs of 60,000 images; fewer images get fewer (see config.budget)
        "batch_size": 256,
        "lr": 1e-3,
        "seed": 0,
        "manager_regulariser": "neighbours",
        "consistency_weight": 1.0,
        "entropy_weight": 5.0,
        "n_neighbours": 10,
        "neighbour_pca_dims": 50,
        "augment": True,
        "augment_fill": "border",
        "neighbour_metric": "auto",
        "self_label_epoch": 5,
        "self_label_threshold": 0.99,
        "self_label_weight": 1.0,
        "self_label_entropy_weight": "auto",  # colour images: 1, so no expert loses every image (mixvae.kinds)
        "resplit_ratio": 0.5,
        "restarts": "auto",  # small sets train several times and keep the best cut (mixvae.restarts)
    }
    return model, train


def _fashion_preset() -> Overrides:
    model, train = _default_preset()
    train["augment_flip"] = True  # clothes look the same mirrored; digits do not
    return model, train


# name -> (description, factory of (model overrides, train overrides))
PRESETS: dict[str, tuple[str, Callable[[], Overrides]]] = {
    "default": (("the best preset: neighbour-consistent routing of deformed views, self-labelling with "
                 "re-splits of merged expert pairs, Bernoulli VAE experts"),
                _default_preset),
    "fashion": ("'default' with mirrored views, for Fashion-MNIST and other data without a handedness",
                _fashion_preset),
    "seed": ("the seed post's notebook, exactly (sigmoid MLPs, Gaussian std 0.5, variance balance 0.1)", _seed_preset),
}


def preset(name: str, n_components: int = 10, image_shape: tuple[int, int] = (28, 28),
           kind: Kind | None = None) -> RunConfig:
    """The RunConfig of a named preset, for images or, given a ``kind`` (see :mod:`mixvae.kinds`),
    that kind's recipe of it (vectors: ``image_shape`` (1, D))."""
    if name not in PRESETS:
        raise ConfigError(f"preset={name!r} is invalid: expected one of {sorted(PRESETS)}")
    model, train = PRESETS[name][1]()
    extra: dict[str, Any] = {}
    if kind is not None:
        model, train = kind.recipe(model, train)
        extra["input_type"] = kind.input_type
    return RunConfig(
        preset=name,
        model=ModelConfig(n_components=n_components, image_shape=image_shape, **extra, **model),
        train=TrainConfig(**train),
    )
