"""The per-epoch test metrics of a training record, against clustering_report on the same routing."""

from __future__ import annotations

import numpy as np
import torch

from mixvae.config import ModelConfig
from mixvae.evaluation import epoch_metrics
from mixvae.inference import predict_proba
from mixvae.metrics import clustering_report
from mixvae.model import MixtureModule


def test_epoch_metrics_are_the_reports_numbers_with_test_prefixes():
    torch.manual_seed(0)
    m = MixtureModule(ModelConfig(n_components=3, image_shape=(4, 4), latent_dim=2, hidden=(8,), manager_hidden=(8,)))
    images = np.random.default_rng(0).integers(0, 256, (40, 4, 4), dtype=np.uint8)
    labels = np.random.default_rng(1).integers(0, 3, 40)
    rep = clustering_report(labels, predict_proba(m, images))
    got = epoch_metrics(m, images, labels, 16, "cpu")
    assert got == {"usage": rep["usage"], "experts_used": rep["experts_used"],
                   "routing_entropy": rep["routing_entropy"], "test_acc": round(rep["acc"], 5),
                   "test_nmi": round(rep["nmi"], 5), "test_ari": round(rep["ari"], 5)}
    assert epoch_metrics(m, images, None, 16, "cpu") == {k: got[k] for k in ("usage", "experts_used", "routing_entropy")}
    assert epoch_metrics(m, None, labels, 16, "cpu") == {}
