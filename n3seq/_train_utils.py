"""Small training-loop pieces shared by the adapters' experiment trainers."""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn


def progress_range(steps: int, show: bool, desc: str) -> Iterable[int]:
    """``range(steps)``, wrapped in a tqdm bar on stderr when ``show`` (tqdm only needed then)."""
    if not show:
        return range(steps)
    from tqdm.auto import tqdm

    return tqdm(range(steps), desc=desc, leave=False, file=sys.stderr)


#: Non-finite steps in a row after which :func:`check_not_diverged` ends a run.
MAX_SKIPPED_IN_A_ROW = 10


def optimizer_step(loss: Tensor, model: nn.Module, opt: Any, sched: Any | None = None,
                   max_grad_norm: float = 1.0) -> float:
    """Backward, gradient-norm clipping, optimizer and scheduler step; returns the loss.

    A step whose loss or gradient is not finite is skipped: the weights and the optimizer's
    moments stay as they were (the scheduler still advances, so the schedule keeps its
    length), and the returned loss is NaN. :func:`check_not_diverged` ends a run that keeps
    skipping.
    """
    opt.zero_grad()
    value = loss.item()
    if math.isfinite(value):
        loss.backward()
        norm = float(nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm))
    skipped = not (math.isfinite(value) and math.isfinite(norm))
    if skipped:
        opt.zero_grad()
        value = math.nan
    else:
        opt.step()
    if sched is not None:
        with warnings.catch_warnings():
            # a skipped first step: torch warns that the scheduler steps before the optimizer
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            sched.step()
    return value


def check_not_diverged(losses: list[float]) -> None:
    """Raises FloatingPointError when the last :data:`MAX_SKIPPED_IN_A_ROW` steps were all
    skipped as non-finite by :func:`optimizer_step`."""
    tail = losses[-MAX_SKIPPED_IN_A_ROW:]
    if len(tail) == MAX_SKIPPED_IN_A_ROW and all(math.isnan(v) for v in tail):
        raise FloatingPointError(
            f"the loss or its gradient was not finite in {MAX_SKIPPED_IN_A_ROW} steps in a row "
            f"(steps {len(losses) - MAX_SKIPPED_IN_A_ROW + 1}-{len(losses)}): the run diverged; "
            "lower the learning rate or check the data")


def adam_one_cycle(model: nn.Module, lr: float, steps: int) -> tuple[Any, Any | None]:
    """Adam with a one-cycle schedule over ``steps`` (a fixed lr for runs under 20 steps)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = None
    if steps >= 20:  # OneCycleLR divides by zero for some very short runs: keep lr fixed then
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    return opt, sched
