"""imagerec.training.time_budget: how many epochs fit, when the plan may grow and when it must shrink."""

from __future__ import annotations

from imagerec.training.time_budget import FINISH_RESERVE, TimeBudget


def _measured(seconds: float, *, pace: float = 1.0, steps: int = 10, overhead: float = 0.0, **options) -> TimeBudget:
    """A budget after one epoch of ``steps`` steps at ``pace`` seconds each, plus ``overhead``."""
    budget = TimeBudget(seconds + FINISH_RESERVE, start=0.0, steps_per_epoch=steps, cap=options.pop("cap", None), **options)
    for _ in range(steps):
        budget.step_done(pace)
    budget.epoch_done(wall=steps * pace + overhead)
    return budget


def test_the_epochs_that_fit_count_validation_and_checkpoints() -> None:
    budget = _measured(100, overhead=2.5)  # 12.5 s an epoch
    assert budget.epoch_seconds() == 12.5
    assert budget.plan(epoch=1, step=0, planned=20, now=12.5) == 8  # 87.5 s left: 7 more (20 was too many)


def test_the_plan_grows_early_with_a_margin_and_not_after_half_way() -> None:
    budget = _measured(105)  # 10 s an epoch, 95 s left after the first
    assert budget.plan(epoch=1, step=0, planned=4, now=10) == 10  # 9 more fit, even 3 % slower
    tight = _measured(99.5)  # 89.5 s left: 8 more fit at 10 s, and at 10.3 s too
    assert tight.plan(epoch=1, step=0, planned=4, now=10) == 9
    edge = _measured(90.5)  # 80.5 s left: 8 more at 10 s, but only 7 at a 3 % slower pace
    assert edge.plan(epoch=1, step=0, planned=4, now=10) == 8
    assert edge.plan(epoch=1, step=0, planned=8, now=10) == 8
    late = _measured(200)
    assert late.plan(epoch=6, step=0, planned=10, now=60) == 10  # past half-way: never more


def test_the_plan_shrinks_at_any_time_and_stops_when_nothing_fits() -> None:
    budget = _measured(50)
    assert budget.plan(epoch=3, step=0, planned=10, now=30) == 5
    assert budget.plan(epoch=4, step=0, planned=5, now=45) == 4  # 5 s left: stop


def test_a_constant_schedule_may_grow_at_any_time_and_the_cap_holds() -> None:
    assert _measured(200, constant=True).plan(epoch=6, step=0, planned=10, now=60) == 19
    assert _measured(200, cap=12).plan(epoch=1, step=0, planned=4, now=10) == 12


def test_mid_epoch_plans_finish_the_current_epoch_first() -> None:
    budget = TimeBudget(35 + FINISH_RESERVE, start=0.0, steps_per_epoch=10, cap=None, eval_batches=6)
    for _ in range(4):
        budget.step_done(1.0)
    # 6 steps left (6 s) and validation guessed at 6 batches × a third of a step (2 s):
    # 31 - 8 = 23 s after this epoch, room for one more 12 s epoch.
    assert budget.epoch_seconds() == 12
    assert budget.plan(epoch=0, step=4, planned=10, now=4) == 2
    assert TimeBudget(1, start=0.0, steps_per_epoch=10, cap=None).plan(epoch=0, step=4, planned=10, now=4) == 1
