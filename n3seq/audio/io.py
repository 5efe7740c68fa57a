"""WAV input/output with soundfile, and whole-signal / whole-file denoising.

torchaudio has no file I/O here, so files are read and written with ``soundfile``. Writes are
atomic: a temporary file in the target folder is renamed over the target only on success.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import Tensor

from n3seq._checks import check_floating, finite_abs_max
from n3seq._files import atomic_write, check_output_path
from n3seq.audio.model import SpectralDenoiser
from n3seq.audio.pretrained import load_denoiser


class AudioFileError(ValueError):
    """A file could not be read or written as audio."""


def check_sample_rate(sample_rate: object, name: str = "sample_rate") -> int:
    """Returns ``sample_rate`` if it is a positive int; raises TypeError/ValueError otherwise."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise TypeError(f"{name} must be an int (Hz), got {type(sample_rate).__name__} "
                        f"{sample_rate!r}")
    if sample_rate <= 0:
        raise ValueError(f"{name} must be positive, got {sample_rate}")
    return int(sample_rate)


def _first_non_finite(data: np.ndarray) -> str | None:
    """``"N sample(s) … (first at channel c, frame f: value)"`` for ``(L, C)`` data, or None."""
    bad = ~np.isfinite(data)
    if not bad.any():
        return None
    frame, channel = (int(i) for i in np.argwhere(bad)[0])
    return (f"{int(bad.sum())} sample(s) are NaN or infinite (first at channel {channel}, "
            f"frame {frame}: {data[frame, channel]})")


def read_audio(path: str | os.PathLike) -> tuple[Tensor, int]:
    """Reads an audio file as float32 ``(C, L)`` in [-1, 1] and its sample rate.

    Raises:
        AudioFileError: the file is missing, not a readable audio file, or holds NaN/inf
            samples (a float WAV can); the message names the file and the first bad sample.
    """
    name = str(path)
    if not os.path.exists(name):
        raise AudioFileError(f"audio file not found: {name!r}")
    if not os.path.isfile(name):
        raise AudioFileError(f"cannot read audio file {name!r}: not a file")
    try:
        data, rate = sf.read(name, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError/RuntimeError/OSError
        raise AudioFileError(f"cannot read audio file {name!r}: {err}") from err
    problem = _first_non_finite(data)
    if problem:
        raise AudioFileError(f"audio file {name!r}: {problem}")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(rate)


def check_audio_output(path: str | os.PathLike) -> str:
    """The soundfile format for writing ``path`` (from its extension).

    Raises:
        AudioFileError: an extension soundfile cannot write.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").upper()
    if fmt not in sf.available_formats():
        raise AudioFileError(f"unsupported output format {path.suffix!r} for {str(path)!r}; "
                             f"use e.g. .wav or .flac")
    return fmt


def write_audio(path: str | os.PathLike, waveform: Tensor, sample_rate: int,
                subtype: str | None = None) -> None:
    """Writes ``(C, L)`` (or ``(L,)``) audio atomically; the format follows the extension.

    Integer subtypes (e.g. ``"PCM_16"``) are clipped to [-1, 1] first so loud samples do not
    wrap around.

    Raises:
        AudioFileError: NaN/inf samples (naming the file and the first bad sample; an integer
            format would store them as full-scale clicks), an unsupported extension, or a
            write failure.
        TypeError: ``waveform`` is not a floating-point tensor (samples are in [-1, 1]).
        ValueError: a waveform of the wrong shape.
        OSError: the file cannot be created (permissions, a full disk…), naming ``path``.
    """
    check_floating(waveform, "waveform")  # int16 samples would be clipped to ±1: garbage
    sample_rate = check_sample_rate(sample_rate)
    path = Path(path)
    fmt = check_audio_output(path)
    if subtype is not None and not sf.check_format(fmt, subtype):
        subtype = None  # e.g. a Vorbis input written as .wav: use the format's default
    data = waveform.detach().cpu().float()
    if data.dim() == 1:
        data = data[None]
    if data.dim() != 2:
        raise ValueError(f"waveform must have shape (C, L) or (L,), got {tuple(waveform.shape)}")
    frames = data.T.numpy()
    problem = _first_non_finite(frames)
    if problem:
        raise AudioFileError(f"refusing to write {str(path)!r}: {problem}")
    if subtype is not None and not subtype.startswith(("FLOAT", "DOUBLE")):
        frames = np.clip(frames, -1.0, 1.0)

    # Encoded in memory, then written with Python's file I/O: libsndfile reports a full disk
    # or a permission problem only as "System error.", Python names the cause.
    buffer = io.BytesIO()
    try:
        sf.write(buffer, frames, sample_rate, subtype=subtype, format=fmt)
    except Exception as err:  # LibsndfileError/RuntimeError/TypeError from soundfile
        raise AudioFileError(f"cannot encode audio for {str(path)!r}: {err}") from err
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()), suffix=path.suffix)


def denoise(waveform: Tensor, sample_rate: int, model: SpectralDenoiser | None = None,
            batch_channels: bool = True) -> Tensor:
    """Denoises mono or multichannel audio at any sample rate with a :class:`SpectralDenoiser`.

    Channels are denoised independently. When ``sample_rate`` differs from the model's, the
    signal is resampled to the model's rate with :func:`torchaudio.functional.resample` and back,
    and the result is cut/padded to the input length.

    Args:
        waveform: audio ``(L,)`` or ``(C, L)``.
        sample_rate: rate of ``waveform`` in Hz (int).
        model: denoiser; ``None`` loads the shipped 16 kHz speech model.
        batch_channels: run all channels as one batch (else one at a time, less memory).

    Returns:
        Denoised audio with the shape and dtype of ``waveform``.

    Example:
        >>> noisy = torch.randn(2, 22050)  # stereo, 1 s at 22.05 kHz
        >>> denoise(noisy, 22050).shape
        torch.Size([2, 22050])
    """
    check_floating(waveform, "waveform")
    sample_rate = check_sample_rate(sample_rate)
    if waveform.dim() not in (1, 2):
        raise ValueError(f"waveform must have shape (L,) or (C, L), got {tuple(waveform.shape)}")
    # NaN/inf named where the caller put it (resampling would smear it over other samples).
    finite_abs_max([(waveform, "waveform", None, None)])
    if waveform.dim() == 2 and waveform.shape[0] == 0:  # no channels: nothing to denoise
        return waveform.new_zeros(waveform.shape)
    if model is None:
        model = load_denoiser()
    squeeze = waveform.dim() == 1
    x = waveform[None] if squeeze else waveform
    length = x.shape[-1]
    device = next(model.parameters()).device
    x = x.float().to(device)
    if sample_rate != model.sample_rate:
        x = AF.resample(x, sample_rate, model.sample_rate)
    with torch.inference_mode():
        if batch_channels:
            y = model(x)
        else:
            y = torch.cat([model(ch[None]) for ch in x])
    if sample_rate != model.sample_rate:
        y = AF.resample(y, model.sample_rate, sample_rate)
    y = torch.nn.functional.pad(y, (0, max(0, length - y.shape[-1])))[..., :length]
    y = y.to(device=waveform.device, dtype=waveform.dtype)
    return y[0] if squeeze else y


def denoise_file(in_path: str | os.PathLike, out_path: str | os.PathLike,
                 model: SpectralDenoiser | None = None) -> dict:
    """Denoises an audio file; the output keeps the input's rate, channels, length and subtype.

    The output is written atomically, so on any failure no (partial) output file exists.

    Returns:
        A summary dict: ``sample_rate``, ``channels``, ``frames``, ``resampled``.

    Raises:
        ValueError: ``out_path`` is ``in_path`` (by any path: links, ``./``…).
        AudioFileError: see :func:`read_audio` and :func:`write_audio`.
    """
    check_output_path(out_path, inputs=(in_path,))
    check_audio_output(out_path)
    waveform, rate = read_audio(in_path)
    try:
        subtype = sf.info(str(in_path)).subtype
    except Exception:  # pragma: no cover - read_audio succeeded, so info should too
        subtype = None
    if model is None:
        model = load_denoiser()
    out = denoise(waveform, rate, model)
    write_audio(out_path, out, rate, subtype=subtype)
    return {"sample_rate": rate, "channels": int(waveform.shape[0]),
            "frames": int(waveform.shape[1]), "resampled": rate != model.sample_rate}
