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
from typing import Any, cast

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
from mixvae.objectives import balance, moe_loss

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


class Powers(nn.Module):
    """x (B, D) -> (x, x^2, ..., x^degree) of every feature, (B, D * degree); no cross terms."""

    def __init__(self, degree: int):
        super().__init__()
        self.degree = degree

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x ** d for d in range(1, self.degree + 1)], dim=1)  # (B, D * degree)

    def extra_repr(self) -> str:
        return f"degree={self.degree}"


class MixtureOfExpertsModule(nn.Module):
    """K experts (batched weights, (K, in, out) per layer) and a manager MLP, as one module.

    Each expert is an MLP with ``expert_hidden`` hidden layers or, when ``expert_degree`` is an
    int, a polynomial of that degree in each feature (linear in ``Powers(degree)(x)``).
    ``experts`` maps x (B, D) to each expert's prediction (K, B, 1); ``manager`` maps x to the
    routing logits (B, K).
    """

    def __init__(self, n_features: int, n_experts: int, expert_hidden: tuple[int, ...],
                 manager_hidden: tuple[int, ...], act: str, expert_degree: int | None = None):
        super().__init__()
        if expert_degree is None:
            sizes = [n_features, *expert_hidden]
            self.experts = nn.Sequential(ExpertMLP(n_experts, sizes, act, init="torch"),
                                         ExpertLinear(n_experts, sizes[-1], 1, init="torch"))
        else:
            self.experts = nn.Sequential(Powers(expert_degree),
                                         ExpertLinear(n_experts, n_features * expert_degree, 1, init="torch"))
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

    By default each expert is a quadratic (``expert_degree=2``): an expert that cannot fit the
    whole function alone makes the manager split where the function changes (flexible MLP
    experts let one expert fit both pieces of a function, or left an expert unused, and the split
    landed anywhere: BENCHMARKS.md, "Where to split"). For a fixed manager the loss is a weighted least-squares problem in a
    polynomial expert's coefficients, so after every Adam pass the polynomial experts are set to
    that solution (the M-step of Jordan and Jacobs's EM); Adam effectively trains the manager.
    ``expert_degree=None`` gives the post's MLP experts (``expert_hidden``), trained by Adam.

    Parameters
    ----------
    n_experts : int, default=2
        K, the number of experts.
    expert_hidden : tuple of int, default=(16,)
        Hidden layer widths of each expert MLP, used when ``expert_degree`` is None; ``()``
        makes linear experts.
    expert_degree : int or None, default=2
        Each expert is a polynomial of this degree in each (standardised) feature, without cross
        terms, solved by weighted least squares after every pass; None: MLP experts.
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
    n_init : int, default=1
        Restarts from new initial weights; the fit with the lowest final training loss is kept
        (ignored with ``warm_start``).
    balance_weight : float, default=0.0
        Weight of the balance term KL(mean_i p(x_i) || uniform), which keeps every expert in use
        early on; it falls linearly to 0 over the first half of the passes, so the final fit
        optimises ``loss`` alone.
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
        The mean training loss of each pass (of the restart that was kept).
    training_loss_ : float
        The final training loss (``loss`` alone) of the kept fit, in standardised units.
    split_points_ : ndarray or None
        With one feature, where the most probable expert changes between the smallest and the
        largest training input (:func:`split_points`); None with more features.
    n_iter_ : int
        Passes run by the last ``fit``.
    n_features_in_ : int
        Number of input features.

    Examples
    --------
    >>> from mixvae.regression import MixtureOfExperts, make_two_parabolas, split_points
    >>> X, y = make_two_parabolas(500, random_state=0)
    >>> model = MixtureOfExperts(random_state=0).fit(X, y)  # doctest: +SKIP
    >>> model.split_points_  # doctest: +SKIP
    array([0.00...])
    """

    def __init__(self, n_experts: int = 2, expert_hidden: tuple[int, ...] = (16,), expert_degree: int | None = 2,
                 manager_hidden: tuple[int, ...] = (16,), loss: str = "moe", sigma: float = 0.3,
                 activation: str = "tanh", max_iter: int = 2000, batch_size: int | None = None,
                 learning_rate: float = 0.01, n_init: int = 1, balance_weight: float = 0.0, warm_start: bool = False,
                 random_state: int | np.random.RandomState | None = None):
        self.n_experts = n_experts
        self.expert_hidden = expert_hidden
        self.expert_degree = expert_degree
        self.manager_hidden = manager_hidden
        self.loss = loss
        self.sigma = sigma
        self.activation = activation
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.n_init = n_init
        self.balance_weight = balance_weight
        self.warm_start = warm_start
        self.random_state = random_state

    # ----------------------------------------------------------------- fitting
    def fit(self, X: Any, y: Any) -> MixtureOfExperts:
        """Train the manager and the experts together on X (n_samples, n_features), y (n_samples,)."""
        self._check_params()
        warm = bool(self.warm_start) and hasattr(self, "module_")
        X, y = validate_data(self, X, y, reset=not warm, y_numeric=True, dtype=np.float64)  # (N, D), (N,)
        rng = check_random_state(self.random_state)
        if not warm:
            self.x_scaler_ = StandardScaler().fit(X)
            self.y_scaler_ = StandardScaler().fit(y[:, None])
        x = torch.from_numpy(self.x_scaler_.transform(X))  # (N, D)
        t = torch.from_numpy(self.y_scaler_.transform(y[:, None])[:, 0])  # (N,)
        best: tuple[float, MixtureOfExpertsModule, list[float]] | None = None
        for _ in range(1 if warm else int(self.n_init)):  # restarts, ranked by final training loss
            init_seed, order_seed = (int(s) for s in rng.randint(np.iinfo(np.int32).max, size=2))
            if not warm:
                self.module_ = self._new_module(X.shape[1], init_seed)
                self.loss_curve_: list[float] = []
            self._train(x, t, torch.Generator().manual_seed(order_seed))
            final = self._final_loss(x, t)
            if best is None or final < best[0]:
                best = (final, self.module_, self.loss_curve_)
        assert best is not None
        self.training_loss_, self.module_, self.loss_curve_ = best
        self.n_iter_ = int(self.max_iter)
        self.split_points_ = (split_points(self, float(X.min()), float(X.max())) if X.shape[1] == 1 else None)
        return self

    def _new_module(self, n_features: int, seed: int) -> MixtureOfExpertsModule:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return MixtureOfExpertsModule(n_features, int(self.n_experts), tuple(self.expert_hidden),
                                          tuple(self.manager_hidden), self.activation, self.expert_degree).double()

    @torch.no_grad()
    def _final_loss(self, x: torch.Tensor, t: torch.Tensor) -> float:
        """The chosen loss on all the training data, without the balance term."""
        logits, out = self.module_(x)  # (N, K), (K, N)
        return float(LOSSES[self.loss](logits, out, t, float(self.sigma)))

    def _train(self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator) -> None:
        """Adam on the chosen loss for ``max_iter`` passes; appends each pass's mean loss.

        The balance term's weight falls linearly from ``balance_weight`` to 0 over the first half
        of the passes; polynomial experts are set to their least-squares fit after every pass.
        """
        loss_fn, sigma = LOSSES[self.loss], float(self.sigma)
        optimizer = torch.optim.Adam(self.module_.parameters(), lr=float(self.learning_rate))
        n = len(x)
        size = n if self.batch_size is None else min(int(self.batch_size), n)
        for step in range(int(self.max_iter)):
            weight = float(self.balance_weight) * max(0.0, 1.0 - 2.0 * step / int(self.max_iter))
            order = cpu_draw(torch.randperm, n, generator=generator) if size < n else torch.arange(n, device="cpu")
            total = 0.0
            for idx in order.split(size):
                logits, out = self.module_(x[idx])  # (B, K), (K, B)
                loss = loss_fn(logits, out, t[idx], sigma)
                if weight > 0:
                    loss = loss + weight * balance(logits.softmax(1), "kl")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
            if self.expert_degree is not None:
                self._solve_experts(x, t)
            self.loss_curve_.append(total / n)

    @torch.no_grad()
    def _solve_experts(self, x: torch.Tensor, t: torch.Tensor) -> None:
        """Set each polynomial expert to its least-squares fit, weighted by the manager's routing.

        For fixed routing the loss is sum_k sum_i w_ik (t_i - phi_i . beta_k)^2 (w = p for "moe",
        the posterior responsibilities for "gaussian"), minimised by beta_k = (Phi^T W_k Phi)^-1
        Phi^T W_k t; a tiny ridge keeps an expert with almost no weight well posed.
        """
        powers, linear = cast(Powers, self.module_.experts[0]), cast(ExpertLinear, self.module_.experts[1])
        logits, out = self.module_(x)  # (N, K), (K, N)
        if self.loss == "gaussian":
            w = (logits.log_softmax(1) - 0.5 * ((t[:, None] - out.T) / float(self.sigma)) ** 2).softmax(1)
        else:
            w = logits.softmax(1)  # (N, K)
        phi = torch.cat([torch.ones_like(x[:, :1]), powers(x)], dim=1)  # (N, P)
        gram = torch.einsum("nk,np,nq->kpq", w, phi, phi)  # (K, P, P)
        gram += 1e-8 * len(x) * torch.eye(phi.shape[1], dtype=x.dtype, device=x.device)
        beta = torch.linalg.solve(gram, torch.einsum("nk,np,n->kp", w, phi, t))  # (K, P)
        linear.bias.copy_(beta[:, None, :1])
        linear.weight.copy_(beta[:, 1:, None])

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
            ("expert_degree", self.expert_degree is None or count(self.expert_degree), "None or an integer >= 1"),
            ("n_init", count(self.n_init), "an integer >= 1"),
            ("balance_weight", _positive(self.balance_weight) or self.balance_weight == 0, "a number >= 0"),
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
