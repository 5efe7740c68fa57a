"""Classical baseline: a Wiener filter with decision-directed a-priori SNR (Ephraim & Malah).

The noise power spectrum is estimated from the quietest frames of each signal, so the filter
needs no training and no side information.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from n3seq.audio.model import check_waveform


def estimate_noise_psd(power: Tensor, quantile: float = 0.1) -> Tensor:
    """Noise power per frequency bin: the mean power of the quietest frames.

    Args:
        power: power spectrogram ``|X|²``.
        quantile: fraction of frames (lowest total energy) used, in (0, 1].

    Returns:
        Noise power ``(B, F, 1)``.

    Shape:
        - power: :math:`(B, F, T)`
        - output: :math:`(B, F, 1)`
    """
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    frames = power.shape[-1]
    count = max(1, round(quantile * frames))
    energy = power.sum(dim=1)  # (B, T)
    idx = energy.topk(count, dim=-1, largest=False).indices  # (B, count)
    quiet = power.gather(2, idx[:, None, :].expand(-1, power.shape[1], -1))
    return quiet.mean(dim=-1, keepdim=True).clamp_min(1e-12)


def wiener_filter(
    waveform: Tensor,
    n_fft: int = 512,
    hop_length: int = 128,
    quantile: float = 0.1,
    alpha: float = 0.98,
    gain_floor: float = 0.1,
) -> Tensor:
    r"""Denoises with a decision-directed Wiener filter; noise from the quietest frames.

    For each frame t:
    :math:`\xi_t = \alpha |\hat S_{t-1}|^2/\lambda + (1-\alpha)\max(\gamma_t-1, 0)`
    with :math:`\gamma_t = |X_t|^2/\lambda`, gain :math:`G_t = \max(\xi_t/(1+\xi_t), g_{min})` and
    :math:`\hat S_t = G_t X_t`; the noisy phase is kept.

    Args:
        waveform: noisy signals.
        n_fft: STFT size.
        hop_length: STFT hop.
        quantile: fraction of quietest frames used to estimate the noise spectrum.
        alpha: decision-directed smoothing factor in [0, 1).
        gain_floor: lowest gain, limits musical noise.

    Returns:
        Denoised waveform of the same shape.

    Shape:
        - waveform: :math:`(B, L)`
        - output: :math:`(B, L)`

    Example:
        >>> wiener_filter(torch.randn(2, 8000)).shape
        torch.Size([2, 8000])
    """
    check_waveform(waveform)
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    length = waveform.shape[-1]
    x = waveform.float()
    padded = max(length, n_fft)
    if padded > length:
        x = torch.nn.functional.pad(x, (0, padded - length))
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(x, n_fft, hop_length, window=window, return_complex=True)
    power = spec.abs().square()
    noise = estimate_noise_psd(power, quantile)
    gamma = power / noise
    gains = torch.empty_like(power)
    prev = torch.zeros_like(power[..., 0])  # |Ŝ_{t-1}|² / λ
    for t in range(power.shape[-1]):
        xi = alpha * prev + (1 - alpha) * (gamma[..., t] - 1).clamp_min(0)
        gain = (xi / (1 + xi)).clamp_min(gain_floor)
        gains[..., t] = gain
        prev = gain.square() * gamma[..., t]
    out = torch.istft(spec * gains, n_fft, hop_length, window=window, length=padded)
    return out[..., :length].to(waveform.dtype)


class WienerFilter(nn.Module):
    """Module form of :func:`wiener_filter` with fixed settings.

    Example:
        >>> WienerFilter(gain_floor=0.05)(torch.randn(1, 4000)).shape
        torch.Size([1, 4000])
    """

    def __init__(self, n_fft: int = 512, hop_length: int = 128, quantile: float = 0.1,
                 alpha: float = 0.98, gain_floor: float = 0.1) -> None:
        super().__init__()
        self.kwargs = {"n_fft": n_fft, "hop_length": hop_length, "quantile": quantile,
                       "alpha": alpha, "gain_floor": gain_floor}

    def forward(self, waveform: Tensor) -> Tensor:
        return wiener_filter(waveform, **self.kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
