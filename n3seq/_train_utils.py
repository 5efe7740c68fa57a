"""Small training-loop pieces shared by the adapters' experiment trainers."""

from __future__ import annotations

import sys
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


def optimizer_step(loss: Tensor, model: nn.Module, opt: Any, sched: Any | None = None,
                   max_grad_norm: float = 1.0) -> float:
    """Backward, gradient-norm clipping, optimizer and scheduler step; returns the loss."""
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    opt.step()
    if sched is not None:
        sched.step()
    return loss.item()


def adam_one_cycle(model: nn.Module, lr: float, steps: int) -> tuple[Any, Any | None]:
    """Adam with a one-cycle schedule over ``steps`` (a fixed lr for runs under 20 steps)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = None
    if steps >= 20:  # OneCycleLR divides by zero for some very short runs: keep lr fixed then
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    return opt, sched
