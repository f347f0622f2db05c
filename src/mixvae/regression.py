"""The post's supervised example: a mixture of experts that learns where to split a function.

A function made of two parabolas that meet at a split point x' cannot be fitted well by one
smooth regressor, and splitting x by k-means puts the split where the *inputs* cluster, not where
the function changes. A manager (a softmax over K) and K experts trained together find the split
and the pieces at once: each expert is pulled toward the points the manager gives it, and the
manager moves each point toward the expert that predicts it best.

:class:`MixtureOfExperts` is the scikit-learn regressor; :func:`make_two_parabolas` draws the
post's data and :func:`split_points` reads the learned split off a fitted one-feature model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn
from torch.distributions import Categorical, MixtureSameFamily, Normal

from mixvae.devices import cpu_draw
from mixvae.nets import ExpertLinear, ExpertMLP, Manager, activation
from mixvae.objectives import moe_loss

__all__ = ["LOSSES", "TWO_PARABOLAS_SPLIT", "MixtureOfExperts", "MixtureOfExpertsModule", "make_two_parabolas",
           "split_points"]

TWO_PARABOLAS_SPLIT = 0.0  # x' of make_two_parabolas


def make_two_parabolas(n_samples: int = 500, noise: float = 0.05,
                       random_state: int | np.random.RandomState | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The post's data: two parabolas that meet, with a jump, at x' = 0; x uniform on [-1, 3].

    y = 4 (x + 0.5)^2 for x < 0 (a valley on [-1, 0)) and y = 0.5 (x - 1)^2 - 1 for x >= 0 (a
    wider valley on [0, 3]), plus N(0, noise^2). Three quarters of the inputs lie right of the
    split, so k-means on x (two clusters) splits near x = 1, not at x' = 0.

    Returns X of shape (n_samples, 1) and y of shape (n_samples,).
    """
    rng = check_random_state(random_state)
    x = rng.uniform(-1.0, 3.0, n_samples)
    y = np.where(x < TWO_PARABOLAS_SPLIT, 4.0 * (x + 0.5) ** 2, 0.5 * (x - 1.0) ** 2 - 1.0)
    return x[:, None], y + noise * rng.standard_normal(n_samples)


def _moe(logits: torch.Tensor, out: torch.Tensor, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """The post's loss, mean_i sum_k p_k(x_i) (y_i - y_ik)^2 (``sigma`` is not used)."""
    return moe_loss(logits.softmax(1), (y[:, None] - out.T) ** 2)  # (B, K) -> ()


def _gaussian(logits: torch.Tensor, out: torch.Tensor, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """Jacobs et al. (1991): -mean_i log sum_k p_k(x_i) N(y_i; y_ik, sigma^2)."""
    mixture = MixtureSameFamily(Categorical(logits=logits), Normal(out.T, sigma))  # (B,) over K
    return -mixture.log_prob(y).mean()


# each loss takes the manager's logits (B, K), the experts' outputs (K, B), targets (B,), sigma
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "moe": _moe, "gaussian": _gaussian,
}


class MixtureOfExpertsModule(nn.Module):
    """K expert MLPs (batched weights, (K, in, out) per layer) and a manager MLP, as one module.

    ``experts`` maps x (B, D) to each expert's prediction (K, B, 1); ``manager`` maps x to the
    routing logits (B, K).
    """

    def __init__(self, n_features: int, n_experts: int, expert_hidden: tuple[int, ...],
                 manager_hidden: tuple[int, ...], act: str):
        super().__init__()
        sizes = [n_features, *expert_hidden]
        self.experts = nn.Sequential(ExpertMLP(n_experts, sizes, act, init="torch"),
                                     ExpertLinear(n_experts, sizes[-1], 1, init="torch"))
        self.manager = Manager(n_features, manager_hidden, n_experts, act, init="torch")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, D) -> (routing logits (B, K), expert outputs (K, B))."""
        return self.manager(x), self.experts(x).squeeze(-1)


class MixtureOfExperts(RegressorMixin, BaseEstimator):
    """Supervised mixture of experts: a manager chooses, per input, which expert predicts y.

    Generative story, for an input x with K experts::

        k | x ~ Categorical(p(x)),   p(x) = softmax(manager(x))     the manager picks an expert
        y | x, k ~ N(expert_k(x), sigma^2)                           that expert gives y

    ``loss="moe"`` is the post's loss, mean_i sum_k p_k(x_i) (y_i - expert_k(x_i))^2: each expert
    learns from the points in proportion to the manager's probability, and the manager moves
    each point toward the expert with the smaller error. ``loss="gaussian"`` is the negative
    log-likelihood of the story (Jacobs et al., 1991), -log sum_k p_k(x) N(y; expert_k(x),
    sigma^2). ``predict`` is the manager-weighted mean sum_k p_k(x) expert_k(x), i.e. E[y | x].

    X and y are standardised at fit; ``sigma`` is in units of the standardised y.

    Parameters
    ----------
    n_experts : int, default=2
        K, the number of experts.
    expert_hidden : tuple of int, default=(16,)
        Hidden layer widths of each expert MLP; ``()`` makes linear experts.
    manager_hidden : tuple of int, default=(16,)
        Hidden layer widths of the manager MLP; ``()`` makes a softmax-linear manager.
    loss : {"moe", "gaussian"}, default="moe"
        The post's loss, or the mixture negative log-likelihood.
    sigma : float, default=0.3
        Standard deviation of each expert's Gaussian for ``loss="gaussian"``.
    activation : str, default="tanh"
        "tanh", "relu", "elu", "gelu" or "sigmoid", after every hidden layer.
    max_iter : int, default=2000
        Passes over the data (epochs); a pass is one Adam step when ``batch_size`` is None.
    batch_size : int or None, default=None
        Samples per step; None uses the whole data set (full-batch Adam).
    learning_rate : float, default=0.01
        Adam's step size.
    warm_start : bool, default=False
        If True, ``fit`` continues from the current weights and scalers (with a fresh Adam).
    random_state : int, RandomState or None, default=None
        Seeds the initial weights and the minibatch order; an int gives the same model on the
        same machine.

    Attributes
    ----------
    module_ : MixtureOfExpertsModule
        The trained networks, on standardised inputs and targets.
    x_scaler_, y_scaler_ : StandardScaler
        The standardisation of X and of y fitted at the first ``fit``.
    loss_curve_ : list of float
        The mean training loss of each pass.
    n_iter_ : int
        Passes run by the last ``fit``.
    n_features_in_ : int
        Number of input features.

    Examples
    --------
    >>> from mixvae.regression import MixtureOfExperts, make_two_parabolas, split_points
    >>> X, y = make_two_parabolas(500, random_state=0)
    >>> model = MixtureOfExperts(random_state=0).fit(X, y)  # doctest: +SKIP
    >>> split_points(model, -1, 3)  # doctest: +SKIP
    array([0.0...])
    """

    def __init__(self, n_experts: int = 2, expert_hidden: tuple[int, ...] = (16,),
                 manager_hidden: tuple[int, ...] = (16,), loss: str = "moe", sigma: float = 0.3,
                 activation: str = "tanh", max_iter: int = 2000, batch_size: int | None = None,
                 learning_rate: float = 0.01, warm_start: bool = False,
                 random_state: int | np.random.RandomState | None = None):
        self.n_experts = n_experts
        self.expert_hidden = expert_hidden
        self.manager_hidden = manager_hidden
        self.loss = loss
        self.sigma = sigma
        self.activation = activation
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.warm_start = warm_start
        self.random_state = random_state

    # ----------------------------------------------------------------- fitting
    def fit(self, X: Any, y: Any) -> MixtureOfExperts:
        """Train the manager and the experts together on X (n_samples, n_features), y (n_samples,)."""
        self._check_params()
        warm = bool(self.warm_start) and hasattr(self, "module_")
        X, y = validate_data(self, X, y, reset=not warm, y_numeric=True, dtype=np.float64)  # (N, D), (N,)
        rng = check_random_state(self.random_state)
        init_seed, order_seed = (int(s) for s in rng.randint(np.iinfo(np.int32).max, size=2))
        if not warm:
            self.x_scaler_ = StandardScaler().fit(X)
            self.y_scaler_ = StandardScaler().fit(y[:, None])
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(init_seed)
                self.module_ = MixtureOfExpertsModule(
                    X.shape[1], int(self.n_experts), tuple(self.expert_hidden), tuple(self.manager_hidden),
                    self.activation).double()
            self.loss_curve_: list[float] = []
        x = torch.from_numpy(self.x_scaler_.transform(X))  # (N, D)
        t = torch.from_numpy(self.y_scaler_.transform(y[:, None])[:, 0])  # (N,)
        self._train(x, t, torch.Generator().manual_seed(order_seed))
        self.n_iter_ = int(self.max_iter)
        return self

    def _train(self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator) -> None:
        """Adam on the chosen loss for ``max_iter`` passes; appends each pass's mean loss."""
        loss_fn, sigma = LOSSES[self.loss], float(self.sigma)
        optimizer = torch.optim.Adam(self.module_.parameters(), lr=float(self.learning_rate))
        n = len(x)
        size = n if self.batch_size is None else min(int(self.batch_size), n)
        for _ in range(int(self.max_iter)):
            order = cpu_draw(torch.randperm, n, generator=generator) if size < n else torch.arange(n, device="cpu")
            total = 0.0
            for idx in order.split(size):
                logits, out = self.module_(x[idx])  # (B, K), (K, B)
                loss = loss_fn(logits, out, t[idx], sigma)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            self.loss_curve_.append(total / n)

    def _check_params(self) -> None:
        """One ValueError, in one sentence, for the first bad setting."""
        def count(v: Any) -> bool:
            return bool(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1)

        def widths(v: Any) -> bool:
            return isinstance(v, (tuple, list)) and all(count(w) for w in v)

        problems = [
            ("n_experts", count(self.n_experts), "an integer >= 1"),
            ("expert_hidden", widths(self.expert_hidden), "a tuple of integers >= 1, e.g. (16,) or ()"),
            ("manager_hidden", widths(self.manager_hidden), "a tuple of integers >= 1, e.g. (16,) or ()"),
            ("loss", self.loss in LOSSES, f"one of {sorted(LOSSES)}"),
            ("sigma", _positive(self.sigma), "a number > 0"),
            ("activation", _known_activation(self.activation), "'tanh', 'relu', 'elu', 'gelu' or 'sigmoid'"),
            ("max_iter", count(self.max_iter), "an integer >= 1"),
            ("batch_size", self.batch_size is None or count(self.batch_size), "None or an integer >= 1"),
            ("learning_rate", _positive(self.learning_rate), "a number > 0"),
        ]
        for name, ok, expected in problems:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: expected {expected}.")

    # ----------------------------------------------------------------- predicting
    @torch.no_grad()
    def _outputs(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """(manager probabilities (N, K), each expert's prediction in units of y (N, K))."""
        check_is_fitted(self, "module_")
        X = validate_data(self, X, reset=False, dtype=np.float64)  # (N, D)
        logits, out = self.module_(torch.from_numpy(self.x_scaler_.transform(X)))  # (N, K), (K, N)
        experts = out.T.numpy() * self.y_scaler_.scale_[0] + self.y_scaler_.mean_[0]  # (N, K)
        return logits.softmax(1).numpy(), experts

    def predict_proba(self, X: Any) -> np.ndarray:
        """The manager's probabilities p_k(x), (n_samples, n_experts); rows sum to one."""
        return self._outputs(X)[0]

    def predict_experts(self, X: Any) -> np.ndarray:
        """Each expert's prediction expert_k(x), (n_samples, n_experts), in units of y."""
        return self._outputs(X)[1]

    def predict(self, X: Any) -> np.ndarray:
        """The manager-weighted mean of the experts, sum_k p_k(x) expert_k(x), (n_samples,)."""
        proba, experts = self._outputs(X)
        return (proba * experts).sum(1)


def split_points(model: MixtureOfExperts, low: float, high: float, n_grid: int = 20001) -> np.ndarray:
    """Where a fitted one-feature model's most probable expert changes, between ``low`` and ``high``.

    With two experts these are the points where the manager's probabilities cross 0.5. The
    points are found on a grid of ``n_grid`` values, so they are exact to (high - low) / n_grid.
    """
    if getattr(model, "n_features_in_", None) != 1:
        raise ValueError("split_points needs a MixtureOfExperts fitted on exactly one feature.")
    grid = np.linspace(low, high, n_grid)
    best = model.predict_proba(grid[:, None]).argmax(1)  # (n_grid,)
    change = np.flatnonzero(best[1:] != best[:-1])
    return (grid[change] + grid[change + 1]) / 2


def _positive(v: Any) -> bool:
    return bool(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v)
                and v > 0)


def _known_activation(name: Any) -> bool:
    try:
        activation(name)
    except (KeyError, TypeError):
        return False
    return True
