"""Objectives: how the experts' negative ELBOs combine with the routing, balance terms and
manager regularisers. Every function takes per-sample tensors and returns a scalar to minimise.
"""

from __future__ import annotations

import math

import torch

__all__ = ["balance", "marginal_entropy", "mixture_nelbo", "moe_loss", "neighbour_consistency", "self_label"]


def moe_loss(probs: torch.Tensor, nelbo: torch.Tensor) -> torch.Tensor:
    """The seed's mixture-of-experts loss, mean_x sum_k m_k(x) L_k(x). probs, nelbo: (B, K)."""
    return (probs * nelbo).sum(1).mean()


def mixture_nelbo(logits: torch.Tensor, nelbo: torch.Tensor, log_pi: torch.Tensor | None = None) -> torch.Tensor:
    """Negative mixture ELBO with q(k|x) = softmax(logits) and a prior pi over experts.

    -sum_k q(k|x) [ELBO_k(x) + log pi_k - log q(k|x)], averaged over the batch; pi is uniform
    unless ``log_pi`` (K,) is given. logits, nelbo: (B, K).
    """
    K = logits.shape[1]
    log_q = logits.log_softmax(1)  # (B, K)
    q = log_q.exp()
    if log_pi is None:
        log_pi = torch.full((K,), -math.log(K), device=logits.device, dtype=logits.dtype)
    return (q * (nelbo - log_pi + log_q)).sum(1).mean()


def balance(probs: torch.Tensor, kind: str) -> torch.Tensor:
    """How far the batch's total routing is from uniform. probs (B, K) -> ().

    ``variance``: population variance over experts of the batch-summed routing (the seed's);
    ``cv2``: squared coefficient of variation of the same sums (scale free);
    ``kl``: KL(mean_x q(.|x) || uniform) = log K - H(mean routing);
    ``none``: zero.
    """
    if kind == "none":
        return probs.new_zeros(())
    load = probs.sum(0)  # (K,)
    if kind == "variance":
        return load.var(unbiased=False)
    if kind == "cv2":
        return load.var(unbiased=False) / (load.mean() ** 2 + 1e-10)
    if kind == "kl":
        return math.log(probs.shape[1]) - marginal_entropy(probs)
    raise ValueError(f"balance={kind!r} is invalid: expected variance, cv2, kl or none")


def marginal_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy of the batch's mean routing, H(mean_x q(.|x)). probs (B, K) -> ()."""
    p = probs.mean(0).clamp_min(1e-12)  # (K,)
    return -(p * p.log()).sum()


def neighbour_consistency(probs: torch.Tensor, neighbour_probs: torch.Tensor) -> torch.Tensor:
    """-mean log <q(.|x), q(.|x')> for each image x and one of its nearest neighbours x'.

    Low when an image and its neighbour are routed to the same expert with confidence (SCAN,
    Van Gansbeke et al., 2020). probs, neighbour_probs: (B, K).
    """
    agree = (probs * neighbour_probs).sum(1)  # (B,)
    return -agree.clamp_min(1e-8).log().mean()


def self_label(logits: torch.Tensor, targets: torch.Tensor, class_weight: torch.Tensor) -> torch.Tensor:
    """Cross-entropy towards the manager's own confident routings (targets >= 0; -1 is skipped),
    weighted per expert so that large clusters do not swallow small ones. logits (B, K), targets (B,).
    """
    keep = targets >= 0
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return torch.nn.functional.cross_entropy(logits[keep], targets[keep], weight=class_weight)
