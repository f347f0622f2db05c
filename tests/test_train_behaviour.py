"""The training loop's records and stopping, checked against what its steps did."""

from __future__ import annotations

import numpy as np
import pytest

from mixvae.train import History, Runtime, Trainer

from conftest import blobs
from test_train import blob_config


def recording_trainer(cfg, x, **kw) -> tuple[Trainer, list[dict[str, float]]]:
    """A Trainer whose forward call also keeps each step's loss parts."""
    trainer = Trainer(cfg, x, log=None, **kw)
    steps: list[dict[str, float]] = []
    forward = trainer.forward

    def spy(*args):
        out = forward(*args)
        steps.append(out.parts())
        return out

    trainer.forward = spy
    return trainer, steps


def test_an_epoch_record_is_the_mean_of_its_steps_parts():
    x, y = blobs(n_per=30, k=4)
    cfg = blob_config(epochs=2, batch_size=40)
    trainer, steps = recording_trainer(cfg, x, test_images=x[:50], test_labels=y[:50])
    _, history = trainer.run()
    per_epoch = len(x) // 40
    assert len(steps) == 2 * per_epoch and len(history) == 2
    for e, record in enumerate(history.records):
        assert record["epoch"] == e + 1 and record["step"] == (e + 1) * per_epoch and record["seconds"] >= 0
        for key in ("loss", "mixture", "recon", "kl", "balance"):
            mean = np.mean([s[key] for s in steps[e * per_epoch:(e + 1) * per_epoch]])
            assert record[key] == pytest.approx(round(mean, 5), abs=1e-9), key
        assert {"test_acc", "test_nmi", "test_ari", "usage", "experts_used", "routing_entropy"} <= set(record)
    assert history.column("epoch") == [1, 2] and history.column("missing") == [None, None]
    assert history[1] is history.records[1]


def test_max_steps_stops_inside_an_epoch():
    x, _ = blobs(n_per=30, k=4)
    trainer, steps = recording_trainer(blob_config(epochs=3, batch_size=40), x, runtime=Runtime(max_steps=4))
    _, history = trainer.run()
    assert len(steps) == 4 and trainer.state.step == 4 and len(history) == 1  # 3 steps an epoch: one finished
    assert trainer.state.epoch == 1 and trainer.state.step_in_epoch == 1


def test_history_appends_in_order():
    h = History()
    h.append({"a": 1})
    h.append({"a": 2, "b": 3})
    assert len(h) == 2 and h.column("a") == [1, 2] and h.column("b") == [None, 3] and h[0] == {"a": 1}
