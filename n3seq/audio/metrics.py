"""Scale-invariant signal-to-distortion ratio (SI-SDR) and its improvement over the input."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from n3seq._checks import check_floating


def _check_pair(estimate: Tensor, target: Tensor) -> None:
    check_floating(estimate, "estimate")
    check_floating(target, "target")
    if estimate.shape != target.shape:
        raise ValueError(
            f"estimate and target must have the same shape (..., L), got "
            f"{tuple(estimate.shape)} and {tuple(target.shape)}"
        )
    if estimate.dim() < 1 or estimate.shape[-1] < 2:
        raise ValueError(
            f"signals must have shape (..., L) with L >= 2, got {tuple(estimate.shape)}"
        )


def si_sdr(estimate: Tensor, target: Tensor, zero_mean: bool = True, eps: float = 1e-8) -> Tensor:
    r"""Scale-invariant signal-to-distortion ratio in dB (Le Roux et al., 2019).

    The target is scaled to best match the estimate, :math:`s_t = \frac{\langle \hat s, s\rangle}
    {\lVert s\rVert^2} s`, and the ratio of its energy to that of the residual
    :math:`e = \hat s - s_t` is returned:
    :math:`10 \log_{10} \lVert s_t\rVert^2 / \lVert e\rVert^2`.
    Multiplying the estimate or the target by a non-zero constant does not change the value.

    Args:
        estimate: estimated signal.
        target: reference signal.
        zero_mean: remove each signal's mean first (the usual definition).
        eps: added to both energies so that a perfect estimate gives a large finite value
            instead of ``inf``.

    Returns:
        SI-SDR in dB for every signal, shape ``(...)``.

    Shape:
        - estimate, target: :math:`(..., L)`
        - output: :math:`(...)`

    Example:
        >>> s = torch.randn(2, 16000)
        >>> si_sdr(s + 0.1 * torch.randn(2, 16000), s).shape
        torch.Size([2])
    """
    _check_pair(estimate, target)
    if zero_mean:
        estimate = estimate - estimate.mean(dim=-1, keepdim=True)
        target = target - target.mean(dim=-1, keepdim=True)
    dot = (estimate * target).sum(dim=-1, keepdim=True)
    energy = (target * target).sum(dim=-1, keepdim=True)
    projection = dot / (energy + eps) * target
    noise = estimate - projection
    ratio = (projection.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps)
    return 10 * torch.log10(ratio)


def si_sdr_improvement(estimate: Tensor, mixture: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
    """SI-SDR of the estimate minus SI-SDR of the unprocessed mixture, in dB.

    Args:
        estimate: enhanced signal.
        mixture: noisy input the estimate was computed from.
        target: clean reference.
        **kwargs: passed to :func:`si_sdr`.

    Returns:
        Improvement in dB, shape ``(...)``.

    Shape:
        - estimate, mixture, target: :math:`(..., L)`
        - output: :math:`(...)`

    Example:
        >>> s = torch.randn(16000); noisy = s + torch.randn(16000)
        >>> float(si_sdr_improvement(s, noisy, s)) > 20
        True
    """
    return si_sdr(estimate, target, **kwargs) - si_sdr(mixture, target, **kwargs)


class SISDRLoss(nn.Module):
    """Negative mean SI-SDR, a training loss: ``loss(estimate, target)``.

    Shape:
        - estimate, target: :math:`(..., L)`
        - output: scalar

    Example:
        >>> s = torch.randn(2, 8000)
        >>> SISDRLoss()(s + 0.1 * torch.randn(2, 8000), s).item() < 0
        True
    """

    def __init__(self, zero_mean: bool = True, eps: float = 1e-8) -> None:
        super().__init__()
        self.zero_mean, self.eps = zero_mean, eps

    def forward(self, estimate: Tensor, target: Tensor) -> Tensor:
        return -si_sdr(estimate, target, self.zero_mean, self.eps).mean()


__all__ = ["SISDRLoss", "si_sdr", "si_sdr_improvement"]
