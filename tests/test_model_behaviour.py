"""The mixture model's loss record, its arguments and its networks, against the loss terms
recomputed from the record's own tensors."""

import pytest
import torch

from mixvae import objectives
from mixvae.config import ModelConfig
from mixvae.model import MixtureModule
from mixvae.nets import ExpertLinear


def model(**kw) -> MixtureModule:
    torch.manual_seed(0)
    base = {"n_components": 3, "image_shape": (4, 4), "latent_dim": 2, "hidden": (8,), "manager_hidden": (8,),
            "balance": "cv2", "balance_weight": 0.5}
    return MixtureModule(ModelConfig(**{**base, **kw}))


def batch(b: int = 6):
    g = torch.Generator().manual_seed(1)
    return torch.rand(b, 16, generator=g), torch.randn(3, b, 2, generator=g)


def test_parts_are_the_routing_weighted_means_of_the_terms():
    m = model()
    x, noise = batch()
    out = m.loss(x, noise)
    p = out.probs.detach().double()
    parts = out.parts()
    assert parts["recon"] == pytest.approx(float((p * out.recon.detach().double()).sum(1).mean()), rel=1e-6)
    assert parts["kl"] == pytest.approx(float((p * out.kl.detach().double()).sum(1).mean()), rel=1e-6)
    assert parts["loss"] == pytest.approx(out.loss.item()) and parts["balance"] == pytest.approx(out.balance.item())
    assert parts["mixture"] == pytest.approx(out.mixture.item())


def test_kl_weight_argument_overrides_the_configs():
    m = model(kl_weight=1.0)
    x, noise = batch()
    for w in (0.0, 0.25):
        out = m.loss(x, noise, kl_weight=w)
        torch.testing.assert_close(out.nelbo, out.recon + w * out.kl)
    out = m.loss(x, noise)
    torch.testing.assert_close(out.nelbo, out.recon + out.kl)


@pytest.mark.parametrize("objective", ["moe", "elbo"])
def test_the_loss_is_the_mixture_term_plus_the_weighted_balance(objective):
    m = model(objective=objective)
    x, noise = batch()
    out = m.loss(x, noise)
    probs = torch.softmax(out.logits, 1)
    torch.testing.assert_close(out.probs, probs)
    expected = (objectives.moe_loss(probs, out.nelbo) if objective == "moe"
                else objectives.mixture_nelbo(out.logits, out.nelbo))
    torch.testing.assert_close(out.mixture, expected)
    torch.testing.assert_close(out.balance, objectives.balance(probs, "cv2"))
    torch.testing.assert_close(out.loss, out.mixture + 0.5 * out.balance)


@pytest.mark.parametrize("route_by_loss", [True, False])
def test_the_manager_learns_from_the_experts_losses_only_when_routing_by_loss(route_by_loss):
    m = model(route_by_loss=route_by_loss, balance="none")
    x, noise = batch()
    m.loss(x, noise).loss.backward()
    grads = [p.grad for p in m.manager.parameters()]
    if route_by_loss:
        assert all(g is not None and torch.count_nonzero(g) > 0 for g in grads)
    else:
        assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)


def test_balance_is_taken_over_the_gathered_batch():
    """Several processes: ``gather`` gives the global batch's routing, and the balance is its balance."""
    m = model()
    x, noise = batch()
    others = torch.tensor([[0.9, 0.05, 0.05]] * 4)  # another process's rows
    seen = []

    def gather(p):
        seen.append(p)
        return torch.cat([p, others])

    out = m.loss(x, noise, gather=gather)
    assert len(seen) == 1 and seen[0] is out.probs
    torch.testing.assert_close(out.balance, objectives.balance(torch.cat([out.probs, others]), "cv2"))
    fwd = m(x, noise, gather=gather)  # forward passes noise and gather on
    torch.testing.assert_close(fwd.loss, out.loss)
    torch.testing.assert_close(fwd.balance, out.balance)


def test_forward_is_the_loss_with_the_views_routed():
    m = model()
    x, noise = batch()
    views = torch.rand(12, 16)
    out = m(x, noise, views)
    ref = m.loss(x, noise)
    torch.testing.assert_close(out.loss, ref.loss)
    torch.testing.assert_close(out.nelbo, ref.nelbo)
    torch.testing.assert_close(out.view_logits, m.manager_logits(views))
    assert m(x, noise).view_logits is None


@pytest.mark.parametrize("init", ["glorot_uniform", "torch"])
def test_the_model_builds_its_networks_as_configured(init):
    m = model(init=init, manager_batchnorm=True)
    assert any(isinstance(x, torch.nn.BatchNorm1d) for x in m.manager.modules())
    assert not any(isinstance(x, torch.nn.BatchNorm1d) for x in model().manager.modules())
    for net in (m.encoder, m.decoder):
        for layer in (x for x in net.modules() if isinstance(x, ExpertLinear)):
            assert bool(torch.all(layer.bias == 0)) == (init == "glorot_uniform"), layer
