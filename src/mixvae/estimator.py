"""A scikit-learn estimator around the mixture of VAEs: ``MixtureVAE().fit(X).predict(X)``.

The verbs are those of :class:`sklearn.mixture.GaussianMixture`: ``fit``, ``predict``,
``predict_proba``, ``score_samples``, ``score``, ``sample``, plus ``transform`` (each image's latent
mean under the expert it is routed to) and ``save`` / ``load`` (safetensors weights and a JSON
config; nothing is pickled).

X may be a numpy array, a torch tensor or anything numpy reads as one, of images or of
real-valued vectors (``input_type``; by default decided from X, see :mod:`mixvae.kinds.arrays`); the
kind of input (:mod:`mixvae.kinds`) then owns the units, the likelihood and the defaults.
Images are ``(N, H, W)``, ``(N, H, W, 1)`` or ``(N, D)`` with ``D`` a perfect square, read as
``sqrt(D) x sqrt(D)``; pixels are ``uint8`` in 0..255, ``bool``, or floats in [0, 1] (quantised to
256 levels, as the model sees them). Vectors are ``(N, D)`` finite numbers in any units: they are
standardised with each feature's mean and standard deviation (at least half the median feature's),
learned at fit and stored in the model, and each expert is a Gaussian VAE with learned variances
(:mod:`mixvae.kinds.vectors`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from sklearn.base import BaseEstimator, ClusterMixin, DensityMixin
from sklearn.utils import Tags, TransformerTags
from sklearn.utils.validation import check_is_fitted

from mixvae.atomic import atomic_write
from mixvae.checkpoint import CheckpointError, load_state, save_weights
from mixvae.config import PRESETS, RunConfig, config_from_dict, resolve_config
from mixvae.inference import latent_means, log_likelihood, predict_proba
from mixvae.kinds import GreyImages, Kind, Vectors, fit_to_data, kind_for_array, kind_of
from mixvae.kinds import arrays as inputs
from mixvae.kinds.vectors import feature_scaling, to_model_units
from mixvae.model import MixtureModule
from mixvae.plan import check_memory
from mixvae.runfolder import ESTIMATOR_FILE, WEIGHTS_FILE, save_config
from mixvae.train import Runtime, fit

__all__ = ["MixtureVAE"]


class MixtureVAE(ClusterMixin, DensityMixin, BaseEstimator):
    """Cluster and generate images or real-valued vectors with a mixture of K variational autoencoders.

    A manager routes each image (or vector) x to one of K expert VAEs with probability q(k | x); each expert
    k models p_k(x) = E_{z ~ N(0, I)} p_k(x | z). ``predict`` is the most probable expert,
    ``score_samples`` an importance-weighted lower bound on log p(x) in nats.

    Parameters
    ----------
    n_components : int, default=10
        K, the number of experts (clusters).
    preset : str, default="default"
        Named preset that supplies every setting not given here (``mixvae presets`` lists them):
        ``"default"`` is the best one, ``"seed"`` the small sigmoid model of the original notebook.
    max_epochs, batch_size, learning_rate, latent_dim : optional
        Passes over the data, images per step, Adam's step size, size of each expert's latent z.
        None uses the preset's value; the default preset's training length follows the number of
        training images (:mod:`mixvae.config.budget`) unless ``max_epochs`` is given.
    random_state : int or None, default=None
        Seed for initialisation, data order and noise. None uses the preset's seed, so two fits
        on the same data give the same model on the same machine.
    verbose : int, default=0
        0 is silent; 1 prints one line per epoch (and a progress bar on a terminal).
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"``.
    input_type : {"auto", "images", "vectors"}, default="auto"
        What X holds; ``"auto"`` decides from X (:func:`mixvae.kinds.arrays.input_type`): pixel values
        with an image shape are images, anything else vectors.
    settings : mapping or None, default=None
        Any other setting, by the keys of ``mixvae train --set``: ``{"model.manager_network":
        "mlp", "train.augment": False}`` (or nested, ``{"model": {"manager_network": "mlp"}}``).
        They apply over the preset; the named parameters above apply over them.

    Attributes
    ----------
    module_ : MixtureModule
        The trained torch module.
    config_ : RunConfig
        The resolved configuration it was trained with.
    history_ : list of dict
        One record per epoch (loss parts, expert usage, seconds) of the training kept.
    restarts_ : list of dict
        With several trainings (``train.restarts``, decided by the number of samples): each one's
        ``restart``, ``seed``, ``cut`` (normalised cut of its partition on the neighbour graph),
        ``experts_used`` and ``kept`` (the lowest cut); empty after one training.
    weights_ : ndarray of shape (n_components,)
        Mean routing q(k | x) over the training images; ``sample`` draws experts from it.
    labels_ : ndarray of shape (n_samples,)
        Expert of each training image (set by ``fit``, not restored by ``load``).
    image_shape_ : tuple of int
        (H, W) of the training images; (1, D) for vectors.
    input_type_ : str
        ``"images"`` or ``"vectors"``, as fitted.
    n_features_in_ : int
        H * W (images) or D (vectors).

    Examples
    --------
    >>> model = MixtureVAE(n_components=4, preset="seed", max_epochs=3).fit(X)  # doctest: +SKIP
    >>> experts = model.predict(X)  # doctest: +SKIP
    """

    def __init__(
        self,
        n_components: int = 10,
        preset: str = "default",
        max_epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        latent_dim: int | None = None,
        random_state: int | None = None,
        verbose: int = 0,
        device: str | None = "cpu",
        input_type: str = "auto",
        settings: Mapping[str, Any] | None = None,
    ):
        self.n_components = n_components
        self.preset = preset
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.latent_dim = latent_dim
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.input_type = input_type
        self.settings = settings

    # ----------------------------------------------------------------- fitting
    def _config(self, image_shape: tuple[int, int], kind: Kind, n: int = 0,
                scaling: tuple[tuple[float, ...], tuple[float, ...]] = ((), ()), channels: int = 1) -> RunConfig:
        if isinstance(self.random_state, np.random.RandomState):
            seed: int | None = int(self.random_state.randint(2**31 - 1))
        else:
            seed = self.random_state
        values = {"data": "array",
                  "model": {"latent_dim": self.latent_dim, "feature_mean": scaling[0], "feature_std": scaling[1]},
                  "train": {"epochs": self.max_epochs, "batch_size": self.batch_size, "lr": self.learning_rate,
                            "seed": seed, "budget_images": None if self.max_epochs is None else 0}}
        cfg = resolve_config(str(self.preset), overrides=self._settings(), values=values,
                             n_components=self.n_components, image_shape=image_shape, kind=kind)
        if channels != 1:  # colour images keep their channels
            cfg = config_from_dict({"model": {"channels": channels}}, base=cfg)
        return fit_to_data(cfg, n)

    def _settings(self) -> dict[str, Any]:
        """``settings`` as nested sections, checked: {"model.manager_network": "conv"} or
        {"model": {"manager_network": "conv"}}."""
        if self.settings is None:
            return {}
        if not isinstance(self.settings, Mapping):
            raise ValueError(  # noqa: TRY004 - scikit-learn raises ValueError for a bad parameter
                f"settings={self.settings!r} is invalid: expected a mapping of 'section.key' to values")
        out: dict[str, Any] = {}
        for key, value in self.settings.items():
            if isinstance(value, Mapping):
                out.setdefault(key, {}).update(value)
                continue
            section, dot, name = str(key).partition(".")
            if not dot:
                raise ValueError(f"settings key {key!r} is invalid: expected 'section.key', e.g. 'model.latent_dim'")
            out.setdefault(section, {})[name] = value
        return out

    def fit(self, X: Any, y: Any = None) -> MixtureVAE:
        """Train on images or vectors X (no labels: ``y`` is ignored). Returns self."""
        X = inputs.as_array(X)
        kind = kind_for_array(X, self.input_type)
        if X.ndim >= 2 and X.shape[0] == 1:
            raise ValueError("X has 1 sample; a mixture of experts needs at least n_components samples.")
        if isinstance(kind, GreyImages):
            data = kind.prepare(X)  # (N, H, W) or colour (N, H, W, 3)
            shape = (int(data.shape[1]), int(data.shape[2]))
            scaling: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
        else:
            raw = inputs.as_vectors(X)
            shape, scaling = (1, int(raw.shape[1])), feature_scaling(raw)
        if not isinstance(self.n_components, (int, np.integer)) or isinstance(self.n_components, bool):
            raise ValueError(  # noqa: TRY004 - scikit-learn raises ValueError for a bad parameter
                f"n_components={self.n_components!r} is invalid: expected an integer >= 1.")
        n = len(X)
        if n < self.n_components:
            raise ValueError(f"X has {n} samples, fewer than n_components={self.n_components}.")
        channels = int(data.shape[3]) if isinstance(kind, GreyImages) and data.ndim == 4 else 1
        cfg = self._config(shape, kind, n, scaling, channels)
        if isinstance(kind, Vectors):
            data = to_model_units(cfg.model, raw)
        log = print if self.verbose else None
        runtime = Runtime(device=self._device(), progress=None if self.verbose else False)
        check_memory(cfg, n)  # a MemoryError naming the stage that would not fit, before any training
        module, history = fit(cfg, data, runtime=runtime, log=log)
        module.eval()
        self.module_ = module
        self.config_ = cfg
        self.history_ = list(history.records)
        self.restarts_ = list(history.restarts)
        self.image_shape_ = shape
        self.input_type_ = cfg.model.input_type
        self.n_features_in_ = cfg.model.input_dim
        probs = predict_proba(module, data, device=self._device())  # (N, K)
        self.weights_ = probs.mean(0)
        self.labels_ = probs.argmax(1)
        return self

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.transformer_tags = TransformerTags(preserves_dtype=[])  # transform gives latent means, float32
        return tags

    def _device(self) -> str:
        return "cpu" if self.device is None else str(self.device)

    # ----------------------------------------------------------------- querying
    def _images(self, X: Any) -> np.ndarray:
        """X as the model reads it: uint8 images (N, H, W), or vectors (N, D) in model units."""
        check_is_fitted(self, "module_")
        kind = kind_of(self.config_.model)
        if not isinstance(kind, GreyImages):
            return to_model_units(self.config_.model, inputs.as_vectors(inputs.as_array(X), self.n_features_in_))
        h, w = self.image_shape_
        shape = self.config_.model.array_shape  # (H, W), or (H, W, C) in colour
        images = kind.prepare(X, flat_shape=(h, w))
        if tuple(images.shape[1:]) != shape:
            raise ValueError(
                f"X holds images of shape {tuple(images.shape[1:])}, but this MixtureVAE was fitted on {shape} images."
            )
        return images

    def predict_proba(self, X: Any) -> np.ndarray:
        """Routing probabilities q(k | x) of each image, (N, n_components); rows sum to one."""
        images = self._images(X)
        return predict_proba(self.module_, images, device=self._device())

    def predict(self, X: Any) -> np.ndarray:
        """The expert each image is routed to, (N,) int."""
        return self.predict_proba(X).argmax(1)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit, then return the expert of each training image, (N,) int."""
        return self.fit(X).labels_

    @torch.no_grad()
    def score_samples(self, X: Any, n_iw_samples: int = 10) -> np.ndarray:
        """Importance-weighted lower bound on log p(x) of each image (or vector), in nats, (N,).

        For vectors, the bound is in nats of the data in its own units (the scaling's Jacobian
        included), comparable with ``GaussianMixture.score_samples`` on the same X.

        ``n_iw_samples`` draws per expert; more draws give a tighter (larger) bound. The draws are
        seeded, so the same X gives the same scores, and the same numbers as ``mixvae evaluate
        --iw`` on the same images (a model trained on binarised pixels is scored on one fixed
        binarisation of X, as there).
        """
        if not isinstance(n_iw_samples, (int, np.integer)) or n_iw_samples < 1:
            raise ValueError(f"n_iw_samples={n_iw_samples!r} is invalid: expected an integer >= 1.")
        bound = log_likelihood(self.module_, self._images(X), int(n_iw_samples), binarize=self.config_.train.binarize,
                               device=self._device())
        return bound - kind_of(self.config_.model).log_jacobian(self.config_.model)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean of ``score_samples(X)``: the average log-likelihood bound in nats per image."""
        return float(self.score_samples(X).mean())

    def transform(self, X: Any) -> np.ndarray:
        """Latent mean of each image under the expert it is routed to, (N, latent_dim)."""
        return latent_means(self.module_, self._images(X), device=self._device())

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit, then return ``transform`` of the training data, (N, latent_dim)."""
        return self.fit(X).transform(X)

    @torch.no_grad()
    def sample(self, n_samples: int = 1, expert: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw new images: (images (n, H, W) float32 in [0, 1], experts (n,) int); for vectors,
        (vectors (n, D) float64 in the data's own units, experts).

        With ``expert=None`` each sample's expert is drawn from ``weights_``, the mean routing
        of the training images (uniform after ``load`` of a model saved without it); otherwise
        every sample comes from that expert. Each image is the decoder's mean for a z ~ N(0, I).
        """
        check_is_fitted(self, "module_")
        K = self.config_.model.n_components
        if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples={n_samples!r} is invalid: expected an integer >= 1.")
        seed = self.random_state if isinstance(self.random_state, (int, np.integer)) else None
        rng = np.random.default_rng(seed)
        if expert is None:
            p = np.asarray(getattr(self, "weights_", np.full(K, 1.0 / K)), dtype=np.float64)
            experts = rng.choice(K, size=n_samples, p=p / p.sum())
        else:
            if not isinstance(expert, (int, np.integer)) or not 0 <= expert < K:
                raise ValueError(f"expert={expert!r} is invalid: expected an integer in 0..{K - 1} or None.")
            experts = np.full(n_samples, int(expert))
        gen = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
        images = self.module_.sample(n_samples, torch.as_tensor(experts, device="cpu"), generator=gen)  # (n, D)
        model = self.config_.model
        return kind_of(model).to_data_units(model, images.cpu().numpy()), experts.astype(np.int64)

    # ----------------------------------------------------------------- saving
    def save(self, path: str | Path) -> Path:
        """Save to a folder (``model.safetensors``, ``config.yaml``, ``estimator.json``) or, when
        ``path`` ends in ``.safetensors``, to that one file with the config in its metadata.

        A folder is also a run folder: ``mixvae sample`` and ``mixvae predict`` read it. Returns
        the path written. Nothing is pickled: loading never runs code.
        """
        check_is_fitted(self, "module_")
        path = Path(path)
        meta = json.dumps({
            "params": self.get_params(),
            "config": self.config_.to_dict(),
            "weights": [float(w) for w in getattr(self, "weights_", [])],
            "history": self.history_,
            "restarts": getattr(self, "restarts_", []),
        }, default=str)
        if path.suffix == ".safetensors":
            save_weights(path, self.module_, self.config_, {"estimator": meta})
            return path
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path} is a file: expected a folder or a path ending in .safetensors.")
        save_weights(path / WEIGHTS_FILE, self.module_, self.config_, {"estimator": meta})
        save_config(path, self.config_)
        atomic_write(path / ESTIMATOR_FILE, json.dumps(json.loads(meta), indent=2).encode())
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> MixtureVAE:
        """Rebuild a saved MixtureVAE from the folder or ``.safetensors`` file ``save`` wrote, or from
        a run folder made by ``mixvae train`` (its parameters then come from the run's config)."""
        path = Path(path)
        file = path / WEIGHTS_FILE if path.is_dir() else path
        if not file.is_file():
            raise ValueError(f"{path} holds no saved MixtureVAE: expected a folder or .safetensors file from save().")
        try:
            with safe_open(str(file), framework="pt") as f:
                header = f.metadata() or {}
                meta = json.loads(header["estimator"]) if "estimator" in header else _run_meta(header["config"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not iterable
        except (KeyError, json.JSONDecodeError):
            raise ValueError(f"{file} was not written by MixtureVAE.save or mixvae train (no configuration).") from None
        except Exception as e:  # noqa: BLE001 - safetensors raises several kinds for a corrupt file
            raise ValueError(f"{file} is corrupt or truncated ({str(e).splitlines()[0]}).") from None
        params = meta["params"]
        if device is not None:
            params["device"] = device
        est = cls(**params)
        cfg = config_from_dict(meta["config"])
        module = MixtureModule(cfg.model)
        try:
            load_state(module, tensors, file)
        except CheckpointError as e:
            raise ValueError(str(e)) from None
        est.module_ = module.to(est._device()).eval()
        est.config_ = cfg
        est.history_ = meta.get("history", [])
        est.restarts_ = meta.get("restarts", [])
        est.image_shape_ = cfg.model.image_shape
        est.input_type_ = cfg.model.input_type
        est.n_features_in_ = cfg.model.input_dim
        if meta.get("weights"):
            est.weights_ = np.asarray(meta["weights"], dtype=np.float64)
        return est


def _run_meta(config_json: str) -> dict[str, Any]:
    """What ``save`` would have stored, for the weights of a run made by ``mixvae train``."""
    config = json.loads(config_json)
    model, train = config["model"], config["train"]
    params = {"n_components": model["n_components"], "preset": config["preset"] if config["preset"] in PRESETS
              else "default", "max_epochs": train["epochs"], "batch_size": train["batch_size"],
              "learning_rate": train["lr"], "latent_dim": model["latent_dim"], "random_state": train["seed"]}
    return {"params": params, "config": config}
