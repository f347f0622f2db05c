import math

import pytest
import torch

from mixvae.config import ModelConfig, preset
from mixvae.model import MixtureModule


def small(**kw):
    base = {"n_components": 3, "image_shape": (6, 6), "latent_dim": 2, "hidden": (8,), "manager_hidden": (8,)}
    base.update(kw)
    return MixtureModule(ModelConfig(**base))


@pytest.mark.parametrize("objective", ["moe", "elbo"])
@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_shapes_dtypes_and_probabilities(objective, likelihood):
    torch.manual_seed(0)
    m = small(objective=objective, likelihood=likelihood)
    x = torch.rand(5, 36)
    out = m.loss(x)
    assert out.loss.shape == () and out.loss.dtype == torch.float32
    for t in (out.nelbo, out.recon, out.kl, out.probs, out.logits):
        assert t.shape == (5, 3) and t.dtype == torch.float32
    torch.testing.assert_close(out.probs.sum(1), torch.ones(5))
    assert torch.all(out.kl >= 0)
    mu, var = m.encode(x)
    assert mu.shape == var.shape == (3, 5, 2) and torch.all(var > 0)
    assert m.decode(mu).shape == (3, 5, 36)
    s = m.sample(4, 1)
    assert s.shape == (4, 36) and s.min() >= 0 and s.max() <= 1


def test_sample_uses_the_requested_expert():
    torch.manual_seed(0)
    m = small()
    g = lambda: torch.Generator().manual_seed(3)
    z = torch.randn(4, 2, generator=g())
    for k in range(3):
        expected = m.decode(z.expand(3, 4, 2))[k]
        torch.testing.assert_close(m.sample(4, k, generator=g()), expected)


def test_one_step_changes_every_weight_and_steps_lower_the_loss():
    torch.manual_seed(0)
    m = small(objective="elbo", likelihood="bernoulli")
    x = torch.rand(16, 36)
    noise = torch.randn(3, 16, 2)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = float(m.loss(x, noise).loss.detach())
    for i in range(30):
        opt.zero_grad()
        m.loss(x, noise).loss.backward()
        opt.step()
        if i == 0:
            for k, v in m.state_dict().items():
                assert not torch.equal(before[k], v), f"{k} did not change"
    assert float(m.loss(x, noise).loss.detach()) < first - 1.0


def test_k1_equals_a_plain_vae_negative_elbo():
    """With one expert the routing is 1, and both objectives reduce to the VAE's negative ELBO,
    computed here from scratch with the same weights."""
    torch.manual_seed(0)
    for objective in ("moe", "elbo"):
        m = small(n_components=1, objective=objective, balance="none")
        x = torch.rand(4, 36)
        eps = torch.randn(1, 4, 2)
        out = m.loss(x, eps)
        enc1, mu_l, lv_l = m.encoder.trunk.layers[0], m.encoder.mu, m.encoder.log_var
        dec1, dec2 = m.decoder.trunk.layers[0], m.decoder.out
        h = torch.sigmoid(x @ enc1.weight[0] + enc1.bias[0])
        mu = h @ mu_l.weight[0] + mu_l.bias[0]
        var = 1e-5 + torch.exp(h @ lv_l.weight[0] + lv_l.bias[0])
        z = mu + var.sqrt() * eps[0]
        mean = torch.sigmoid(torch.sigmoid(z @ dec1.weight[0] + dec1.bias[0]) @ dec2.weight[0] + dec2.bias[0])
        rec = -torch.distributions.Normal(mean, 0.5).log_prob(x).sum(1)
        q = torch.distributions.Normal(mu, var.sqrt())
        p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
        kl = torch.distributions.kl_divergence(q, p).sum(1)
        torch.testing.assert_close(out.loss, (rec + kl).mean())


def test_seed_balance_is_population_variance_of_batch_sums():
    torch.manual_seed(0)
    m = small()
    out = m.loss(torch.rand(10, 36))
    load = out.probs.sum(0)
    torch.testing.assert_close(out.balance, ((load - load.mean()) ** 2).mean())
    torch.testing.assert_close(out.loss, (out.probs * out.nelbo).sum(1).mean() + 0.1 * out.balance)


def test_mixture_elbo_adds_routing_entropy():
    torch.manual_seed(0)
    m = small(objective="elbo", balance="none")
    x = torch.rand(6, 36)
    out = m.loss(x, torch.randn(3, 6, 2))
    q = out.probs
    expected = (q * (out.nelbo + math.log(3) + q.log())).sum(1).mean()
    torch.testing.assert_close(out.loss, expected)


def test_importance_weighted_bound_tightens():
    torch.manual_seed(0)
    m = small(likelihood="bernoulli")
    x = torch.rand(8, 36).round()
    g = torch.Generator().manual_seed(0)
    one = torch.stack([m.log_likelihood(x, 1, generator=g) for _ in range(200)]).mean(0)
    many = m.log_likelihood(x, 500, generator=g)
    assert torch.all(many > one - 0.05)
    assert torch.all(torch.isfinite(many))


def test_default_preset_builds_for_any_image_size():
    cfg = preset("default", n_components=4, image_shape=(10, 12))
    m = MixtureModule(cfg.model)
    out = m.loss(torch.rand(3, 120))
    assert out.probs.shape == (3, 4)
