"""The regulariser schedule: which regulariser each epoch gets, and the state it saves."""

from __future__ import annotations

from typing import Any

from mixvae.regularisers import Regulariser, Schedule


class Named(Regulariser):
    def __init__(self, name: str):
        self.name, self.loaded = name, None

    def state_dict(self) -> dict[str, Any]:
        return {self.name: 1}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loaded = state


def test_the_latest_started_phase_wins_and_before_the_first_there_is_none():
    a, b = Named("a"), Named("b")
    s = Schedule([(5, b), (2, a)])  # given out of order
    assert type(s.at(0)) is Regulariser and type(s.at(1)) is Regulariser
    assert s.at(2) is a and s.at(4) is a and s.at(5) is b and s.at(100) is b
    assert type(Schedule().at(3)) is Regulariser


def test_the_schedule_saves_and_restores_every_phase():
    a, b = Named("a"), Named("b")
    s = Schedule([(0, a), (3, b)])
    assert s.state_dict() == {"a": 1, "b": 1}
    s.load_state_dict({"x": 2})
    assert a.loaded == b.loaded == {"x": 2}


def test_the_plain_regulariser_adds_nothing():
    r = Regulariser()
    assert r.start_epoch(None, 0, True, None) == {} and r.views(None, None) is None  # type: ignore[arg-type]
    assert r.loss(None, None) is None and r.state_dict() == {}  # type: ignore[arg-type]
