"""The learning-rate schedule: warm-up by steps or by a time budget's progress, then a cosine."""

from __future__ import annotations

import pytest

from dlkit.core.schedules import Schedule


def test_warm_up_then_cosine_to_the_floor() -> None:
    schedule = Schedule(1.0, warmup_fraction=0.1, floor=0.1)
    assert schedule(0.0, 0, 100) == 0.0
    assert schedule(0.05, 5, 100) == pytest.approx(0.5)
    assert schedule(0.1, 10, 100) == pytest.approx(1.0)
    assert schedule(0.55, 55, 100) == pytest.approx(0.55)  # half-way down the cosine
    assert schedule(1.0, 100, 100) == pytest.approx(0.1)


def test_a_time_budget_ends_the_warm_up_by_its_progress() -> None:
    """A budget whose planned steps never all run: the warm-up ends at its progress share
    (100 of 123,000 planned steps: after 0.08% of the budget, a step or two)."""
    schedule = Schedule(1.0, warmup_fraction=0.03, warmup_steps=100)
    assert schedule(0.03, 12, 1230) == pytest.approx(1.0, abs=1e-5)
    assert schedule(0.001, 1, 123_000) == pytest.approx(1.0, abs=1e-5)


def test_min_warmup_steps_hold_in_a_short_budget() -> None:
    schedule = Schedule(1.0, warmup_fraction=0.03, warmup_steps=100, floor=0.1,
                        min_warmup_steps=100)
    assert schedule(0.03, 12, 123_000) == pytest.approx(0.12)
    assert schedule(0.2, 50, 123_000) == pytest.approx(0.5)
    after = schedule(0.4, 100, 123_000)  # then the cosine where the budget has got to
    assert after == pytest.approx(Schedule(1.0, warmup_fraction=0.03, warmup_steps=100,
                                           floor=0.1)(0.4, 100, 123_000))
    assert schedule(1.0, 400, 123_000) == pytest.approx(0.1)
