"""The mixture of VAEs as a probability model: routing, inference, generation and the loss.

Generative story, for an image x with D pixels and K experts::

    k ~ Categorical(pi)                   pi uniform over the K experts
    z ~ N(0, I_L)
    x ~ p_k(x | z) = N(decoder_k(z), std^2 I)         (likelihood = "gaussian", pixels in [0, 1])
               or  Bernoulli(sigmoid(decoder_k(z)))   (likelihood = "bernoulli")
               or  N(decoder_k(z), diag(var_k))       (vectors: standardised features, var_k
                                                       learned; see mixvae.kinds.vectors)

The kind of input (:mod:`mixvae.kinds`) owns the likelihood and the decoder's mean.

Inference: the manager m(x) = softmax(manager(x)) is q(k | x), and each expert has its own
encoder q_k(z | x) = N(mu_k(x), diag var_k(x)). Expert k's negative ELBO is

    L_k(x) = -E_{q_k(z|x)} log p_k(x | z) + KL(q_k(z | x) || N(0, I))

and the objectives in :mod:`mixvae.objectives` combine the L_k with the routing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from mixvae import objectives
from mixvae.config import ModelConfig
from mixvae.convnets import ConvExpertDecoder, ConvExpertEncoder, ConvManager
from mixvae.devices import cpu_draw
from mixvae.kinds import kind_of, resolve_model
from mixvae.nets import ExpertDecoder, ExpertEncoder, Manager

__all__ = ["LossOutput", "MixtureModule"]


@dataclass
class LossOutput:
    """The total loss and its per-sample parts (all tensors)."""

    loss: torch.Tensor  # () the scalar that is minimised
    nelbo: torch.Tensor  # (B, K) each expert's negative ELBO L_k(x)
    recon: torch.Tensor  # (B, K) reconstruction term
    kl: torch.Tensor  # (B, K) KL term
    logits: torch.Tensor  # (B, K) routing logits
    probs: torch.Tensor  # (B, K) routing probabilities q(k|x)
    mixture: torch.Tensor  # () the mixture part of the loss
    balance: torch.Tensor  # () the (unweighted) balance term
    view_logits: torch.Tensor | None = None  # (V*B, K) routing logits of extra views, when asked for

    def parts(self) -> dict[str, float]:
        """Scalar summaries for logging."""
        return {
            "loss": float(self.loss.detach()),
            "mixture": float(self.mixture.detach()),
            "recon": float((self.probs * self.recon).sum(1).mean().detach()),
            "kl": float((self.probs * self.kl).sum(1).mean().detach()),
            "balance": float(self.balance.detach()),
        }


class MixtureModule(nn.Module):
    """K expert VAEs and a manager, as one torch module (see the module docstring for the maths)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = self.config = resolve_model(config)  # "auto" settings decided by the kind of input
        self.kind = kind_of(c)
        K, D = c.n_components, c.input_dim
        self.manager: nn.Module
        if c.manager_network == "conv":
            self.manager = ConvManager((*c.image_shape, c.channels), c.manager_conv_channels, c.manager_hidden, K,
                                       c.manager_activation, c.init, c.manager_batchnorm)
        else:
            self.manager = Manager(D, c.manager_hidden, K, c.manager_activation, c.init, c.manager_batchnorm)
        self.encoder: nn.Module
        self.decoder: nn.Module
        if c.expert_network == "conv":
            shape = (*c.image_shape, c.channels)
            self.encoder = ConvExpertEncoder(K, shape, c.conv_channels, c.hidden, c.latent_dim, c.activation, c.init,
                                             c.min_var)
            self.decoder = ConvExpertDecoder(K, shape, c.conv_channels, c.hidden, c.latent_dim, c.activation, c.init)
        else:
            self.encoder = ExpertEncoder(K, D, c.hidden, c.latent_dim, c.activation, c.init, c.min_var)
            self.decoder = ExpertDecoder(K, c.latent_dim, c.hidden, D, c.activation, c.init)
        self.log_var: nn.Parameter | None = None
        if self.kind.learns_variance:  # one learned log-variance per expert and feature
            self.log_var = nn.Parameter(torch.full((K, 1, D), self.kind.initial_log_var(c)))

    # ----------------------------------------------------------------- pieces
    def manager_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Routing logits, x (B, D) -> (B, K)."""
        return self.manager(x)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q_k(z|x) for every expert: x (B, D) -> mean, variance, each (K, B, L)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean of p_k(x|z): z (K, B, L) -> (K, B, D), pixel values in [0, 1] (vectors: standardised)."""
        out = self.decoder(z)
        return self.kind.mean(out)

    def nll(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """-log p_k(x|z) from decoder pre-activations out (K, B, D) -> (K, B)."""
        return self.kind.nll(self.config, x, out, self.log_var)

    def expert_terms(
        self, x: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One-sample reconstruction and analytic KL of every expert: x (B, D) -> (B, K), (B, K).

        ``noise`` (K, B, L) is the standard normal draw of the reparameterisation; when None it is
        drawn from torch's global generator.
        """
        mu, var = self.encode(x)  # (K, B, L)
        if noise is None:
            noise = torch.randn_like(mu)
        z = mu + var.sqrt() * noise  # (K, B, L)
        recon = self.nll(x, self.decoder(z))  # (K, B)
        kl = 0.5 * (var + mu * mu - 1.0 - var.log()).sum(-1)  # (K, B)
        return recon.t(), kl.t()

    # ----------------------------------------------------------------- loss
    def loss(
        self, x: torch.Tensor, noise: torch.Tensor | None = None, kl_weight: float | None = None,
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> LossOutput:
        """The training objective on a batch x (B, D) with pixels in [0, 1].

        The balance term is a nonlinear function of the whole batch's routing. When the batch is
        split over several processes, ``gather`` maps this process's routing (B, K) to the global
        batch's (world * B, K), differentiably, so that the term is the one-process term.
        """
        c = self.config
        logits = self.manager_logits(x)  # (B, K)
        probs = logits.softmax(-1)  # (B, K)
        recon, kl = self.expert_terms(x, noise)  # (B, K)
        w = c.kl_weight if kl_weight is None else kl_weight
        nelbo = recon + w * kl  # (B, K)
        mix_logits = logits if c.route_by_loss else logits.detach()
        if c.objective == "moe":
            mixture = objectives.moe_loss(mix_logits.softmax(-1), nelbo)
        else:
            mixture = objectives.mixture_nelbo(mix_logits, nelbo)
        balance = objectives.balance(probs if gather is None else gather(probs), c.balance)
        loss = mixture + c.balance_weight * balance
        return LossOutput(loss, nelbo, recon, kl, logits, probs, mixture, balance)

    def forward(
        self, x: torch.Tensor, noise: torch.Tensor | None = None, x_views: torch.Tensor | None = None,
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> LossOutput:
        """The loss, so that wrappers such as DistributedDataParallel see one forward call.

        Every use of the parameters in a step happens here: ``x_views`` (V*B, D), when given (for
        example deformed copies of x and of its neighbours), is routed too and returned as
        ``view_logits`` for the manager's regulariser.
        """
        out = self.loss(x, noise, gather=gather)
        if x_views is not None:
            out.view_logits = self.manager_logits(x_views)  # (V*B, K)
        return out

    # ----------------------------------------------------------------- use
    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """q(k|x), (B, D) -> (B, K)."""
        return self.manager_logits(x).softmax(-1)

    @torch.no_grad()
    def sample(
        self, n: int, expert: int | torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Decode n draws z ~ N(0, I) with the given expert(s): -> mean images (n, D) in [0, 1].

        ``expert`` is one index for all n samples or a (n,) tensor of indices.
        """
        c = self.config
        dev = next(self.parameters()).device
        z = cpu_draw(torch.randn, n, c.latent_dim, generator=generator, device=dev)  # (n, L)
        experts = torch.as_tensor(expert, device=dev).expand(n) if not torch.is_tensor(expert) or expert.dim() == 0 \
            else expert.to(dev)
        # decode with every expert, then pick each sample's own: (K, n, D) -> (n, D)
        images = self.decode(z.expand(c.n_components, n, c.latent_dim))
        return images[experts, torch.arange(n, device=dev)]

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor, n_samples: int = 1, generator: torch.Generator | None = None,
                       chunk: int = 100, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Importance-weighted lower bound on log p(x) in nats, (B, D) -> (B,).

        p(x) = sum_k pi_k p_k(x), and each p_k(x) = E_{q_k(z|x)} [p_k(x|z) p(z) / q_k(z|x)]. The
        sum over experts is exact; S = n_samples draws z_s^k ~ q_k(z|x) per expert give

            log p(x) >= E log sum_k pi_k (1/S) sum_s p_k(x|z_s^k) p(z_s^k) / q_k(z_s^k|x),

        a bound that tightens towards log p(x) as S grows (Burda et al., 2015). ``noise``
        (S, K, B, L), when given, is the standard normal draw of the z_s^k (else drawn from
        ``generator``).
        """
        c = self.config
        K, L = c.n_components, c.latent_dim
        mu, var = self.encode(x)  # (K, B, L)
        std = var.sqrt()
        B = x.shape[0]
        log_ws = []
        for start in range(0, n_samples, chunk):
            s = min(chunk, n_samples - start)
            eps = (cpu_draw(torch.randn, s, K, B, L, generator=generator) if noise is None
                   else noise[start:start + s]).to(x.device)  # (S, K, B, L)
            z = mu + std * eps  # (S, K, B, L)
            out = self.decoder(z.permute(1, 0, 2, 3).reshape(K, s * B, L))  # (K, S*B, D)
            xs = x.repeat(s, 1)  # (S*B, D)
            log_px = -self.nll(xs, out).view(K, s, B).transpose(0, 1)  # (S, K, B)
            log_pz = (-0.5 * z * z - 0.5 * math.log(2 * math.pi)).sum(-1)  # (S, K, B)
            log_qz = (-0.5 * eps * eps - 0.5 * math.log(2 * math.pi) - std.log()).sum(-1)  # (S, K, B)
            log_ws.append(log_px + log_pz - log_qz - math.log(K))  # (S, K, B)
        log_w = torch.cat(log_ws, 0)  # (S, K, B)
        # log (1/S) sum_s sum_k w: a mixture over experts of per-expert IW bounds
        return torch.logsumexp(log_w.flatten(0, 1), 0) - math.log(n_samples)  # (B,)
