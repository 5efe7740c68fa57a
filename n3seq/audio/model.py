"""Spectral-mask speech denoiser with N³ over a window of STFT frames.

waveform ``(B, L)`` → complex STFT ``(B, F, T)`` → log-magnitude frame tokens ``(B, T, F)`` →
[local 1-D conv stage → N³ (or an equal-parameter local layer)] × n → local stage → mask
``(B, F, T)`` in [0, 1] → masked STFT → inverse STFT → waveform ``(B, L)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
import torchaudio
from einops import rearrange
from torch import Tensor, nn

from n3seq._checks import check_floating
from n3seq.ablation import count_parameters
from n3seq.block import N3Block

NONLOCAL_KINDS = ("n3", "local")


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
        if self.nonlocal_kind not in NONLOCAL_KINDS:
            raise ValueError(
                f"nonlocal_kind must be one of {NONLOCAL_KINDS}, got {self.nonlocal_kind!r}"
            )
        for name in ("sample_rate", "n_fft", "hop_length", "channels", "kernel_size", "k",
                     "radius", "embed_dim"):
            value = getattr(self, name)
            if name == "radius" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")

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


def check_waveform(waveform: Tensor, name: str = "waveform") -> None:
    """Raises unless ``waveform`` is a floating-point ``(B, L)`` tensor with L >= 1."""
    check_floating(waveform, name)
    if waveform.dim() != 2:
        raise ValueError(f"{name} must have shape (B, L), got {tuple(waveform.shape)}")
    if waveform.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one sample, got shape {tuple(waveform.shape)}")


class LocalStage(nn.Module):
    """Residual stack of two 1-D convolutions over time: ``x + conv(relu(conv(x)))``.

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
        self.config = cfg = config or DenoiserConfig()
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
            stages += [LocalStage(c, cfg.kernel_size), NonLocalStage(cfg)]
        stages.append(LocalStage(c, cfg.kernel_size))
        self.stages = nn.Sequential(*stages)
        self.decoder = nn.Conv1d(c, cfg.freq_bins, 1)

    def mask(self, spec: Tensor) -> Tensor:
        """Mask in [0, 1] for a complex STFT ``(B, F, T)``; returns ``(B, F, T)``."""
        x = rearrange(frame_features(spec), "b t f -> b f t")
        return torch.sigmoid(self.decoder(self.stages(self.encoder(x))))

    def forward(self, waveform: Tensor) -> Tensor:
        check_waveform(waveform)
        length = waveform.shape[-1]
        dtype = waveform.dtype
        x = waveform.float()
        # Level-normalise: the features are log-magnitudes, so the mask is then level-free.
        scale = x.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-8)
        x = x / scale
        padded = max(length, self.config.min_length)
        if padded > length:
            x = F.pad(x, (0, padded - length))
        spec = self.stft(x)
        out = self.istft(spec * self.mask(spec), length=padded)[..., :length]
        return (out * scale).to(dtype)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate


__all__ = [
    "DenoiserConfig", "LocalMixer", "LocalStage", "NonLocalStage", "SpectralDenoiser",
    "check_waveform", "count_parameters", "frame_features", "matched_hidden",
]
