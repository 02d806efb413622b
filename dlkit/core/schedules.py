"""The learning-rate schedule every training command uses: linear warm-up, cosine decay.

A pure function of the run's progress in [0, 1] (steps or minutes, see
`dlkit.core.callbacks.TimeBudget`) and of the step, so a resumed run gets the same rates as an
uninterrupted one. Families differ only in the numbers: where the warm-up starts, how long it
is, and how low the decay ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """`peak` reached after a linear warm-up from `start * peak`, then a cosine down to
    `floor * peak` at the end of the run.

    The warm-up lasts `warmup_fraction` of the planned steps, capped at `warmup_steps` steps,
    or `warmup_fraction` of the run's progress (a short time budget), whichever ends first; but
    at least `min_warmup_steps` steps, however short the budget (a high peak rate needs them:
    a run of many planned epochs in a few minutes would otherwise start at its peak)."""

    peak: float
    warmup_fraction: float = 0.1
    warmup_steps: int | None = None  # a cap on the warm-up's length in steps
    start: float = 0.0  # the warm-up's first rate, as a fraction of the peak
    floor: float = 0.0  # the final rate, as a fraction of the peak
    min_warmup_steps: int = 0

    def __call__(self, progress: float, step: int, total_steps: int) -> float:
        warmup = max(1, int(total_steps * self.warmup_fraction))
        if self.warmup_steps is not None:
            warmup = max(1, min(warmup, self.warmup_steps))
        ends = min(self.warmup_fraction, warmup / max(1, total_steps))  # as progress
        warm = max(step / warmup, progress / ends if ends > 0 else 1.0)
        if self.min_warmup_steps:
            warm = min(warm, step / self.min_warmup_steps)
        if warm < 1:
            return self.peak * (self.start + (1 - self.start) * warm)
        decayed = min(1.0, max(0.0, (progress - ends) / max(1e-9, 1 - ends)))
        cosine = 0.5 * (1 + math.cos(math.pi * decayed))
        return self.peak * (self.floor + (1 - self.floor) * cosine)
