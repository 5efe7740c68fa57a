"""Audio adapter: N³ speech denoising on STFT frames (``import n3seq.audio``).

Needs the ``audio`` extra (torchaudio, soundfile). The core package never imports this module.

Example:
    >>> import n3seq.audio as na
    >>> clean = na.denoise(torch.randn(16000), sample_rate=16000)  # shipped 16 kHz model
"""

# Names are imported on first use (PEP 562), so that importing a submodule, e.g. a command
# line's argument parser, does not import torch: ``--help`` stays instant.
from typing import TYPE_CHECKING

from n3seq._lazy import lazy_exports

if TYPE_CHECKING:
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

_LAZY = {
    "WienerFilter": "n3seq.audio.baseline",
    "estimate_noise_psd": "n3seq.audio.baseline",
    "wiener_filter": "n3seq.audio.baseline",
    "AudioFileError": "n3seq.audio.io",
    "check_sample_rate": "n3seq.audio.io",
    "denoise": "n3seq.audio.io",
    "denoise_file": "n3seq.audio.io",
    "read_audio": "n3seq.audio.io",
    "write_audio": "n3seq.audio.io",
    "SISDRLoss": "n3seq.audio.metrics",
    "si_sdr": "n3seq.audio.metrics",
    "si_sdr_improvement": "n3seq.audio.metrics",
    "DenoiserConfig": "n3seq.audio.model",
    "LocalMixer": "n3seq.audio.model",
    "SpectralDenoiser": "n3seq.audio.model",
    "count_parameters": "n3seq.audio.model",
    "matched_hidden": "n3seq.audio.model",
    "NOISE_TYPES": "n3seq.audio.noise",
    "babble_noise": "n3seq.audio.noise",
    "mix_at_snr": "n3seq.audio.noise",
    "pink_noise": "n3seq.audio.noise",
    "white_noise": "n3seq.audio.noise",
    "DEFAULT_WEIGHTS": "n3seq.audio.pretrained",
    "load_denoiser": "n3seq.audio.pretrained",
    "save_denoiser": "n3seq.audio.pretrained",
    "mixture_batch": "n3seq.audio.training",
    "train_denoiser": "n3seq.audio.training",
}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)


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
