"""The loss terms of objectives.py against the same formulas written out in numpy (float64)."""

import math

import numpy as np
import pytest
import torch

from mixvae.objectives import balance, marginal_entropy, mixture_nelbo, moe_loss, neighbour_consistency, self_label


def routing(seed: int = 0, b: int = 6, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and per-expert negative ELBOs (B, K), float64."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, generator=g, dtype=torch.float64), 50 + 10 * torch.rand(b, k, generator=g, dtype=torch.float64)


def softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_moe_loss_is_the_routing_weighted_mean_nelbo():
    logits, nelbo = routing()
    p, n = softmax(logits.numpy()), nelbo.numpy()
    expected = np.mean([sum(p[i, k] * n[i, k] for k in range(3)) for i in range(len(p))])
    assert float(moe_loss(torch.from_numpy(p), nelbo)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("given_prior", [False, True])
def test_mixture_nelbo_is_the_negative_mixture_elbo(given_prior):
    logits, nelbo = routing(1)
    q = softmax(logits.numpy())
    prior = np.array([0.5, 0.3, 0.2]) if given_prior else np.full(3, 1 / 3)
    # -sum_k q(k|x) [ELBO_k(x) + log pi_k - log q(k|x)], ELBO_k = -nelbo_k, averaged over x
    expected = np.mean((q * (nelbo.numpy() - np.log(prior) + np.log(q))).sum(1))
    log_pi = torch.from_numpy(np.log(prior)) if given_prior else None
    got = mixture_nelbo(logits, nelbo, log_pi)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(expected, rel=1e-13, abs=0)


def test_mixture_nelbo_builds_its_uniform_prior_on_the_logits_device():
    """A prior made on the default device (CPU) would not mix with a GPU batch; meta stands in for one."""
    logits, nelbo = routing(2)
    out = mixture_nelbo(logits.to("meta"), nelbo.to("meta"))
    assert out.device.type == "meta" and out.dtype == torch.float64


def test_mixture_nelbo_is_the_nelbo_for_one_confident_expert():
    nelbo = torch.tensor([[80.0, 10.0], [5.0, 90.0]], dtype=torch.float64)
    logits = torch.tensor([[50.0, -50.0], [-50.0, 50.0]], dtype=torch.float64)
    # q is one-hot: the loss is nelbo of the chosen expert minus log pi = nelbo + log 2
    assert float(mixture_nelbo(logits, nelbo)) == pytest.approx((80 + 90) / 2 + math.log(2), rel=1e-9)


def balance_reference(p: np.ndarray, kind: str) -> float:
    load = p.sum(0)
    if kind == "variance":
        return float(((load - load.mean()) ** 2).mean())
    if kind == "cv2":
        return float(((load - load.mean()) ** 2).mean() / load.mean() ** 2)
    if kind == "kl":
        m = p.mean(0)
        return float((m * np.log(m * p.shape[1])).sum())
    return 0.0


@pytest.mark.parametrize("kind", ["variance", "cv2", "kl", "none"])
def test_balance_matches_its_formula(kind):
    logits, _ = routing(3, b=7, k=4)
    p = softmax(logits.numpy())
    got = balance(torch.from_numpy(p), kind)
    assert got.shape == ()
    assert float(got) == pytest.approx(balance_reference(p, kind), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("kind", ["variance", "cv2", "kl"])
def test_balance_is_zero_for_an_even_batch_and_positive_otherwise(kind):
    even = torch.full((4, 2), 0.5, dtype=torch.float64)
    skewed = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]], dtype=torch.float64)
    assert float(balance(even, kind)) == pytest.approx(0.0, abs=1e-12)
    assert float(balance(skewed, kind)) > 1e-3


def test_cv2_is_scale_free_and_variance_is_not():
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], dtype=torch.float64)
    doubled = torch.cat([p, p])  # twice the batch: loads double
    assert float(balance(doubled, "cv2")) == pytest.approx(float(balance(p, "cv2")), rel=1e-9)
    assert float(balance(doubled, "variance")) == pytest.approx(4 * float(balance(p, "variance")), rel=1e-9)
    # hand computed: loads (1.8, 1.2), mean 1.5, population variance 0.09, cv2 = 0.09 / 2.25
    assert float(balance(p, "cv2")) == pytest.approx(0.04, rel=1e-8)


def test_an_unknown_balance_is_named():
    with pytest.raises(ValueError, match=r"balance='spread' is invalid: expected variance, cv2, kl or none"):
        balance(torch.full((2, 2), 0.5), "spread")


def test_marginal_entropy_of_the_mean_routing():
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # mean routing (1/2, 1/2, 0): entropy log 2; the empty expert, clamped to 1e-12, adds 3e-11
    assert float(marginal_entropy(torch.from_numpy(p))) == pytest.approx(math.log(2), abs=1e-10)
    logits, _ = routing(4)
    q = softmax(logits.numpy())
    m = q.mean(0)
    assert float(marginal_entropy(torch.from_numpy(q))) == pytest.approx(float(-(m * np.log(m)).sum()), rel=1e-12)


def test_neighbour_consistency_is_minus_the_mean_log_agreement():
    a = torch.tensor([[0.9, 0.1], [0.5, 0.5], [1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.8, 0.2], [0.5, 0.5], [0.0, 1.0]], dtype=torch.float64)
    agree = np.array([0.9 * 0.8 + 0.1 * 0.2, 0.5, 0.0])
    expected = -np.log(np.maximum(agree, 1e-8)).mean()  # no agreement at all counts as 1e-8
    assert float(neighbour_consistency(a, b)) == pytest.approx(expected, rel=1e-12)


def weighted_cross_entropy(logits: np.ndarray, targets: np.ndarray, weight: np.ndarray) -> float:
    logp = np.log(softmax(logits))
    w = weight[targets]
    return float(-(w * logp[np.arange(len(targets)), targets]).sum() / w.sum())


def test_self_label_is_weighted_cross_entropy_over_the_kept_images():
    logits, _ = routing(5, b=6, k=3)
    targets = torch.tensor([0, -1, 2, 0, -1, 1])
    weight = torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64)
    keep = targets.numpy() >= 0  # target 0 is an expert, -1 is skipped
    expected = weighted_cross_entropy(logits.numpy()[keep], targets.numpy()[keep], weight.numpy())
    assert float(self_label(logits, targets, weight)) == pytest.approx(expected, rel=1e-12)


def test_self_label_without_targets_is_a_zero_that_keeps_the_graph():
    logits = torch.randn(4, 3, requires_grad=True)
    out = self_label(logits, torch.full((4,), -1), torch.ones(3))
    assert out.item() == 0.0
    out.backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0


def test_cv2_guard_against_an_empty_batch_never_raises_the_ratio():
    """The 1e-10 only keeps an empty batch finite: with a small mean load (one image, 1,000
    experts: mean load 1e-3) cv2 stays at most var / mean^2 and within 1e-3 of it."""
    logits = torch.randn(1, 1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p = softmax(logits.numpy())
    exact = balance_reference(p, "cv2")
    got = float(balance(torch.from_numpy(p), "cv2"))
    assert got <= exact and got == pytest.approx(exact, rel=1e-3)
    assert float(balance(torch.zeros(0, 3, dtype=torch.float64), "cv2")) == 0.0
