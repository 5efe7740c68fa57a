"""The N3Net authors' checkpoint format: reading their files and mapping their key names.

No model code lives here, so :mod:`n3seq_image.n3net` can import it (``N3Net`` builds the model
and calls these); :mod:`n3seq_image.official` is the public face of the same functions. The key
table is in :mod:`n3seq_image.official`.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

_RULES: tuple[tuple[re.Pattern[str], str | None], ...] = (
    (re.compile(r"^blocks\.(\d+)\.conv1\.(.+)$"), r"stages.\1.head.\2"),
    (re.compile(r"^blocks\.(\d+)\.layer1\.(.+)$"), r"stages.\1.body.\2"),
    (re.compile(r"^blocks\.(\d+)\.conv2\.(.+)$"), r"stages.\1.tail.\2"),
    (re.compile(r"^blocks\.(\d+)\.bn1\.(.+)$"), None),
    (re.compile(r"^nls\.(\d+)\.embedcnn\.(.+)$"), r"n3blocks.\1.embedding.\2"),
    (re.compile(r"^nls\.(\d+)\.tempcnn\.(.+)$"), r"n3blocks.\1.temperature_net.\2"),
    (re.compile(r"^nls\.(\d+)\.n3aggregation\.aggregation\.nnn\.bn\.(.+)$"),
     r"n3blocks.\1.score_norm.\2"),
)


def official_key(key: str) -> str | None:
    """Our parameter name for one of their keys; ``None`` for keys that are dropped.

    Raises:
        KeyError: for a key outside their schema.

    Example:
        >>> official_key("nls.1.tempcnn.6.bias")
        'n3blocks.1.temperature_net.6.bias'
    """
    for pattern, target in _RULES:
        if pattern.match(key):
            return None if target is None else pattern.sub(target, key)
    raise KeyError(key)


def flush_subnormals(x: Tensor) -> Tensor:
    """Zeros every subnormal value (|x| < smallest normal) of a floating-point tensor.

    Their weights hold thousands of ~1e-39 values that make CPU inference ~8× slower; as
    weights they change no output.
    """
    if not x.is_floating_point():
        return x
    return x.masked_fill(x.abs() < torch.finfo(x.dtype).tiny, 0.0)


def convert_state_dict(state: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Maps their state dict onto ``model``'s, checking that both match exactly.

    Returns:
        A complete state dict for ``model`` (subnormals flushed to zero; BatchNorm
        ``num_batches_tracked`` counters, absent from their files, taken from ``model``).

    Raises:
        ValueError: naming every unexpected key (outside their schema or without a
            counterpart in ``model``), every missing key and every shape mismatch.
    """
    ours = model.state_dict()
    out: dict[str, Tensor] = {}
    unexpected, mismatched = [], []
    for key, value in state.items():
        if not isinstance(key, str):
            unexpected.append(repr(key))
            continue
        try:
            target = official_key(key)
        except KeyError:
            unexpected.append(key)
            continue
        if target is None:
            continue
        if target not in ours:
            unexpected.append(key)
        elif not isinstance(value, Tensor) or tuple(value.shape) != tuple(ours[target].shape):
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            mismatched.append(f"{key}: {shape} (expected {tuple(ours[target].shape)})")
        else:
            out[target] = flush_subnormals(value.detach().to(ours[target].dtype))
    missing = sorted(key for key in ours if key not in out
                     and not key.endswith("num_batches_tracked"))
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} key(s) (our names): {missing}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} key(s): {sorted(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {mismatched}")
    if problems:
        raise ValueError("not an N3Net Gaussian-denoising checkpoint: " + "; ".join(problems))
    for key, value in ours.items():
        out.setdefault(key, value)
    return out


def _load_failure(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in words that never suggest unsafe loading.

    torch's own message for a file holding arbitrary Python objects recommends re-running with
    ``weights_only=False``, which can execute code from the file: it is not passed on.
    """
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (f"it holds a Python object ({found.group(1)}) besides tensors, numbers and "
                "containers; such files are not loaded, since unpickling them can run code. "
                "The authors' checkpoints hold only tensors")
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text or "Weights only" in text:
        return ("it holds Python objects besides tensors, numbers and containers; such files "
                "are not loaded, since unpickling them can run code")
    if "zip archive" in text or "central directory" in text:
        return "the file is truncated or corrupted"
    return "not a torch.save file"


def read_state_dict(path: str | os.PathLike[str]) -> Mapping[str, Any]:
    """Their state dict from one of their files, read with ``weights_only=True``.

    The file holds ``{"net": state_dict, "epoch": int}``; a bare state dict is accepted too.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when the file is not a readable torch file or holds no state dict.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {path!r}")
    try:
        blob: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{path!r} is not a readable torch checkpoint: {_load_failure(exc)}"
        ) from None
    state = blob.get("net", blob) if isinstance(blob, dict) else None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path!r} holds no state dict (expected a dict with key 'net')")
    return state
