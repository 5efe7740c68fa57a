"""Model weights and resumable training checkpoints: safetensors + JSON, written atomically.

Two formats:

- **Weights file** (``*.safetensors``): the model's ``state_dict`` with the architecture in the
  safetensors metadata (``{"model": "n3net", "config": {...}}``), so :func:`load_model` rebuilds
  the network from the one file. This is what ships in ``n3seq_image/weights/``.
- **Training checkpoint**: a folder ``step_0000500/`` with ``model.safetensors`` (weights
  file), ``optimizer.safetensors`` (Adam moments and the torch RNG state) and ``state.json``
  (step, optimizer hyper-parameters, NumPy/Python RNG states, training arguments). The folder
  is built under a temporary name and renamed into place, and ``latest.json`` is replaced
  atomically afterwards, so a crash at any moment leaves either the previous or the new
  checkpoint, never a partial one.

Nothing here unpickles: loading uses safetensors and JSON only.
"""

from __future__ import annotations

import inspect
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = "n3seq_image/1"


def default_mode() -> int:
    """``0o666`` minus the umask: the mode ``open()`` would give a new file (mkstemp uses 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Calls ``write(tmp)`` on a temp file next to ``path``, then renames it to ``path``.

    If ``write`` raises, the temp file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Writes ``obj`` as indented JSON atomically."""
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2) + "\n"))


# --------------------------------------------------------------------------- models


def model_registry() -> dict[str, type[nn.Module]]:
    """Model names usable in configs and weights files."""
    import n3seq_image

    names = {"n3net": "N3Net", "dncnn": "DnCNN"}
    return {k: getattr(n3seq_image, v) for k, v in names.items() if hasattr(n3seq_image, v)}


def model_name(model: nn.Module) -> str:
    """Registry name of a model instance (``"n3net"`` or ``"dncnn"``)."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    for name, cls in model_registry().items():
        if type(model) is cls:
            return name
    raise TypeError(f"unsupported model type {type(model).__name__}; expected N3Net or DnCNN")


def model_config(model: nn.Module) -> dict[str, Any]:
    """The constructor arguments of a model, from its ``config`` attribute or method."""
    model = getattr(model, "module", model)
    config = getattr(model, "config", None)
    if callable(config):
        config = config()
    if isinstance(config, dict):
        return dict(config)
    # Fallback: constructor arguments stored as attributes of the same name.
    params = [
        p for p in inspect.signature(type(model).__init__).parameters.values()
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    missing = [p.name for p in params if not hasattr(model, p.name)]
    if missing:
        raise TypeError(
            f"{type(model).__name__} has no config dict and no attributes {missing} to serialise"
        )
    return {p.name: getattr(model, p.name) for p in params}


def build_model(name: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Instantiates a registered model from its name and constructor config."""
    registry = model_registry()
    if name not in registry:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(registry)}")
    cls = registry[name]
    config = dict(config or {})
    from_config = getattr(cls, "from_config", None)
    return from_config(config) if callable(from_config) else cls(**config)


def _contiguous_state(model: nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "module", model)
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_weights(
    path: str | Path, model: nn.Module, extra: dict[str, Any] | None = None
) -> None:
    """Saves weights + architecture to one safetensors file, atomically.

    Args:
        path: destination ``.safetensors`` file.
        model: an :class:`~n3seq_image.N3Net` or :class:`~n3seq_image.DnCNN`.
        extra: JSON-serialisable notes stored in the metadata (e.g. training σ, steps).
    """
    from safetensors.torch import save_file

    metadata = {
        "format": FORMAT,
        "model": model_name(model),
        "config": json.dumps(model_config(model)),
        "extra": json.dumps(extra or {}),
    }
    state = _contiguous_state(model)
    atomic_write(path, lambda p: save_file(state, str(p), metadata=metadata))


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Reads a weights file: ``(state_dict, {"model", "config", "extra"})``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a safetensors file written by :func:`save_weights`.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise ValueError(f"{path} is not a readable safetensors weights file: {exc}") from exc
    if meta.get("format") != FORMAT or "model" not in meta:
        raise ValueError(
            f"{path} has no n3seq_image metadata (format={meta.get('format')!r}); "
            "use N3Net.from_official_checkpoint for the authors' .t7/.pth files"
        )
    info = {
        "model": meta["model"],
        "config": json.loads(meta.get("config", "{}")),
        "extra": json.loads(meta.get("extra", "{}")),
    }
    return state, info


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuilds a model from a weights file and returns it in eval mode."""
    state, info = read_weights(path)
    model = build_model(info["model"], info["config"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match a {info['model']} with config {info['config']}: "
            f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
        )
    return model.to(map_location).eval()


# --------------------------------------------------------------------------- training state


def _rng_state() -> tuple[dict[str, Any], torch.Tensor]:
    py = random.getstate()
    np_state = np.random.get_state()  # noqa: NPY002 (saves the legacy global state)
    json_part = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *[np_state[i] for i in range(2, 5)]],
    }
    return json_part, torch.get_rng_state()


def _set_rng_state(json_part: dict[str, Any], torch_state: torch.Tensor | None) -> None:
    py = json_part.get("python")
    if py:
        random.setstate((py[0], tuple(py[1]), py[2]))
    npst = json_part.get("numpy")
    if npst:
        legacy = (npst[0], np.asarray(npst[1], dtype=np.uint32), *npst[2:])
        np.random.set_state(legacy)  # noqa: NPY002
    if torch_state is not None:
        torch.set_rng_state(torch_state)


def save_checkpoint(
    run_dir: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    step: int,
    state: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Writes ``run_dir/checkpoints/step_<step>/`` atomically and points ``latest.json`` at it.

    Args:
        run_dir: training output folder.
        model: the model (or its DDP wrapper).
        optimizer: optimizer whose state is saved (``None`` for weights only).
        step: number of optimisation steps done.
        state: extra JSON-serialisable training state (arguments, log, best PSNR…).
        keep: how many most recent checkpoints to keep (older ones are deleted).

    Returns:
        The checkpoint folder.
    """
    from safetensors.torch import save_file

    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:07d}"
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        save_weights(tmp / "model.safetensors", model, extra={"step": step})
        rng_json, rng_torch = _rng_state()
        tensors: dict[str, torch.Tensor] = {"rng.torch": rng_torch}
        groups: list[dict[str, Any]] = []
        if optimizer is not None:
            osd = optimizer.state_dict()
            for idx, pstate in osd["state"].items():
                for key, value in pstate.items():
                    t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
                    tensors[f"state.{idx}.{key}"] = t.detach().cpu().contiguous()
            groups = [
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
                for g in osd["param_groups"]
            ]
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        doc = {
            "format": FORMAT,
            "step": step,
            "param_groups": groups,
            "has_optimizer": optimizer is not None,
            "rng": rng_json,
            "state": state or {},
        }
        (tmp / "state.json").write_text(json.dumps(doc, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_json(Path(run_dir) / "latest.json", {"checkpoint": name, "step": step})
    done = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or ``None``."""
    run_dir = Path(run_dir)
    pointer = run_dir / "latest.json"
    if pointer.is_file():
        ckpt = run_dir / "checkpoints" / json.loads(pointer.read_text())["checkpoint"]
        if (ckpt / "state.json").is_file():
            return ckpt
    complete = sorted(p.parent for p in (run_dir / "checkpoints").glob("step_*/state.json"))
    return complete[-1] if complete else None


def load_checkpoint(
    ckpt: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restores model (and optimizer, RNG) from a checkpoint folder; returns ``state.json``.

    Raises:
        FileNotFoundError: the folder or one of its files is missing.
        ValueError: the weights do not fit ``model``.
    """
    from safetensors.torch import load_file

    ckpt = Path(ckpt)
    if not (ckpt / "state.json").is_file():
        raise FileNotFoundError(f"no complete checkpoint in {ckpt} (state.json missing)")
    doc = json.loads((ckpt / "state.json").read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{ckpt}/state.json has unknown format {doc.get('format')!r}")
    state, _ = read_weights(ckpt / "model.safetensors")
    target = getattr(model, "module", model)
    missing, unexpected = target.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {ckpt} does not fit the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    tensors = load_file(str(ckpt / "optimizer.safetensors"))
    if optimizer is not None:
        if not doc.get("has_optimizer"):
            raise ValueError(f"checkpoint {ckpt} holds no optimizer state")
        per_param: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("state."):
                _, idx, name = key.split(".", 2)
                per_param.setdefault(int(idx), {})[name] = value
        groups = [
            {k: (tuple(v) if k == "betas" else v) for k, v in g.items()}
            for g in doc["param_groups"]
        ]
        optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    if restore_rng:
        _set_rng_state(doc.get("rng", {}), tensors.get("rng.torch"))
    return doc
