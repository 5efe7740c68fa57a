"""Classical baseline: a Wiener filter with decision-directed a-priori SNR (Ephraim & Malah).

The noise power spectrum is estimated from the quietest frames of each signal, so the filter
needs no training and no side information.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from n3seq._checks import check_finite, check_floating, check_int, check_real
from n3seq.audio.model import check_finite_output, check_waveform, level

#: Up to ``peak · n_fft`` of this the filter runs on the waveform as given (as it always did);
#: above, the powers over the 1e-12 noise floor could overflow float32, and it runs on the
#: level-normalised waveform instead (the same filter up to that floor).
_PLAIN_WIENER_LIMIT = 1e12


def _check_quantile(quantile: object) -> float:
    quantile = check_real("quantile", quantile)
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    return quantile


def check_wiener_settings(n_fft: object, hop_length: object, quantile: object, alpha: object,
                          gain_floor: object) -> dict:
    """Checks the settings of :func:`wiener_filter`; returns them as Python numbers.

    Raises:
        TypeError: an integer setting is not an int, or a real one not a number.
        ValueError: ``n_fft < 2``, ``hop_length`` not in ``[1, n_fft)`` (the Hann windows
            must overlap to be inverted), ``quantile`` not in (0, 1], ``alpha`` not in
            [0, 1), ``gain_floor`` not in [0, 1].
    """
    n_fft = check_int("n_fft", n_fft, min=2, max=1 << 16)
    hop_length = check_int("hop_length", hop_length, min=1)
    if hop_length >= n_fft:
        raise ValueError(f"hop_length must be smaller than n_fft={n_fft} (the Hann windows "
                         f"must overlap to be inverted), got {hop_length}")
    alpha = check_real("alpha", alpha)
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    gain_floor = check_real("gain_floor", gain_floor)
    if not 0 <= gain_floor <= 1:
        raise ValueError(f"gain_floor must be in [0, 1], got {gain_floor}")
    return {"n_fft": n_fft, "hop_length": hop_length, "quantile": _check_quantile(quantile),
            "alpha": alpha, "gain_floor": gain_floor}


def estimate_noise_psd(power: Tensor, quantile: float = 0.1) -> Tensor:
    """Noise power per frequency bin: the mean power of the quietest frames.

    Args:
        power: power spectrogram ``|X|²``.
        quantile: fraction of frames (lowest total energy) used, in (0, 1].

    Returns:
        Noise power ``(B, F, 1)``.

    Raises:
        TypeError: ``power`` is not a floating tensor or ``quantile`` not a number.
        ValueError: ``power`` is not ``(B, F, T)`` with T >= 1, is negative or not finite;
            ``quantile`` is not in (0, 1].

    Shape:
        - power: :math:`(B, F, T)`
        - output: :math:`(B, F, 1)`
    """
    check_floating(power, "power")
    if power.dim() != 3 or power.shape[-1] < 1:
        raise ValueError(f"power must have shape (B, F, T) with T >= 1, got "
                         f"{tuple(power.shape)}")
    quantile = _check_quantile(quantile)
    check_finite(power, "power")
    if power.numel() and bool((power < 0).any()):
        raise ValueError("power must be >= 0 (a power spectrogram |X|²), got negative values")
    return _noise_psd(power, quantile)


def _noise_psd(power: Tensor, quantile: float) -> Tensor:
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

    Raises:
        TypeError, ValueError: a bad waveform (see :func:`~n3seq.audio.model.check_waveform`)
            or setting (see :func:`check_wiener_settings`).
        OverflowError: the result does not fit the waveform's dtype.

    Example:
        >>> wiener_filter(torch.randn(2, 8000)).shape
        torch.Size([2, 8000])
    """
    peak = check_waveform(waveform)
    settings = check_wiener_settings(n_fft, hop_length, quantile, alpha, gain_floor)
    if waveform.shape[0] == 0:  # an empty batch: an empty result
        return waveform.new_zeros(waveform.shape)
    out = _wiener(waveform, peak, **settings)
    check_finite_output(out, "wiener_filter", peak)
    return out


def _wiener(waveform: Tensor, peak: float, n_fft: int, hop_length: int, quantile: float,
            alpha: float, gain_floor: float) -> Tensor:
    length = waveform.shape[-1]
    scale = None
    if peak * n_fft <= _PLAIN_WIENER_LIMIT:
        x = waveform.float()
    else:  # loud input: |X|² / λ would overflow; the filter is level-free, so work at unit RMS
        x, scale = level(waveform, peak)
    padded = max(length, n_fft)
    if padded > length:
        x = torch.nn.functional.pad(x, (0, padded - length))
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(x, n_fft, hop_length, window=window, return_complex=True)
    power = spec.abs().square()
    noise = _noise_psd(power, quantile)
    gamma = power / noise
    gains = torch.empty_like(power)
    prev = torch.zeros_like(power[..., 0])  # |Ŝ_{t-1}|² / λ
    for t in range(power.shape[-1]):
        xi = alpha * prev + (1 - alpha) * (gamma[..., t] - 1).clamp_min(0)
        gain = (xi / (1 + xi)).clamp_min(gain_floor)
        gains[..., t] = gain
        prev = gain.square() * gamma[..., t]
    out = torch.istft(spec * gains, n_fft, hop_length, window=window, length=padded)
    out = out[..., :length]
    if scale is not None:
        out = out * scale
    return out.to(waveform.dtype)


class WienerFilter(nn.Module):
    """Module form of :func:`wiener_filter` with fixed settings.

    Example:
        >>> WienerFilter(gain_floor=0.05)(torch.randn(1, 4000)).shape
        torch.Size([1, 4000])
    """

    def __init__(self, n_fft: int = 512, hop_length: int = 128, quantile: float = 0.1,
                 alpha: float = 0.98, gain_floor: float = 0.1) -> None:
        super().__init__()
        self.kwargs = check_wiener_settings(n_fft, hop_length, quantile, alpha, gain_floor)

    def forward(self, waveform: Tensor) -> Tensor:
        return wiener_filter(waveform, **self.kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
