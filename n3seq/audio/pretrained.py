"""Saving and loading denoisers as a single safetensors file (weights + config metadata)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from n3seq.audio.io import publish
from n3seq.audio.model import DenoiserConfig, SpectralDenoiser

#: The shipped 16 kHz speech denoiser (N³ variant), trained by ``examples/audio_denoising.py``.
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "speech16k_n3.safetensors"

_FORMAT = "n3seq.audio.SpectralDenoiser/1"


def save_denoiser(model: SpectralDenoiser, path: str | os.PathLike,
                  info: dict | None = None) -> None:
    """Writes ``model`` to ``path`` atomically (temp file in the same folder, then rename).

    Args:
        model: the denoiser.
        path: target ``.safetensors`` file.
        info: extra JSON-serialisable facts stored in the metadata (e.g. training log).
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": _FORMAT, "config": json.dumps(model.config.to_dict()),
                "info": json.dumps(info or {})}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_denoiser(path: str | os.PathLike | None = None,
                  device: str | torch.device = "cpu") -> SpectralDenoiser:
    """Loads a denoiser saved by :func:`save_denoiser` (default: the shipped model).

    Args:
        path: ``.safetensors`` file; ``None`` for :data:`DEFAULT_WEIGHTS`.
        device: where to put the model.

    Returns:
        The model in eval mode.

    Example:
        >>> model = load_denoiser()
        >>> model.sample_rate
        16000
    """
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"denoiser weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"cannot read denoiser weights {path}: {err}") from err
    if metadata.get("format") != _FORMAT:
        raise ValueError(
            f"{path} is not an n3seq.audio denoiser (metadata format "
            f"{metadata.get('format')!r}, expected {_FORMAT!r})"
        )
    model = SpectralDenoiser(DenoiserConfig(**json.loads(metadata["config"])))
    model.load_state_dict(load_file(str(path), device="cpu"))
    return model.to(device).eval()


def denoiser_info(path: str | os.PathLike | None = None) -> dict:
    """The ``info`` dict stored with a saved denoiser (training facts)."""
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("info", "{}"))
