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


#: Non-finite steps in a row after which :class:`DivergenceGuard` ends a run.
MAX_SKIPPED_IN_A_ROW = 10


def optimizer_step(loss: Tensor, model: nn.Module, opt: Any, sched: Any | None = None,
                   max_grad_norm: float = 1.0) -> float:
    """Backward, gradient-norm clipping, optimizer and scheduler step; returns the loss.

    A step whose loss or gradient is not finite is skipped: the weights and the optimizer's
    moments stay as they were (the scheduler still advances, so the schedule keeps its
    length), and the returned loss is NaN. :class:`DivergenceGuard` ends a run that keeps
    skipping.

    Args:
        loss: the scalar loss of the step (its graph reaches ``model``'s parameters; under
            DistributedDataParallel, the wrapped model's output).
        model: the module whose gradients are checked and clipped (the unwrapped one under
            DistributedDataParallel: the gradients are already all-reduced then).
        opt: the optimizer of ``model``'s parameters.
        sched: a learning-rate scheduler stepped after every step, or None.
        max_grad_norm: clip the gradient to this global L2 norm; ``<= 0`` does not clip.

    Returns:
        ``loss.item()``, or NaN when the step was skipped.
    """
    opt.zero_grad(set_to_none=True)
    # Backward runs even for a non-finite loss: every DistributedDataParallel rank must take
    # part in the gradient all-reduce, and the NaN it spreads makes every rank skip alike.
    loss.backward()
    value = loss.item()
    norm = float(nn.utils.clip_grad_norm_(
        model.parameters(), max_grad_norm if max_grad_norm > 0 else math.inf))
    if math.isfinite(value) and math.isfinite(norm):
        opt.step()
    else:
        opt.zero_grad(set_to_none=True)
        value = math.nan
    if sched is not None:
        with warnings.catch_warnings():
            # a skipped first step: torch warns that the scheduler steps before the optimizer
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            sched.step()
    return value


class DivergenceGuard:
    """Counts the steps :func:`optimizer_step` skipped; ends a run that keeps skipping.

    Args:
        hint: what to try, appended to the error.
        skipped: steps already skipped (a resumed run's count).

    Example:
        >>> guard = DivergenceGuard("lower the learning rate")
        >>> guard.update(0.5, step=1)
        >>> guard.update(float("nan"), step=2)
        >>> guard.skipped
        1
    """

    def __init__(self, hint: str = "lower the learning rate or check the data",
                 skipped: int = 0) -> None:
        self.hint = hint
        self.skipped = skipped
        self.in_a_row = 0

    def update(self, value: float, step: int) -> None:
        """Records the loss :func:`optimizer_step` returned for ``step`` (1-based).

        Raises:
            FloatingPointError: when this is the :data:`MAX_SKIPPED_IN_A_ROW`-th skipped step
                in a row.
        """
        if not math.isnan(value):
            self.in_a_row = 0
            return
        self.skipped += 1
        self.in_a_row += 1
        if self.in_a_row >= MAX_SKIPPED_IN_A_ROW:
            raise FloatingPointError(
                f"the loss or its gradient was not finite in {self.in_a_row} steps in a row "
                f"(steps {step - self.in_a_row + 1}-{step}): the run diverged; {self.hint}")


def adam_one_cycle(model: nn.Module, lr: float, steps: int) -> tuple[Any, Any | None]:
    """Adam with a one-cycle schedule over ``steps`` (a fixed lr for runs under 20 steps)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = None
    if steps >= 20:  # OneCycleLR divides by zero for some very short runs: keep lr fixed then
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    return opt, sched
