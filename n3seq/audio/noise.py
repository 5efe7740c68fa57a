"""Noise generators (white, pink, babble) and mixing at a given signal-to-noise ratio."""

from __future__ import annotations

import torch
from torch import Tensor

from n3seq._checks import check_floating

NOISE_TYPES = ("white", "pink", "babble")


def _rms(x: Tensor) -> Tensor:
    return x.pow(2).mean(dim=-1, keepdim=True).sqrt()


def white_noise(shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
    """Gaussian white noise of unit variance, shape ``(..., L)``.

    Example:
        >>> white_noise((2, 100)).shape
        torch.Size([2, 100])
    """
    return torch.randn(shape, generator=generator)


def pink_noise(shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
    """Pink (1/f power) noise of unit RMS, made by shaping white noise in the frequency domain.

    Args:
        shape: output shape ``(..., L)``.
        generator: random generator.

    Returns:
        Noise whose power spectral density falls as ``1/f`` (the DC bin is set to zero).

    Example:
        >>> pink_noise((3, 1000)).shape
        torch.Size([3, 1000])
    """
    length = shape[-1]
    spectrum = torch.fft.rfft(torch.randn(shape, generator=generator), dim=-1)
    freqs = torch.arange(spectrum.shape[-1], dtype=torch.float32)
    gain = torch.where(freqs > 0, freqs.clamp_min(1).rsqrt(), torch.zeros(()))
    noise = torch.fft.irfft(spectrum * gain, n=length, dim=-1)
    return noise / _rms(noise).clamp_min(1e-12)


def babble_noise(
    sources: list[Tensor], length: int, num_talkers: int = 4,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Babble: the sum of ``num_talkers`` random speech excerpts, each at the same RMS.

    Sources shorter than ``length`` are tiled (repeated). The result has unit RMS.

    Args:
        sources: 1-D waveforms of other talkers, each ``(L_i,)``.
        length: output length L.
        num_talkers: how many excerpts are summed.
        generator: random generator.

    Returns:
        Tensor of shape ``(L,)``.

    Example:
        >>> babble_noise([torch.randn(500), torch.randn(800)], 1000, num_talkers=3).shape
        torch.Size([1000])
    """
    if not sources:
        raise ValueError("babble_noise needs at least one source waveform, got an empty list")
    if num_talkers < 1:
        raise ValueError(f"num_talkers must be >= 1, got {num_talkers}")
    total = torch.zeros(length)
    for _ in range(num_talkers):
        src = sources[int(torch.randint(len(sources), (1,), generator=generator))]
        if src.dim() != 1:
            raise ValueError(f"babble sources must have shape (L,), got {tuple(src.shape)}")
        reps = -(-length // src.shape[0]) + 1
        tiled = src.repeat(reps)
        start = int(torch.randint(tiled.shape[0] - length + 1, (1,), generator=generator))
        piece = tiled[start:start + length].float()
        total = total + piece / _rms(piece).clamp_min(1e-12)
    return total / _rms(total).clamp_min(1e-12)


def mix_at_snr(clean: Tensor, noise: Tensor, snr_db: float | Tensor) -> Tensor:
    """Adds ``noise`` to ``clean`` scaled so that the mixture has the given SNR in dB.

    SNR is ``10·log10(‖clean‖² / ‖scaled noise‖²)`` per signal.

    Args:
        clean: clean signals.
        noise: noise of the same shape.
        snr_db: float, or a tensor broadcastable to ``(...)``.

    Returns:
        The noisy mixture, same shape as ``clean``.

    Shape:
        - clean, noise: :math:`(..., L)`
        - output: :math:`(..., L)`

    Example:
        >>> mix_at_snr(torch.randn(2, 100), torch.randn(2, 100), 5.0).shape
        torch.Size([2, 100])
    """
    check_floating(clean, "clean")
    check_floating(noise, "noise")
    if clean.shape != noise.shape:
        raise ValueError(
            f"clean and noise must have the same shape (..., L), got {tuple(clean.shape)} and "
            f"{tuple(noise.shape)}"
        )
    snr = torch.as_tensor(snr_db, dtype=clean.dtype)
    if snr.dim() > 0:
        snr = snr[..., None]
    scale = _rms(clean) / _rms(noise).clamp_min(1e-12) * 10 ** (-snr / 20)
    return clean + scale * noise
