"""Audio adapter: N³ speech denoising on STFT frames (``import n3seq.audio``).

Needs the ``audio`` extra (torchaudio, soundfile). The core package never imports this module.

Example:
    >>> import n3seq.audio as na
    >>> clean = na.denoise(torch.randn(16000), sample_rate=16000)  # shipped 16 kHz model
"""

from n3seq.audio.baseline import WienerFilter, estimate_noise_psd, wiener_filter
from n3seq.audio.io import (
    AudioFileError,
    check_sample_rate,
    denoise,
    denoise_file,
    read_audio,
    write_audio,
)
from n3seq.audio.metrics import SISDRLoss, si_sdr, si_sdr_improvement
from n3seq.audio.model import (
    DenoiserConfig,
    LocalMixer,
    SpectralDenoiser,
    count_parameters,
    matched_hidden,
)
from n3seq.audio.noise import NOISE_TYPES, babble_noise, mix_at_snr, pink_noise, white_noise
from n3seq.audio.pretrained import DEFAULT_WEIGHTS, load_denoiser, save_denoiser
from n3seq.audio.training import mixture_batch, train_denoiser

__all__ = [
    "DEFAULT_WEIGHTS",
    "NOISE_TYPES",
    "AudioFileError",
    "DenoiserConfig",
    "LocalMixer",
    "SISDRLoss",
    "SpectralDenoiser",
    "WienerFilter",
    "babble_noise",
    "check_sample_rate",
    "count_parameters",
    "denoise",
    "denoise_file",
    "estimate_noise_psd",
    "load_denoiser",
    "matched_hidden",
    "mix_at_snr",
    "mixture_batch",
    "pink_noise",
    "read_audio",
    "save_denoiser",
    "si_sdr",
    "si_sdr_improvement",
    "train_denoiser",
    "white_noise",
    "wiener_filter",
    "write_audio",
]
