"""Fit a training run's number of epochs to a wall-clock budget.

A one-cycle or decaying learning-rate schedule only works when it runs to
its end: cut off half-way, the rate is still high and the network has not
settled. So a time budget does not stop a run; it chooses how many epochs
the schedule spans, from the run's own measured speed, and the run ends
annealed within the budget on a fast CPU and a slow one alike.

The plan is made after the first few steps and made again after every
epoch, with the latest epoch's step time and what validation and
checkpoints cost it. It may grow only while a decaying schedule is in
its first half, where one more epoch raises the rate by little (1/N of
it in an N-epoch run), and only by what would fit at a 3 % slower pace,
so that it does not go back and forth; after that it only shrinks (when
the machine slows down), so the learning rate never climbs back up.

>>> budget = TimeBudget(60.0, start=0.0, steps_per_epoch=10, cap=None)
>>> for _ in range(10):
...     budget.step_done(1.0)              # one second per step
>>> budget.epoch_done(wall=12.0)           # plus 2 s of validation and saving
>>> budget.plan(epoch=1, step=0, planned=6, now=12.0)   # (60 - 5 s reserve - 12) // 12 = 3 more
4
"""

from __future__ import annotations

import math
import time

# The clock a training run measures itself with: its start, its steps, its
# epochs. A module attribute so that a test can drive a run's time.
clock = time.perf_counter

# Seconds kept for writing the final model and its learning curves.
FINISH_RESERVE = 5.0
# A decaying schedule's plan may grow only until this share of it has run:
# one more epoch at half-way raises the rate by 1/N (5 % of it in a 20-epoch run).
GROWTH_LIMIT = 0.5
# ... and only by the epochs that would fit at a pace this much slower.
GROWTH_MARGIN = 0.03
# The first steps of a run are slow (allocations, kernel selection): not counted.
WARMUP_STEPS = 2
# Steps of the first epoch after which the first plan is made.
CALIBRATION_STEPS = 10
# A forward pass of a batch costs about this share of a training step.
FORWARD_SHARE = 1 / 3


class TimeBudget:
    """How many epochs fit between ``start`` and ``start + seconds``.

    ``steps_per_epoch`` is the run's; ``cap`` the most epochs it may run
    (``None``: as many as fit). ``eval_batches`` is the forward passes of a
    training-sized batch that validation takes per epoch, used to guess
    its cost until the first epoch has measured it. ``constant`` says the
    learning rate does not decay, so the plan may grow at any time.
    """

    def __init__(self, seconds: float, *, start: float, steps_per_epoch: int, cap: int | None,
                 eval_batches: float = 0.0, constant: bool = False) -> None:
        self.deadline = start + float(seconds) - FINISH_RESERVE
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.cap = cap
        self.eval_batches = float(eval_batches)
        self.constant = constant
        self.durations: list[float] = []
        self.overhead: float | None = None  # measured seconds per epoch outside the training steps
        self._epoch_steps = 0.0

    def step_done(self, seconds: float) -> None:
        """Record one training step's wall-clock seconds."""
        self.durations.append(float(seconds))
        self._epoch_steps += float(seconds)

    def epoch_done(self, wall: float) -> None:
        """Record an epoch's wall-clock seconds; the part not spent in steps is its overhead."""
        self.overhead = max(0.0, wall - self._epoch_steps)
        self._epoch_steps = 0.0

    def step_seconds(self) -> float:
        """The mean training step over the last epoch's worth, the run's first slow ones left out (0 before any).

        >>> budget = TimeBudget(60, start=0, steps_per_epoch=5, cap=None)
        >>> for seconds in (9.0, 5.0, 1.0, 1.0, 1.0, 1.0):
        ...     budget.step_done(seconds)
        >>> budget.step_seconds()
        1.0
        """
        first = WARMUP_STEPS if len(self.durations) > 2 * WARMUP_STEPS else 0
        # The latest epoch's pace: a machine that slows down is seen within one epoch.
        counted = self.durations[max(first, len(self.durations) - self.steps_per_epoch):]
        return sum(counted) / len(counted) if counted else 0.0

    def _overhead(self, step_seconds: float) -> float:
        """An epoch's seconds outside its steps: measured, or guessed from the validation work."""
        return self.overhead if self.overhead is not None else self.eval_batches * step_seconds * FORWARD_SHARE

    def epoch_seconds(self) -> float:
        """The expected wall-clock seconds of one whole epoch."""
        step = self.step_seconds()
        return self.steps_per_epoch * step + self._overhead(step)

    def plan(self, *, epoch: int, step: int, planned: int, now: float) -> int:
        """The number of epochs the run should span, given ``epoch`` completed
        epochs and ``step`` steps into the next, at clock time ``now``.

        A result equal to ``epoch`` (at an epoch boundary) means no further
        epoch fits: stop. It is never below 1.

        >>> budget = TimeBudget(100, start=0, steps_per_epoch=10, cap=None)
        >>> for _ in range(10):
        ...     budget.step_done(2.0)
        >>> budget.plan(epoch=0, step=10, planned=5, now=20.0)   # the guessed overhead is 0
        4
        >>> budget.plan(epoch=3, step=0, planned=10, now=80.0)   # late: only shrinks, and 15 s fit nothing
        3
        """
        step_seconds = self.step_seconds()
        epoch_seconds = self.steps_per_epoch * step_seconds + self._overhead(step_seconds)
        remaining = self.deadline - now
        finished = epoch
        if step:  # the current epoch is always finished
            finished += 1
            remaining -= (self.steps_per_epoch - step) * step_seconds + self._overhead(step_seconds)

        def fitting(pace: float) -> int:
            return finished + (max(0, math.floor(remaining / pace)) if pace > 0 else 0)

        fit = fitting(epoch_seconds)
        if fit > planned:
            # Grow only early in a decaying schedule, and only by what would fit at a
            # slightly slower pace, so that the plan does not go back and forth.
            progress = (epoch * self.steps_per_epoch + step) / (max(1, planned) * self.steps_per_epoch)
            may_grow = self.constant or progress <= GROWTH_LIMIT
            fit = max(planned, fitting(epoch_seconds * (1 + GROWTH_MARGIN))) if may_grow else planned
        if self.cap is not None:
            fit = min(fit, self.cap)
        return max(1, finished, fit)
