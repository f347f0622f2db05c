"""The configuration's schema: frozen dataclasses that validate themselves.

Each check raises :class:`ConfigError` naming the field, the bad value and what is allowed.
Settings renamed since a run folder was written are still read (``ALIASES``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

__all__ = ["ALIASES", "ConfigError", "ModelConfig", "RunConfig", "TrainConfig", "check_positive_int", "coerce", "update_section"]

ACTIVATIONS = ("sigmoid", "relu", "elu", "gelu", "tanh")
LIKELIHOODS = ("gaussian", "bernoulli")
OBJECTIVES = ("moe", "elbo")
BALANCES = ("variance", "cv2", "kl", "none")
INITS = ("glorot_uniform", "torch")
EXPERT_NETWORKS = ("mlp", "conv")  # also the manager's networks
REGULARISERS = ("none", "neighbours")
NEIGHBOUR_SEARCHES = ("auto", "exact", "approximate")
NEIGHBOUR_FILTERS = ("none", "mutual")
AUGMENT_FILLS = ("zeros", "border")
NEIGHBOUR_METRICS = ("auto", "cosine", "euclidean")  # "auto": the input kind's (mixvae.kinds)
INPUT_TYPES = ("images", "vectors")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field, the value and what is allowed."""


def _check(cond: bool, name: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"{name}={value!r} is invalid: expected {allowed}")


def check_positive_int(name: str, value: Any) -> None:
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
        (H, W) of the images; the input dimension is H * W * channels.
    channels
        Colour channels of the images: 1 (grayscale) or 3 (RGB), or any other count.
    expert_network
        ``mlp``: each expert's encoder and decoder are ``hidden`` dense layers; ``conv``: they
        start (encoder) and end (decoder) with 4x4 stride-2 convolutions of ``conv_channels``,
        all K experts' as one grouped convolution (:mod:`mixvae.convnets`).
    manager_network
        ``mlp``: the manager is ``manager_hidden`` dense layers; ``conv``: 4x4 stride-2
        convolutions of ``manager_conv_channels`` come first; ``auto``: the input kind's choice
        (:mod:`mixvae.kinds`: ``conv`` for images large enough for its layers, else ``mlp``).
    latent_dim
        Size of each expert's latent z.
    hidden
        Hidden layer sizes of each expert's encoder; the decoder mirrors them.
    manager_hidden
        Hidden layer sizes of the manager (gating network).
    likelihood
        ``gaussian`` (fixed ``gaussian_std`` on pixels in [0, 1]) or ``bernoulli``.
    objective
        ``moe``: the seed post's mixture-of-experts loss, mean_x sum_k m_k(x) L_k(x) + balance_weight * balance(m);
        ``elbo``: the mixture ELBO sum_k q(k|x) [ELBO_k(x) + log pi_k - log q(k|x)] + balance.
    balance
        How the batch's routing is pushed towards uniform use of the experts.
    input_type
        ``images`` (pixels in [0, 1], ``image_shape`` (H, W)) or ``vectors``: real-valued features,
        ``image_shape`` (1, D), standardised by ``feature_mean`` / ``feature_std`` (learned at fit)
        and modelled by a Gaussian with a learned variance per expert and feature
        (:mod:`mixvae.kinds.vectors`), ``gaussian_std`` being its initial value.
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
    objective: str = "moe"
    balance: str = "variance"
    balance_weight: float = 0.1
    kl_weight: float = 1.0
    route_by_loss: bool = True  # False: the experts' losses do not train the manager (it learns from its regulariser)
    channels: int = 1
    expert_network: str = "mlp"
    conv_channels: tuple[int, ...] = (32, 64)
    manager_network: str = "mlp"
    manager_conv_channels: tuple[int, ...] = (32, 64)
    input_type: str = "images"
    feature_mean: tuple[float, ...] = ()  # vectors: the training data's mean of each feature, (D,)
    feature_std: tuple[float, ...] = ()  # vectors: and its standard deviation, (D,)

    def __post_init__(self) -> None:
        for name in ("hidden", "manager_hidden", "image_shape", "conv_channels", "manager_conv_channels", "feature_mean",
                     "feature_std"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        for name in ("feature_mean", "feature_std"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        check_positive_int("n_components", self.n_components)
        check_positive_int("latent_dim", self.latent_dim)
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
        _check(self.input_type in INPUT_TYPES, "input_type", self.input_type, f"one of {INPUT_TYPES}")
        for name in ("feature_mean", "feature_std"):
            n = len(getattr(self, name))
            _check(n in (0, self.input_dim), name, f"<{n} values>", f"{self.input_dim} values (one per feature) or none")
        _check(all(s > 0 for s in self.feature_std), "feature_std", "<values>", "numbers > 0")
        check_positive_int("channels", self.channels)
        _check(self.expert_network in EXPERT_NETWORKS, "expert_network", self.expert_network,
               f"one of {EXPERT_NETWORKS}")
        _check(self.manager_network in (*EXPERT_NETWORKS, "auto"), "manager_network", self.manager_network,
               f"one of {(*EXPERT_NETWORKS, 'auto')}")
        for network, name in ((self.expert_network, "conv_channels"), (self.manager_network, "manager_conv_channels")):
            channels = getattr(self, name)
            _sizes(name, channels)
            if network == "conv":
                _check(len(channels) >= 1, name, channels, "at least one layer")
                least = 2 ** len(channels)  # each layer halves the height and width
                _check(min(self.image_shape) >= least, "image_shape", self.image_shape,
                       f"height and width >= {least} for {len(channels)} convolution layers")

    @property
    def array_shape(self) -> tuple[int, ...]:
        """One image as an array: (H, W) in grayscale, (H, W, C) in colour."""
        return tuple(self.image_shape) if self.channels == 1 else (*self.image_shape, self.channels)

    @property
    def input_dim(self) -> int:
        return self.image_shape[0] * self.image_shape[1] * self.channels


@dataclass(frozen=True)
class TrainConfig:
    """How the model is optimised, and what the manager learns from besides the experts' losses.

    ``manager_regulariser = "neighbours"`` adds a regulariser on the manager's routing: an image
    and one of its ``n_neighbours`` nearest neighbours (cosine, after PCA to ``neighbour_pca_dims``
    dimensions of the training images; no label involved) should be routed alike
    (``consistency_weight``) while the batch's mean routing keeps a high entropy
    (``entropy_weight``). From ``self_label_epoch`` on, the manager instead learns from its own
    confident routings (``self_label_weight``), after the re-split repair of ``resplit_ratio``.
    """

    epochs: int = 100
    # > 0: the training length in images seen by a dataset of 60,000 images; N images see
    # budget_images * sqrt(N / 60,000), and epochs (with the epoch-numbered settings) follow
    # from it (mixvae.config.budget); 0: train for ``epochs``
    budget_images: int = 0
    batch_size: int = 100
    lr: float = 1e-3
    seed: int = 42
    binarize: bool = False
    manager_regulariser: str = "none"
    consistency_weight: float = 1.0
    entropy_weight: float = 1.0
    n_neighbours: int = 10
    neighbour_pca_dims: int = 50
    # "auto": exact up to 100,000 images, approximate (faiss) above; see mixvae.neighbours
    neighbour_search: str = "auto"
    # "cosine" or "euclidean" distance between the PCA coordinates; "auto": the input kind's (mixvae.kinds)
    neighbour_metric: str = "cosine"
    # "mutual": keep only the neighbours that count the image among their own n_neighbours nearest
    # (mixvae.neighbours.mutual_neighbours); "none": keep all
    neighbour_filter: str = "none"
    regulariser_warmup_epochs: int = 0  # the regulariser is off for this many epochs
    augment: bool = False  # the regulariser compares random affine views (rotation, zoom, shift)
    augment_flip: bool = False  # views are also mirrored left-right (for data without a handedness)
    # outside the original frame a view shows "zeros" (black) or "border": the image's own edge pixels
    augment_fill: str = "zeros"
    view_noise: float = 0.0  # without augment, views add Gaussian noise of this std (vectors, standardised units)
    # for this many epochs (from the regulariser's first) the manager also learns the spectral
    # partition of the neighbour graph, with this weight (mixvae.regularisers.GraphStart)
    graph_start_epochs: int = 0
    graph_start_weight: float = 1.0
    self_label_epoch: int = 0  # from this epoch on (0: never) the manager learns from its confident routings
    self_label_threshold: float = 0.99
    self_label_weight: float = 1.0
    # self-labelling also keeps the batch's mean routing spread, with this weight on its entropy (as
    # entropy_weight does in the consistency phase), so that no expert loses every confident image;
    # "auto": the input kind's (mixvae.kinds)
    self_label_entropy_weight: float | str = 0.0
    # when self-labelling, re-split two experts' images where a spectral cut of their neighbour graph
    # has at most this times their current normalised cut (0: never; see mixvae.refine)
    resplit_ratio: float = 0.0
    # train this many times from different seeds and keep the training whose partition cuts the
    # fewest neighbour-graph edges (mixvae.restarts); "auto": as many as fit in the images a
    # 60,000-image run sees, at most 5 (mixvae.config.budget)
    restarts: int | str = 1
    keep_checkpoints: int = 2
    checkpoint_every: int = 0  # also checkpoint every this many steps (0: once per epoch)
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        _check(isinstance(self.budget_images, int) and not isinstance(self.budget_images, bool)
               and self.budget_images >= 0, "budget_images", self.budget_images, "an integer >= 0")
        _check(isinstance(self.view_noise, (int, float)) and self.view_noise >= 0, "view_noise", self.view_noise,
               "a number >= 0")
        _check(isinstance(self.lr, (int, float)) and self.lr > 0, "lr", self.lr, "a number > 0")
        _check(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed, "an integer >= 0")
        _check(self.manager_regulariser in REGULARISERS, "manager_regulariser", self.manager_regulariser,
               f"one of {REGULARISERS}")
        if isinstance(self.self_label_entropy_weight, str) and self.self_label_entropy_weight != "auto":
            try:  # a number given as text on the command line (the preset's "auto" is text too)
                object.__setattr__(self, "self_label_entropy_weight", float(self.self_label_entropy_weight))
            except ValueError:
                raise ConfigError(f"self_label_entropy_weight={self.self_label_entropy_weight!r} is invalid: "
                                  f"expected a number >= 0 or 'auto'") from None
        _check(isinstance(self.graph_start_epochs, int) and self.graph_start_epochs >= 0, "graph_start_epochs",
               self.graph_start_epochs, "an integer >= 0")
        if self.self_label_entropy_weight != "auto":
            _check(self.self_label_entropy_weight >= 0, "self_label_entropy_weight",  # type: ignore[operator]
                   self.self_label_entropy_weight, "a number >= 0 or 'auto'")
        for name in ("consistency_weight", "entropy_weight", "self_label_weight", "graph_start_weight"):
            _check(getattr(self, name) >= 0, name, getattr(self, name), "a number >= 0")
        if isinstance(self.restarts, str) and self.restarts != "auto":
            try:  # a number given as text on the command line, where the preset's value is "auto"
                object.__setattr__(self, "restarts", int(self.restarts))
            except ValueError:
                raise ConfigError(f"restarts={self.restarts!r} is invalid: expected an integer >= 1 or 'auto'") from None
        _check(self.restarts == "auto" or (isinstance(self.restarts, int) and not isinstance(self.restarts, bool)
                                           and self.restarts >= 1), "restarts", self.restarts,
               "an integer >= 1 or 'auto'")
        check_positive_int("n_neighbours", self.n_neighbours)
        check_positive_int("neighbour_pca_dims", self.neighbour_pca_dims)
        _check(self.neighbour_search in NEIGHBOUR_SEARCHES, "neighbour_search", self.neighbour_search,
               f"one of {NEIGHBOUR_SEARCHES}")
        _check(self.augment_fill in AUGMENT_FILLS, "augment_fill", self.augment_fill, f"one of {AUGMENT_FILLS}")
        _check(self.neighbour_metric in NEIGHBOUR_METRICS, "neighbour_metric", self.neighbour_metric,
               f"one of {NEIGHBOUR_METRICS}")
        _check(self.neighbour_filter in NEIGHBOUR_FILTERS, "neighbour_filter", self.neighbour_filter,
               f"one of {NEIGHBOUR_FILTERS}")
        _check(isinstance(self.regulariser_warmup_epochs, int) and self.regulariser_warmup_epochs >= 0,
               "regulariser_warmup_epochs", self.regulariser_warmup_epochs, "an integer >= 0")
        _check(isinstance(self.self_label_epoch, int) and self.self_label_epoch >= 0, "self_label_epoch",
               self.self_label_epoch, "an integer >= 0")
        _check(0 < self.self_label_threshold < 1, "self_label_threshold", self.self_label_threshold,
               "a number between 0 and 1")
        _check(isinstance(self.resplit_ratio, (int, float)) and 0 <= self.resplit_ratio < 1, "resplit_ratio",
               self.resplit_ratio, "a number >= 0 and < 1")
        check_positive_int("keep_checkpoints", self.keep_checkpoints)
        _check(self.checkpoint_every >= 0, "checkpoint_every", self.checkpoint_every, "an integer >= 0")
        check_positive_int("eval_batch_size", self.eval_batch_size)


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to repeat a run: the preset it started from, the model and the training."""

    preset: str = "default"
    data: str = "mnist"
    image_size: int | None = None
    grayscale: bool = False  # colour images are converted to grayscale as they are loaded
    label_column: str | None = None  # vectors in a .csv: the column of labels, used only to evaluate
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


def coerce(key: str, value: Any, current: Any) -> Any:
    """Turn a string from the command line or a file value into the field's type."""
    if isinstance(value, str) and not isinstance(current, str):
        text = value.strip()
        if isinstance(current, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{key}={value!r} is invalid: expected true or false")
        if text == "auto":  # a setting the input kind decides (mixvae.kinds); the field's check says if it may
            return text
        try:
            return json.loads(text if not text.startswith("(") else "[" + text[1:-1] + "]")
        except json.JSONDecodeError:
            if current is None:
                return value
            raise ConfigError(f"{key}={value!r} is invalid: expected a value like {current!r}") from None
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# section -> {old key: new key(s)}: settings renamed since a run folder may have been written
ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "model": {},
    "train": {
        "router_reg": ("manager_regulariser",),
        "router_weight": ("consistency_weight", "self_label_weight"),  # it scaled both losses
        "router_entropy": ("entropy_weight",),
        "router_neighbors": ("n_neighbours",),
        "router_pca": ("neighbour_pca_dims",),
        "router_warmup_epochs": ("regulariser_warmup_epochs",),
    },
}
# (section, key) -> {old value: new value}
VALUE_ALIASES: dict[tuple[str, str], dict[str, str]] = {
    ("model", "objective"): {"seed": "moe"},
    ("train", "manager_regulariser"): {"neighbors": "neighbours"},
}


def _unalias(values: dict[str, Any], section: str) -> dict[str, Any]:
    """Old setting names and values -> today's (a new name given beside its old one wins)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        for new in ALIASES.get(section, {}).get(key, ()):
            out.setdefault(new, value)
        if key not in ALIASES.get(section, {}):
            out[key] = value
    for key, value in out.items():
        if isinstance(value, str) and value in VALUE_ALIASES.get((section, key), {}):
            out[key] = VALUE_ALIASES[(section, key)][value]
    return out


def update_section(obj: Any, values: dict[str, Any], section: str) -> Any:
    """A copy of the config dataclass ``obj`` with ``values`` (strings from the command line or
    values from a file) applied, coerced to each field's type and checked."""
    names = {f.name: f for f in fields(obj)}
    changes = {}
    for key, value in _unalias(values, section).items():
        if key not in names:
            raise ConfigError(f"{section}.{key} is not an option: expected one of {sorted(names)}")
        current = getattr(obj, key)
        value = coerce(f"{section}.{key}", value, current)
        if isinstance(value, list):
            value = tuple(value)
        changes[key] = value
    try:
        return replace(obj, **changes)
    except TypeError as e:  # a wrong type that the checks did not catch
        raise ConfigError(f"{section}: {e}") from None
