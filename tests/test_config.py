import dataclasses

import pytest

from mixvae.config import PRESETS, ConfigError, ModelConfig, TrainConfig, config_from_dict, preset


def test_seed_preset_is_the_notebook():
    cfg = preset("seed")
    m, t = cfg.model, cfg.train
    assert (m.n_components, m.latent_dim, m.hidden, m.manager_hidden) == (10, 10, (128,), (128,))
    assert (m.activation, m.manager_activation, m.likelihood, m.gaussian_std) == ("sigmoid", "sigmoid", "gaussian", 0.5)
    assert (m.min_var, m.init, m.objective, m.balance, m.balance_weight) == (1e-5, "glorot_uniform", "moe", "variance", 0.1)
    assert (t.lr, t.batch_size, t.epochs, t.seed) == (1e-3, 100, 100, 42)


def test_every_preset_builds():
    for name in PRESETS:
        assert preset(name).preset == name


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_components": 0}, "n_components"),
        ({"latent_dim": -1}, "latent_dim"),
        ({"likelihood": "poisson"}, "likelihood"),
        ({"balance": "max"}, "balance"),
        ({"hidden": (0,)}, "hidden"),
    ],
)
def test_bad_model_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("kwargs, field", [({"lr": 0}, "lr"), ({"lr": -1e-3}, "lr"), ({"batch_size": 0}, "batch_size"),
                                           ({"epochs": 0}, "epochs"), ({"neighbour_filter": "shared"}, "neighbour_filter")])
def test_bad_train_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**kwargs)


def test_unknown_preset_and_option():
    with pytest.raises(ConfigError, match="preset"):
        preset("nope")
    with pytest.raises(ConfigError, match="model.widht"):
        config_from_dict({"model": {"widht": 3}}, base=preset("seed"))


def test_config_round_trip_and_string_values():
    cfg = config_from_dict({"model": {"hidden": "[64, 32]", "latent_dim": "4"}, "train": {"lr": "0.01"}},
                           base=preset("seed"))
    assert cfg.model.hidden == (64, 32) and cfg.model.latent_dim == 4 and cfg.train.lr == 0.01
    again = config_from_dict(cfg.to_dict())
    assert again == cfg
    assert dataclasses.is_dataclass(again.model)


def test_renamed_settings_still_read_from_an_old_config():
    """A config.yaml written before settings were renamed gives the same configuration."""
    old = {"preset": "default", "model": {"objective": "seed"},
           "train": {"router_reg": "neighbors", "router_weight": 2.0, "router_entropy": 3.0, "router_neighbors": 7,
                     "router_pca": 20, "router_warmup_epochs": 1}}
    cfg = config_from_dict(old)
    t = cfg.train
    assert cfg.model.objective == "moe"
    assert (t.manager_regulariser, t.consistency_weight, t.self_label_weight) == ("neighbours", 2.0, 2.0)
    assert (t.entropy_weight, t.n_neighbours, t.neighbour_pca_dims, t.regulariser_warmup_epochs) == (3.0, 7, 20, 1)
    # a new name given beside its old one wins, in either order
    assert config_from_dict({"train": {"n_neighbours": 4, "router_neighbors": 9}}).train.n_neighbours == 4
    assert config_from_dict({"train": {"router_neighbors": 9, "n_neighbours": 4}}).train.n_neighbours == 4


@pytest.mark.parametrize("items, expected", [(["grayscale=true"], True), (["grayscale=off"], False), ([], False)])
def test_grayscale_is_set_by_set_as_by_the_flag(items, expected):
    from mixvae.config import resolve_config

    assert resolve_config("default", overrides=items).grayscale is expected
    assert config_from_dict({"grayscale": True}).grayscale is True  # a config file's bool
    for bad in (["grayscale=maybe"], {"grayscale": 1}):
        with pytest.raises(ConfigError, match="grayscale"):
            resolve_config("default", overrides=bad)


def test_the_graph_start_keeps_its_share_of_the_training():
    from mixvae.config import config_from_dict, for_data, preset

    cfg = config_from_dict({"train": {"graph_start_epochs": 2}}, base=preset("default"))
    fitted = for_data(cfg, 1797)  # 480,000 * sqrt(1797 / 60,000) images seen: 46 epochs of 1,797
    assert fitted.train.epochs == 46
    assert fitted.train.graph_start_epochs == round(2 * 46 / 8)
    assert for_data(cfg, 60_000).train.graph_start_epochs == 2
