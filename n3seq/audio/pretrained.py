"""Saving and loading denoisers as a single safetensors file (weights + config metadata)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from n3seq._files import atomic_write
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
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))


#: Largest value accepted for each integer field of a saved denoiser's config, far above any
#: useful model: a file asking for more is refused before anything is allocated.
CONFIG_LIMITS = {
    "sample_rate": 768_000, "n_fft": 16_384, "hop_length": 16_384, "channels": 1024,
    "kernel_size": 255, "num_blocks": 64, "k": 256, "radius": 65_536, "embed_dim": 1024,
}


def check_denoiser_config(config: object, source: str = "config") -> DenoiserConfig:
    """Type- and bounds-checks a denoiser config (e.g. a weights file's metadata).

    Raises:
        ValueError: naming ``source``, the field and the bad value: not a JSON object, unknown
            keys, wrong types (an int field given a float or a bool…), values outside
            ``[1, CONFIG_LIMITS[field]]``, or what :class:`DenoiserConfig` refuses.
    """
    if not isinstance(config, dict):
        raise ValueError(f"{source}: the denoiser config must be a JSON object, got "
                         f"{type(config).__name__}")
    known = {f.name: f.default for f in dataclasses.fields(DenoiserConfig)}
    unknown = sorted(str(k) for k in config if k not in known)
    if unknown:
        raise ValueError(f"{source}: unknown denoiser config key(s) {unknown}; "
                         f"known: {sorted(known)}")
    for key, value in config.items():
        if key == "nonlocal_kind":
            if not isinstance(value, str):
                raise ValueError(f"{source}: {key!r} must be a string, got {value!r}")
            continue
        if key == "radius" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{source}: {key!r} must be an integer, got {value!r}")
        limit = CONFIG_LIMITS.get(key)
        if limit is not None and not 1 <= value <= limit:
            raise ValueError(f"{source}: {key!r} = {value} is out of range [1, {limit}]")
    try:
        return DenoiserConfig(**config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: {err}") from None


def _check_tensors(model: torch.nn.Module, shapes: dict[str, tuple[int, ...]], path: Path,
                   ) -> None:
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(ours) - set(shapes))
    unexpected = sorted(set(shapes) - set(ours))
    wrong = [f"{k}: {shapes[k]} (expected {ours[k]})" for k in ours
             if k in shapes and shapes[k] != ours[k]]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path}: the tensors do not match the config in its metadata: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}, shape mismatches {wrong[:5]}"
        )


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
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"cannot read denoiser weights {path}: {err}") from err
    if metadata.get("format") != _FORMAT:
        raise ValueError(
            f"{path} is not an n3seq.audio denoiser (metadata format "
            f"{metadata.get('format')!r}, expected {_FORMAT!r})"
        )
    try:
        raw: Any = json.loads(metadata.get("config", ""))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: metadata 'config' is not valid JSON ({err})") from None
    config = check_denoiser_config(raw, source=str(path))
    # Build on the meta device first (no memory) and compare with the file's tensors, so a
    # config that does not describe them is refused before anything is allocated.
    try:
        with torch.device("meta"):
            skeleton = SpectralDenoiser(config)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path}: cannot build a denoiser from its metadata: {err}") from None
    _check_tensors(skeleton, shapes, path)
    del skeleton
    model = SpectralDenoiser(config)
    try:
        model.load_state_dict(load_file(str(path), device="cpu"))
    except Exception as err:  # a truncated file fails only when its tensors are read
        raise ValueError(f"cannot read denoiser weights {path}: {err}") from err
    return model.to(device).eval()


def denoiser_info(path: str | os.PathLike | None = None) -> dict:
    """The ``info`` dict stored with a saved denoiser (training facts).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file or its ``info`` metadata is unreadable.
    """
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"denoiser weights not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            info = json.loads((f.metadata() or {}).get("info", "{}"))
    except Exception as err:
        raise ValueError(f"cannot read the info of denoiser weights {path}: {err}") from err
    if not isinstance(info, dict):
        raise ValueError(f"{path}: metadata 'info' must be a JSON object")
    return info
