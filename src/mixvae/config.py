"""Configuration: frozen dataclasses that validate themselves, and named presets.

Precedence when a run is configured: dataclass defaults < preset < config file < command-line flags.
The resolved configuration is written to every run folder as ``config.yaml`` so that a run can
be repeated from its folder alone.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

__all__ = [
    "ModelConfig",
    "TrainConfig",
    "RunConfig",
    "PRESETS",
    "ConfigError",
    "preset",
    "config_from_dict",
]

ACTIVATIONS = ("sigmoid", "relu", "elu", "gelu", "tanh")
LIKELIHOODS = ("gaussian", "bernoulli")
OBJECTIVES = ("seed", "elbo")
BALANCES = ("variance", "cv2", "kl", "none")
INITS = ("glorot_uniform", "torch")
ROUTER_REGS = ("none", "neighbors")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field, the value and what is allowed."""


def _check(cond: bool, name: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"{name}={value!r} is invalid: expected {allowed}")


def _positive_int(name: str, value: Any) -> None:
    _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1, name, value, "an integer >= 1")


def _sizes(name: str, value: Any) -> None:
    _check(
        isinstance(value, tuple) and all(isinstance(v, int) and v >= 1 for v in value),
        name,
        value,
        "a list of integers >= 1",
    )


@dataclass(frozen=True)
class ModelConfig:
    """The mixture of VAEs: K experts, each a VAE, and a manager that routes images to them.

    Parameters
    ----------
    n_components
        K, the number of experts (and clusters).
    image_shape
        (H, W) of the images; the input dimension is H * W.
    latent_dim
        Size of each expert's latent z.
    hidden
        Hidden layer sizes of each expert's encoder; the decoder mirrors them.
    manager_hidden
        Hidden layer sizes of the manager (gating network).
    likelihood
        ``gaussian`` (fixed ``gaussian_std`` on pixels in [0, 1]) or ``bernoulli``.
    objective
        ``seed``: mean_x sum_k m_k(x) L_k(x) + balance_weight * balance(m);
        ``elbo``: the mixture ELBO sum_k q(k|x) [ELBO_k(x) + log pi_k - log q(k|x)] + balance.
    balance
        How the batch's routing is pushed towards uniform use of the experts.
    """

    n_components: int = 10
    image_shape: tuple[int, int] = (28, 28)
    latent_dim: int = 10
    hidden: tuple[int, ...] = (128,)
    manager_hidden: tuple[int, ...] = (128,)
    activation: str = "sigmoid"
    manager_activation: str = "sigmoid"
    manager_batchnorm: bool = False
    likelihood: str = "gaussian"
    gaussian_std: float = 0.5
    min_var: float = 1e-5
    init: str = "glorot_uniform"
    objective: str = "seed"
    balance: str = "variance"
    balance_weight: float = 0.1
    kl_weight: float = 1.0
    route_by_loss: bool = True  # False: the experts' losses do not train the manager (it learns from its regulariser)

    def __post_init__(self) -> None:
        for name in ("hidden", "manager_hidden", "image_shape"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        _positive_int("n_components", self.n_components)
        _positive_int("latent_dim", self.latent_dim)
        _sizes("hidden", self.hidden)
        _sizes("manager_hidden", self.manager_hidden)
        _check(len(self.image_shape) == 2, "image_shape", self.image_shape, "(height, width)")
        _sizes("image_shape", self.image_shape)
        _check(self.activation in ACTIVATIONS, "activation", self.activation, f"one of {ACTIVATIONS}")
        _check(
            self.manager_activation in ACTIVATIONS, "manager_activation", self.manager_activation, f"one of {ACTIVATIONS}"
        )
        _check(self.likelihood in LIKELIHOODS, "likelihood", self.likelihood, f"one of {LIKELIHOODS}")
        _check(self.gaussian_std > 0, "gaussian_std", self.gaussian_std, "a number > 0")
        _check(self.min_var >= 0, "min_var", self.min_var, "a number >= 0")
        _check(self.init in INITS, "init", self.init, f"one of {INITS}")
        _check(self.objective in OBJECTIVES, "objective", self.objective, f"one of {OBJECTIVES}")
        _check(self.balance in BALANCES, "balance", self.balance, f"one of {BALANCES}")
        _check(self.balance_weight >= 0, "balance_weight", self.balance_weight, "a number >= 0")
        _check(self.kl_weight >= 0, "kl_weight", self.kl_weight, "a number >= 0")

    @property
    def input_dim(self) -> int:
        return self.image_shape[0] * self.image_shape[1]


@dataclass(frozen=True)
class TrainConfig:
    """How the model is optimised.

    ``router_reg = "neighbors"`` adds a manager regulariser: each image's routing should agree with
    that of its nearest neighbours in an unsupervised embedding of the training images
    (``router_weight``), and the batch's mean routing should have high entropy (``router_entropy``).
    """

    epochs: int = 100
    batch_size: int = 100
    lr: float = 1e-3
    seed: int = 42
    binarize: bool = False
    router_reg: str = "none"
    router_weight: float = 1.0
    router_entropy: float = 1.0
    router_neighbors: int = 10
    router_pca: int = 50
    router_warmup_epochs: int = 0
    augment: bool = False  # the regulariser compares random affine views (rotation, zoom, shift)
    augment_flip: bool = False  # views are also mirrored left-right (for data without a handedness)
    self_label_epoch: int = 0  # from this epoch on (0: never) the manager learns from its confident routings
    self_label_threshold: float = 0.99
    # when self-labelling, re-split two experts' images where a spectral cut of their neighbour graph
    # has at most this times their current normalised cut (0: never; see mixvae.refine)
    resplit_ratio: float = 0.0
    keep_checkpoints: int = 2
    checkpoint_every: int = 0  # also checkpoint every this many steps (0: once per epoch)
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        _check(isinstance(self.lr, (int, float)) and self.lr > 0, "lr", self.lr, "a number > 0")
        _check(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed, "an integer >= 0")
        _check(self.router_reg in ROUTER_REGS, "router_reg", self.router_reg, f"one of {ROUTER_REGS}")
        _check(self.router_weight >= 0, "router_weight", self.router_weight, "a number >= 0")
        _check(self.router_entropy >= 0, "router_entropy", self.router_entropy, "a number >= 0")
        _positive_int("router_neighbors", self.router_neighbors)
        _positive_int("router_pca", self.router_pca)
        _check(self.router_warmup_epochs >= 0, "router_warmup_epochs", self.router_warmup_epochs, "an integer >= 0")
        _check(isinstance(self.self_label_epoch, int) and self.self_label_epoch >= 0, "self_label_epoch",
               self.self_label_epoch, "an integer >= 0")
        _check(0 < self.self_label_threshold < 1, "self_label_threshold", self.self_label_threshold,
               "a number between 0 and 1")
        _check(isinstance(self.resplit_ratio, (int, float)) and 0 <= self.resplit_ratio < 1, "resplit_ratio",
               self.resplit_ratio, "a number >= 0 and < 1")
        _positive_int("keep_checkpoints", self.keep_checkpoints)
        _check(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every, "an integer >= 0")
        _positive_int("eval_batch_size", self.eval_batch_size)


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to repeat a run: the preset it started from, the model and the training."""

    preset: str = "default"
    data: str = "mnist"
    image_size: int | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for section in ("model", "train"):
            for k, v in d[section].items():
                if isinstance(v, tuple):
                    d[section][k] = list(v)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _seed_preset() -> tuple[dict[str, Any], dict[str, Any]]:
    model = dict(
        latent_dim=10,
        hidden=(128,),
        manager_hidden=(128,),
        activation="sigmoid",
        manager_activation="sigmoid",
        likelihood="gaussian",
        gaussian_std=0.5,
        min_var=1e-5,
        init="glorot_uniform",
        objective="seed",
        balance="variance",
        balance_weight=0.1,
    )
    train = dict(epochs=100, batch_size=100, lr=1e-3, seed=42)
    return model, train


def _default_preset() -> tuple[dict[str, Any], dict[str, Any]]:
    """The best recipe found: the manager learns the clusters from neighbour-consistent routing of
    deformed views, then from its own confident routings, where expert pairs that share two kinds
    of image are re-split on the neighbour graph first; each expert, a Bernoulli VAE, learns the
    images routed to it through the mixture ELBO."""
    model = dict(
        latent_dim=16,
        hidden=(256,),
        manager_hidden=(512, 512),
        activation="relu",
        manager_activation="relu",
        manager_batchnorm=True,
        likelihood="bernoulli",
        init="torch",
        objective="elbo",
        balance="none",
        balance_weight=0.0,
        route_by_loss=False,
    )
    train = dict(
        epochs=8,
        batch_size=256,
        lr=1e-3,
        seed=0,
        router_reg="neighbors",
        router_weight=1.0,
        router_entropy=5.0,
        router_neighbors=10,
        router_pca=50,
        augment=True,
        self_label_epoch=5,
        self_label_threshold=0.99,
        resplit_ratio=0.5,
    )
    return model, train


def _fashion_preset() -> tuple[dict[str, Any], dict[str, Any]]:
    model, train = _default_preset()
    train["augment_flip"] = True  # clothes look the same mirrored; digits do not
    return model, train


# name -> (description, factory of (model overrides, train overrides))
PRESETS: dict[str, tuple[str, Any]] = {
    "default": ("the best preset: neighbour-consistent routing of deformed views, self-labelling with "
                "re-splits of merged expert pairs, Bernoulli VAE experts",
                _default_preset),
    "fashion": ("'default' with mirrored views, for Fashion-MNIST and other data without a handedness",
                _fashion_preset),
    "seed": ("the seed post's notebook, exactly (sigmoid MLPs, Gaussian std 0.5, variance balance 0.1)", _seed_preset),
}


def preset(name: str, n_components: int = 10, image_shape: tuple[int, int] = (28, 28)) -> RunConfig:
    """The RunConfig of a named preset."""
    if name not in PRESETS:
        raise ConfigError(f"preset={name!r} is invalid: expected one of {sorted(PRESETS)}")
    model, train = PRESETS[name][1]()
    return RunConfig(
        preset=name,
        model=ModelConfig(n_components=n_components, image_shape=image_shape, **model),
        train=TrainConfig(**train),
    )


def _coerce(cls: type, key: str, value: Any, current: Any) -> Any:
    """Turn a string from the command line or a file value into the field's type."""
    if isinstance(value, str) and not isinstance(current, str):
        text = value.strip()
        if isinstance(current, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{key}={value!r} is invalid: expected true or false")
        try:
            return json.loads(text if not text.startswith("(") else "[" + text[1:-1] + "]")
        except json.JSONDecodeError:
            if current is None:
                return value
            raise ConfigError(f"{key}={value!r} is invalid: expected a value like {current!r}") from None
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _update(obj: Any, values: dict[str, Any], section: str) -> Any:
    names = {f.name: f for f in fields(obj)}
    changes = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"{section}.{key} is not an option: expected one of {sorted(names)}")
        current = getattr(obj, key)
        value = _coerce(type(obj), f"{section}.{key}", value, current)
        if isinstance(value, list):
            value = tuple(value)
        changes[key] = value
    try:
        return replace(obj, **changes)
    except TypeError as e:  # a wrong type that the checks did not catch
        raise ConfigError(f"{section}: {e}") from None


def config_from_dict(d: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
    """Apply a nested dict (``{"preset": ..., "model": {...}, "train": {...}}``) on top of ``base``.

    When ``d`` names a preset and ``base`` is None, the preset is the starting point.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"a configuration must be a mapping of sections, got {type(d).__name__}")
    unknown = set(d) - {"preset", "data", "image_size", "model", "train"}
    if unknown:
        raise ConfigError(
            f"unknown configuration section(s) {sorted(unknown)}: expected preset, data, image_size, model, train"
        )
    if base is None:
        model = d.get("model") or {}
        n = model.get("n_components", 10)
        shape = tuple(model.get("image_shape", (28, 28)))
        name = d.get("preset", "default")
        if name in PRESETS:
            base = preset(name, n_components=int(n), image_shape=shape)  # type: ignore[arg-type]
        else:  # a complete saved config of a custom run: start from the plain defaults
            base = RunConfig(preset=str(name), model=ModelConfig(n_components=int(n), image_shape=shape))  # type: ignore[arg-type]
    cfg = base
    if "preset" in d:
        cfg = dataclasses.replace(cfg, preset=str(d["preset"]))
    if "data" in d:
        cfg = dataclasses.replace(cfg, data=str(d["data"]))
    if "image_size" in d:
        size = d["image_size"]
        if size is not None:
            _positive_int("image_size", size)
        cfg = dataclasses.replace(cfg, image_size=size)
    if d.get("model"):
        cfg = dataclasses.replace(cfg, model=_update(cfg.model, d["model"], "model"))
    if d.get("train"):
        cfg = dataclasses.replace(cfg, train=_update(cfg.train, d["train"], "train"))
    return cfg
