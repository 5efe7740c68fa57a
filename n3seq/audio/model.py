"""Spectral-mask speech denoiser with N³ over a window of STFT frames.

waveform ``(B, L)`` → complex STFT ``(B, F, T)`` → log-magnitude frame tokens ``(B, T, F)`` →
[local 1-D conv stage → N³ (or an equal-parameter local layer)] × n → local stage → mask
``(B, F, T)`` in [0, 1] → masked STFT → inverse STFT → waveform ``(B, L)``.

The waveform is checked once at the entry (NaN/inf named with its first bad sample), an empty
batch gives an empty output, and finite input gives finite output at any level (the level
normalisation is computed overflow-safely) or an ``OverflowError`` when the result does not
fit the input's dtype.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import torchaudio
from einops import rearrange
from torch import Tensor, nn

from n3seq._checks import (
    check_choice,
    check_floating,
    check_int,
    data_checks,
    finite_abs_max,
)
from n3seq.ablation import count_parameters
from n3seq.block import N3Block

NONLOCAL_KINDS = ("n3", "local")

#: Upper bounds of the integer fields of :class:`DenoiserConfig` (a guard against configs,
#: e.g. from a weights file, that would allocate gigabytes or never finish).
CONFIG_BOUNDS = {
    "sample_rate": 10_000_000, "n_fft": 1 << 16, "hop_length": 1 << 16, "channels": 4096,
    "kernel_size": 255, "num_blocks": 64, "k": 256, "radius": 1 << 20, "embed_dim": 4096,
}

#: Most parameters a :class:`SpectralDenoiser` may have (~1 GiB of float32).
MAX_PARAMETERS = 1 << 28

#: Below this ``peak² · L`` the level is computed in float32 as always; above it (or for
#: float64 input beyond float32's range) in float64 relative to the peak, so no square
#: overflows.
_PLAIN_LEVEL_LIMIT = 1e36


@dataclass
class DenoiserConfig:
    """Hyper-parameters of :class:`SpectralDenoiser`.

    Args:
        sample_rate: rate the model works at, in Hz.
        n_fft: STFT size (frequency bins F = n_fft // 2 + 1).
        hop_length: STFT hop in samples.
        channels: width C of the hidden frame features.
        kernel_size: temporal kernel of the local convolutions.
        num_blocks: how many (local stage, non-local layer) pairs.
        k: neighbours per frame in N³.
        radius: N³ searches frames within ``±radius`` of each frame (query excluded);
            ``None`` searches all frames of the signal.
        embed_dim: size of N³'s matching embedding.
        nonlocal_kind: ``"n3"`` for N³, ``"local"`` for the equal-parameter local layer.
    """

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 128
    channels: int = 64
    kernel_size: int = 5
    num_blocks: int = 2
    k: int = 4
    radius: int | None = 16
    embed_dim: int = 32
    nonlocal_kind: str = "n3"

    def __post_init__(self) -> None:
        check_choice("nonlocal_kind", self.nonlocal_kind, NONLOCAL_KINDS)
        for name, bound in CONFIG_BOUNDS.items():
            value = getattr(self, name)
            if name == "radius" and value is None:
                continue
            low = 0 if name == "num_blocks" else 1
            # NumPy integers are accepted and stored as Python ints (to_dict stays JSON).
            setattr(self, name, check_int(name, value, min=low, max=bound))
        if self.n_fft < 2 or self.n_fft % 2:
            raise ValueError(f"n_fft must be an even number >= 2 (the frame count assumes "
                             f"it), got {self.n_fft}")
        if self.hop_length >= self.n_fft:
            raise ValueError(f"hop_length must be smaller than n_fft={self.n_fft} (the Hann "
                             f"windows must overlap to be inverted), got {self.hop_length}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.radius is not None and 2 * self.radius < self.k:
            raise ValueError(f"radius={self.radius} gives 2*radius={2 * self.radius} candidate "
                             f"frames, fewer than k={self.k}")
        count = self.parameter_count()
        if count > MAX_PARAMETERS:
            raise ValueError(f"this DenoiserConfig would have about {count:,} parameters (more "
                             f"than {MAX_PARAMETERS:,}); refusing it")

    def parameter_count(self) -> int:
        """Parameters of the :class:`SpectralDenoiser` built from this config (no allocation)."""
        f, c, ks, e, k = self.freq_bins, self.channels, self.kernel_size, self.embed_dim, self.k
        hidden = max(2 * c, 16)
        local = 2 * (c * c * ks + c)
        n3 = (c * hidden + hidden + hidden * e + e) + (c * hidden + 2 * hidden + 1)
        non_local = 2 * c + n3 + (k + 1) * c * c + c  # the local mixer matches n3's count
        return (3 * f * c + c) + (self.num_blocks + 1) * local + self.num_blocks * non_local \
            + (c * f + f)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def freq_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def min_length(self) -> int:
        """Shortest waveform processed without padding: N³ needs 2·radius + 1 (or k + 1) frames."""
        frames = self.k if self.radius is None else 2 * self.radius
        return max(frames * self.hop_length, self.n_fft)


def check_waveform(waveform: Tensor, name: str = "waveform") -> float:
    """Checks a floating-point ``(B, L)`` waveform with L >= 1 and finite samples.

    Returns:
        The largest ``|sample|`` (0 for an empty batch or while data checks are off). One
        host synchronisation.

    Raises:
        TypeError: ``waveform`` is not a floating-point tensor.
        ValueError: a wrong shape, no samples, or NaN/inf (naming ``name``, the count and the
            first bad sample ``(b, t)`` with its value).
    """
    check_floating(waveform, name)
    if waveform.dim() != 2:
        raise ValueError(f"{name} must have shape (B, L), got {tuple(waveform.shape)}")
    if waveform.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one sample, got shape {tuple(waveform.shape)}")
    peaks = finite_abs_max([(waveform, name, None, "samples (b, t)")])
    return peaks[0] if peaks else 0.0


def level(x: Tensor, peak: float) -> tuple[Tensor, Tensor]:
    """``(x / rms, rms)`` per row of ``(B, L)`` audio, rms floored at 1e-8, never overflowing.

    ``x`` comes back in float32. Up to ``peak² · L = 1e36`` this is the plain float32 RMS;
    above (or for float64 beyond float32's range) the RMS is taken in float64 relative to the
    row's peak and ``rms`` is float64, so that no square overflows.
    """
    if peak * peak * x.shape[-1] <= _PLAIN_LEVEL_LIMIT and peak <= 1e30:
        x = x.float()
        scale = x.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-8)
        return x / scale, scale
    w = x.double()
    top = w.abs().amax(-1, keepdim=True)
    top = torch.where(top > 0, top, torch.ones_like(top))
    scale = (top * (w / top).pow(2).mean(-1, keepdim=True).sqrt()).clamp_min(1e-8)
    return (w / scale).float(), scale


def check_finite_output(out: Tensor, who: str, peak: float) -> None:
    """Raises ``OverflowError`` when ``out`` is not finite although the input (largest
    ``|sample|`` = ``peak``) was: the result does not fit ``out.dtype``. One host sync."""
    if not data_checks() or out.numel() == 0 or bool(torch.isfinite(out).all()):
        return
    dtype = str(out.dtype).removeprefix("torch.")
    raise OverflowError(
        f"{who}: the output does not fit {dtype} although the waveform is finite (largest "
        f"|sample| {peak:.3g}, max {torch.finfo(out.dtype).max:.3g}): scale the input down"
    )


class LocalConvStage(nn.Module):
    """Residual stack of two 1-D convolutions over frames: ``x + conv(relu(conv(x)))``.

    The local counterpart of :class:`NonLocalStage` (it was called ``LocalStage``).

    Shape:
        - input / output: :math:`(B, C, T)`
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(channels, channels, kernel_size, padding=pad)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, padding=pad)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class LocalMixer(nn.Module):
    """Local stand-in for :class:`~n3seq.N3Block` with the same output layout.

    Returns ``[x, f(x)]`` where ``f`` is
    ``Conv1d(D→hidden, kernel) → ReLU → Conv1d(hidden→k·D, 1)``, so it yields ``(k + 1)·D``
    features per frame like N³ but from a fixed local neighbourhood.
    Pick ``hidden`` with :func:`matched_hidden` to equal an N³ block's parameter count.

    Shape:
        - input: :math:`(B, T, D)`
        - output: :math:`(B, T, (k + 1) D)`
    """

    def __init__(self, dim: int, k: int, hidden: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.dim, self.k = dim, k
        self.conv1 = nn.Conv1d(dim, hidden, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv1d(hidden, k * dim, 1)

    @property
    def out_dim(self) -> int:
        return (self.k + 1) * self.dim

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(F.relu(self.conv1(rearrange(x, "b t d -> b d t"))))
        return torch.cat([x, rearrange(y, "b d t -> b t d")], dim=-1)


def matched_hidden(dim: int, k: int, target: int, kernel_size: int = 5) -> int:
    """Hidden width of a :class:`LocalMixer` whose parameter count is closest to ``target``.

    The mixer has ``hidden·(dim·kernel + 1 + k·dim) + k·dim`` parameters.
    """
    per_hidden = dim * kernel_size + 1 + k * dim
    return max(1, round((target - k * dim) / per_hidden))


def _nonlocal_layer(cfg: DenoiserConfig) -> nn.Module:
    n3 = N3Block(cfg.channels, cfg.k, embed_dim=cfg.embed_dim, radius=cfg.radius)
    if cfg.nonlocal_kind == "n3":
        return n3
    hidden = matched_hidden(cfg.channels, cfg.k, count_parameters(n3), cfg.kernel_size)
    return LocalMixer(cfg.channels, cfg.k, hidden, cfg.kernel_size)


class NonLocalStage(nn.Module):
    """Residual non-local stage: ``x + Linear(layer(LayerNorm(x)))``, layer N³ or a LocalMixer.

    The LayerNorm keeps the tokens at unit scale, so N³'s embedding distances and temperatures
    start in a sane range whatever the input level.

    Shape:
        - input / output: :math:`(B, C, T)`
    """

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.channels)
        self.layer = _nonlocal_layer(cfg)
        self.fuse = nn.Linear(self.layer.out_dim, cfg.channels)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.norm(rearrange(x, "b c t -> b t c"))
        return x + rearrange(self.fuse(self.layer(tokens)), "b t c -> b c t")


def frame_features(spec: Tensor, eps: float = 1e-3) -> Tensor:
    """Log-magnitude frame tokens from a complex STFT.

    Shape:
        - spec: :math:`(B, F, T)` complex
        - output: :math:`(B, T, F)`
    """
    return rearrange(torch.log(spec.abs() + eps), "b f t -> b t f")


class SpectralDenoiser(nn.Module):
    """Speech denoiser that predicts a spectral mask; N³ links each frame to similar frames.

    Args:
        config: a :class:`DenoiserConfig` (default: 16 kHz, N³ with k=4 over ±16 frames).

    Shape:
        - input: :math:`(B, L)` waveform at ``config.sample_rate``
        - output: :math:`(B, L)`

    Example:
        >>> model = SpectralDenoiser(DenoiserConfig(channels=16, radius=4))
        >>> model(torch.randn(2, 4000)).shape
        torch.Size([2, 4000])
    """

    def __init__(self, config: DenoiserConfig | None = None) -> None:
        super().__init__()
        if config is not None and not isinstance(config, DenoiserConfig):
            raise TypeError(f"config must be a DenoiserConfig or None, got "
                            f"{type(config).__name__}")
        self.config = cfg = config or DenoiserConfig()
        cfg.__post_init__()  # fields may have been changed since construction
        self.stft = torchaudio.transforms.Spectrogram(
            n_fft=cfg.n_fft, hop_length=cfg.hop_length, power=None
        )
        self.istft = torchaudio.transforms.InverseSpectrogram(
            n_fft=cfg.n_fft, hop_length=cfg.hop_length
        )
        c = cfg.channels
        self.encoder = nn.Conv1d(cfg.freq_bins, c, 3, padding=1)
        stages: list[nn.Module] = []
        for _ in range(cfg.num_blocks):
            stages += [LocalConvStage(c, cfg.kernel_size), NonLocalStage(cfg)]
        stages.append(LocalConvStage(c, cfg.kernel_size))
        self.stages = nn.Sequential(*stages)
        self.decoder = nn.Conv1d(c, cfg.freq_bins, 1)

    def mask(self, spec: Tensor) -> Tensor:
        """Mask in [0, 1] for a complex STFT ``(B, F, T)``; returns ``(B, F, T)``."""
        x = rearrange(frame_features(spec), "b t f -> b f t")
        return torch.sigmoid(self.decoder(self.stages(self.encoder(x))))

    def forward(self, waveform: Tensor) -> Tensor:
        """Denoises ``(B, L)`` audio; an empty batch gives an empty output.

        Raises:
            TypeError: ``waveform`` is not a floating-point tensor.
            ValueError: a wrong shape, no samples, or NaN/inf (naming ``waveform`` and the
                first bad sample ``(b, t)``).
            OverflowError: the denoised audio does not fit the input's dtype.
        """
        peak = check_waveform(waveform)
        length = waveform.shape[-1]
        dtype = waveform.dtype
        if waveform.shape[0] == 0:  # an empty batch: an empty result, as torch ops give
            out = waveform.new_zeros(waveform.shape)
            return out + waveform.sum() * 0 if torch.is_grad_enabled() else out
        # Level-normalise: the features are log-magnitudes, so the mask is then level-free.
        x, scale = level(waveform, peak)
        padded = max(length, self.config.min_length)
        if padded > length:
            x = F.pad(x, (0, padded - length))
        spec = self.stft(x)
        out = self.istft(spec * self.mask(spec), length=padded)[..., :length]
        out = (out * scale).to(dtype)
        check_finite_output(out, "SpectralDenoiser", peak)
        return out

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate


__all__ = [
    "DenoiserConfig", "LocalConvStage", "LocalMixer", "NonLocalStage", "SpectralDenoiser",
    "check_waveform", "count_parameters", "frame_features", "level", "matched_hidden",
]


def __getattr__(name: str) -> object:
    """Old names, kept for a while with a DeprecationWarning."""
    if name == "LocalStage":
        warnings.warn(f"{__name__}.LocalStage is deprecated: it was renamed LocalConvStage (the "
                      "audio and time-series adapters had two different classes of that name)",
                      DeprecationWarning, stacklevel=2)
        return LocalConvStage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
