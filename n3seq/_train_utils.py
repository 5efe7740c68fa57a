"""Small training-loop pieces shared by the adapters' experiment trainers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn


def progress_range(steps: int, show: bool, desc: str) -> Iterable[int]:
    """``range(steps)``, wrapped in a tqdm bar when ``show`` (tqdm is only needed then)."""
    if not show:
        return range(steps)
    from tqdm.auto import tqdm

    return tqdm(range(steps), desc=desc, leave=False)


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
