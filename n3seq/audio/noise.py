"""Noise generators (white, pink, babble) and mixing at a given signal-to-noise ratio."""

from __future__ import annotations

import torch
from torch import Tensor

from n3seq._checks import check_finite, check_floating, check_int, check_real, data_checks

NOISE_TYPES = ("white", "pink", "babble")

#: Outside ``[1 / _PLAIN_RMS, _PLAIN_RMS]`` (largest |value| of a row) the RMS is taken
#: relative to the row's peak, so that no square over- or underflows.
_PLAIN_RMS = 1e15


def _rms(x: Tensor) -> Tensor:
    """Root mean square over the last dim, finite for every finite input (no sync)."""
    plain = x.pow(2).mean(dim=-1, keepdim=True).sqrt()
    if x.shape[-1] == 0:
        return plain
    peak = x.detach().abs().amax(dim=-1, keepdim=True)
    safe = torch.where(peak > 0, peak, torch.ones_like(peak))
    relative = peak * (x / safe).pow(2).mean(dim=-1, keepdim=True).sqrt()
    usual = (peak <= _PLAIN_RMS) & (peak >= 1 / _PLAIN_RMS)
    return torch.where(usual | (peak == 0), plain, relative)


def _check_shape(shape: object) -> tuple[int, ...]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list, torch.Size)) or not shape:
        raise TypeError(f"shape must be a non-empty tuple of ints (..., L), got {shape!r}")
    return tuple(check_int(f"shape[{i}]", n, min=0) for i, n in enumerate(shape))


def _check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got "
                        f"{type(generator).__name__}")


def white_noise(shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
    """Gaussian white noise of unit variance, shape ``(..., L)``.

    Example:
        >>> white_noise((2, 100)).shape
        torch.Size([2, 100])
    """
    shape = _check_shape(shape)
    _check_generator(generator)
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
    shape = _check_shape(shape)
    _check_generator(generator)
    length = shape[-1]
    if length == 0 or 0 in shape:
        return torch.zeros(shape)
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
    if not isinstance(sources, (list, tuple)) or not sources:
        raise ValueError("babble_noise needs at least one source waveform, got "
                         f"{sources!r:.80}")
    for i, src in enumerate(sources):
        check_floating(src, f"sources[{i}]")
        if src.dim() != 1 or src.shape[0] < 1:
            raise ValueError(f"babble sources must have shape (L,) with L >= 1, got sources[{i}] "
                             f"of shape {tuple(src.shape)}")
        check_finite(src, f"sources[{i}]")
    length = check_int("length", length, min=0)
    num_talkers = check_int("num_talkers", num_talkers, min=1)
    _check_generator(generator)
    total = torch.zeros(length)
    if length == 0:
        return total
    for _ in range(num_talkers):
        src = sources[int(torch.randint(len(sources), (1,), generator=generator))]
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

    Raises:
        TypeError: ``clean``/``noise`` are not floating tensors, or ``snr_db`` is neither a
            number nor a floating tensor.
        ValueError: shapes differ, ``snr_db`` does not broadcast, or an input has NaN/inf.
        OverflowError: the mixture does not fit the dtype (e.g. a very loud signal at a very
            low SNR).

    Example:
        >>> mix_at_snr(torch.randn(2, 100), torch.randn(2, 100), 5.0).shape
        torch.Size([2, 100])
    """
    check_floating(clean, "clean")
    check_floating(noise, "noise")
    if clean.dim() < 1:
        raise ValueError("clean and noise must have shape (..., L), got 0-d tensors")
    if clean.shape != noise.shape:
        raise ValueError(
            f"clean and noise must have the same shape (..., L), got {tuple(clean.shape)} and "
            f"{tuple(noise.shape)}"
        )
    if isinstance(snr_db, Tensor):
        if not snr_db.is_floating_point():
            raise TypeError(f"snr_db must be a float or a floating tensor, got {snr_db.dtype}")
        snr = snr_db.to(clean.dtype)
    else:
        snr = torch.tensor(check_real("snr_db", snr_db), dtype=clean.dtype)
    check_finite(snr, "snr_db")
    check_finite(clean, "clean")
    check_finite(noise, "noise")
    if snr.dim() > 0:
        snr = snr[..., None]
    lead = (*clean.shape[:-1], 1)
    try:
        ok = torch.broadcast_shapes(snr.shape, lead) == lead
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"snr_db of shape {tuple(snr_db.shape)} does not broadcast to the "
                         f"signals' leading shape {tuple(clean.shape[:-1])}")
    rms_clean, rms_noise, gain = _rms(clean), _rms(noise), 10 ** (-snr / 20)
    scaled = (rms_clean / rms_noise.clamp_min(1e-12) * gain) * noise
    # Very quiet noise: normalise it first (gain / rms could overflow); silent noise adds 0.
    unit = noise / torch.where(rms_noise > 0, rms_noise, torch.ones_like(rms_noise))
    quiet = unit * (rms_clean * gain)
    out = clean + torch.where(rms_noise >= 1e-12, scaled,
                              torch.where(rms_noise > 0, quiet, torch.zeros_like(quiet)))
    if data_checks() and out.numel() and not bool(torch.isfinite(out).all()):
        raise OverflowError(
            f"mix_at_snr: the mixture does not fit {str(out.dtype).removeprefix('torch.')} "
            f"(largest |clean| {float(clean.abs().max()):.3g}); lower the level or raise snr_db"
        )
    return out
