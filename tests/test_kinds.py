"""The kind of input decides the "auto" settings, once, from the configuration alone."""

from __future__ import annotations

import dataclasses

import pytest

from mixvae.config import ConfigError, config_from_dict, preset
from mixvae.kinds import ColourImages, GreyImages, Vectors, kind_of, resolve, resolve_model
from mixvae.model import MixtureModule


def auto(cfg):
    return config_from_dict({"model": {"manager_network": "auto"},
                             "train": {"neighbour_metric": "auto", "self_label_entropy_weight": "auto"}}, base=cfg)


def test_each_kind_is_read_from_the_configuration() -> None:
    assert isinstance(kind_of(preset("default").model), GreyImages)
    colour = config_from_dict({"model": {"channels": 3}}, base=preset("default"))
    assert isinstance(kind_of(colour.model), ColourImages)
    assert isinstance(kind_of(preset("default", image_shape=(1, 5), kind=Vectors()).model), Vectors)


@pytest.mark.parametrize(("shape", "channels", "kind", "manager", "metric", "spread"), [
    ((28, 28), 1, "images", "conv", "cosine", 0.0),
    ((8, 8), 1, "images", "conv", "cosine", 0.0),  # two stride-2 layers fit 8x8 (and 4x4)
    ((3, 3), 1, "images", "mlp", "cosine", 0.0),  # too small for two halvings
    ((32, 32), 3, "images", "conv", "euclidean", 1.0),
    ((1, 7), 1, "vectors", "mlp", "cosine", 0.0),
])
def test_auto_settings_follow_the_kind(shape, channels, kind, manager, metric, spread) -> None:
    cfg = auto(preset("seed", image_shape=shape, kind=Vectors() if kind == "vectors" else None))
    cfg = config_from_dict({"model": {"channels": channels}}, base=cfg)
    got = resolve(cfg)
    assert (got.model.manager_network, got.train.neighbour_metric) == (manager, metric)
    assert got.train.self_label_entropy_weight == spread
    assert resolve(got) == got  # resolved once: a saved configuration repeats its run


def test_a_setting_given_is_never_replaced() -> None:
    cfg = config_from_dict({"model": {"manager_network": "mlp"},
                            "train": {"neighbour_metric": "cosine", "self_label_entropy_weight": 0.5}},
                           base=config_from_dict({"model": {"channels": 3}}, base=preset("default")))
    assert resolve(cfg) == cfg


def test_the_module_builds_the_kind_s_manager_from_an_unresolved_configuration() -> None:
    cfg = auto(preset("seed", image_shape=(8, 8)))
    module = MixtureModule(cfg.model)
    assert module.config.manager_network == "conv"
    assert type(module.manager).__name__ == "ConvManager"
    small = MixtureModule(dataclasses.replace(cfg.model, image_shape=(3, 3)))
    assert type(small.manager).__name__ == "Manager"
    assert resolve_model(small.config) == small.config


def test_a_bad_value_is_named() -> None:
    with pytest.raises(ConfigError, match="neighbour_metric='manhattan'"):
        config_from_dict({"train": {"neighbour_metric": "manhattan"}})
    with pytest.raises(ConfigError, match="augment_fill='mirror'"):
        config_from_dict({"train": {"augment_fill": "mirror"}})
    with pytest.raises(ConfigError, match="self_label_entropy_weight=-1.0"):
        config_from_dict({"train": {"self_label_entropy_weight": -1.0}})
    with pytest.raises(ConfigError, match="self_label_entropy_weight='much'"):
        config_from_dict({"train": {"self_label_entropy_weight": "much"}})
    with pytest.raises(ConfigError, match="graph_start_epochs=-1"):
        config_from_dict({"train": {"graph_start_epochs": -1}})
    with pytest.raises(ConfigError, match="manager_network='cnn'"):
        config_from_dict({"model": {"manager_network": "cnn"}})


def test_the_kind_of_an_array_follows_its_shape() -> None:
    import numpy as np

    from mixvae.kinds import kind_of_array

    assert isinstance(kind_of_array(np.zeros((2, 8, 8, 3))), ColourImages)
    assert isinstance(kind_of_array(np.zeros((2, 8, 8))), GreyImages)
    assert isinstance(kind_of_array(np.zeros((2, 5))), Vectors)
    assert kind_of_array(np.zeros((2, 8, 8, 3))).neighbour_metric == "euclidean"
