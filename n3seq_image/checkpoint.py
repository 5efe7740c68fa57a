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
import math
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from n3seq._files import as_os_error, atomic_write, dir_mode, file_mode
from n3seq_image.denormals import zero_negligible_weights
from n3seq_image.dncnn import DnCNN
from n3seq_image.n3net import N3Net
from n3seq_image.vdsr import VDSR

FORMAT = "n3seq_image/1"


def default_mode() -> int:
    """``0o666`` minus the umask: the mode ``open()`` would give a new file (mkstemp uses 0600)."""
    return file_mode()


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Writes ``obj`` as indented JSON atomically."""
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2) + "\n"))


# --------------------------------------------------------------------------- models


#: Model names usable in configs and weights files, and their classes.
MODELS: dict[str, type[nn.Module]] = {"n3net": N3Net, "dncnn": DnCNN, "vdsr": VDSR}


def model_registry() -> dict[str, type[nn.Module]]:
    """Model names usable in configs and weights files (a copy of :data:`MODELS`)."""
    return dict(MODELS)


def model_name(model: nn.Module) -> str:
    """Registry name of a model instance (``"n3net"``, ``"dncnn"`` or ``"vdsr"``)."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    for name, cls in model_registry().items():
        if type(model) is cls:
            return name
    raise TypeError(f"unsupported model type {type(model).__name__}; expected N3Net, DnCNN or VDSR")


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


#: Largest value accepted for each integer field of a model's architecture, far above any
#: useful denoiser: a weights file or ``--model-config`` asking for more is refused before
#: anything is allocated (a hostile ``{"features": 1e8}`` would otherwise try to allocate
#: petabytes).
ARCHITECTURE_LIMITS: dict[str, dict[str, int]] = {
    "dncnn": {"in_channels": 64, "out_channels": 64, "depth": 128, "features": 1024},
    "vdsr": {"in_channels": 64, "out_channels": 64, "depth": 128, "features": 1024},
    "n3net": {
        "in_channels": 64, "out_channels": 64, "stages": 8, "depth": 128, "features": 1024,
        "stage_channels": 256, "k": 64, "patch_size": 64, "stride": 64, "window": 255,
        "embed_features": 1024, "embed_depth": 64,
    },
}


def _constructor_defaults(cls: type[nn.Module]) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters.values()
    return {
        p.name: p.default for p in params
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def check_model_config(
    name: object, config: object, source: str = "model config"
) -> dict[str, Any]:
    """Type- and bounds-checks an architecture before a model is built from it.

    Every key must be a constructor argument of the model, every value must have the type of
    that argument's default (an ``int`` for an ``int`` default, never a bool or a float; a
    finite number for a ``float``; a ``bool``; a ``str``), and every integer must lie in
    ``[0, ARCHITECTURE_LIMITS[name][key]]``. The constructors check the finer rules.

    Args:
        name: registry name (``"n3net"`` or ``"dncnn"``).
        config: constructor arguments (e.g. read from a weights file's metadata).
        source: what the config came from, for the messages (a file name, ``--model-config``).

    Returns:
        A copy of ``config``.

    Raises:
        ValueError: naming ``source``, the field and the bad value.
    """
    registry = model_registry()
    if not isinstance(name, str) or name not in registry:
        raise ValueError(f"{source}: unknown model {name!r}; choose one of {sorted(registry)}")
    if not isinstance(config, dict):
        raise ValueError(
            f"{source}: the {name} config must be a JSON object (a dict of constructor "
            f"arguments), got {type(config).__name__} {_short(config)}"
        )
    defaults = _constructor_defaults(registry[name])
    unknown = sorted(str(k) for k in config if k not in defaults)
    if unknown:
        raise ValueError(
            f"{source}: unknown {name} config key(s) {unknown}; known: {sorted(defaults)}"
        )
    limits = ARCHITECTURE_LIMITS.get(name, {})
    for key, value in config.items():
        default = defaults[key]
        kind = type(default)
        if kind is bool:
            ok = isinstance(value, bool)
            want = "true or false"
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
            want = "an integer"
        elif kind is float:
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value))
            want = "a finite number"
        elif kind is str:
            ok = isinstance(value, str)
            want = "a string"
        else:
            ok, want = True, ""
        if not ok:
            raise ValueError(f"{source}: {name} config {key!r} must be {want}, got {_short(value)}")
        if kind is int and key in limits and not 0 <= value <= limits[key]:
            raise ValueError(
                f"{source}: {name} config {key!r} = {value} is out of range [0, {limits[key]}]"
            )
    return dict(config)


def _short(value: object, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def build_model(name: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Instantiates a registered model from its name and constructor config.

    The config is checked first (:func:`check_model_config`).
    """
    config = check_model_config(name, {} if config is None else config)
    cls = model_registry()[name]
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

    The metadata is checked (:func:`check_model_config`) but no model is built.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a safetensors file written by :func:`save_weights`, or its metadata
            is malformed (config not a JSON object, unknown keys, wrong types, absurd sizes).
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
    parsed = {}
    for key in ("config", "extra"):
        try:
            parsed[key] = json.loads(meta.get(key, "{}"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: metadata {key!r} is not valid JSON ({exc})") from None
    if not isinstance(parsed["extra"], dict):
        raise ValueError(f"{path}: metadata 'extra' must be a JSON object, "
                         f"got {type(parsed['extra']).__name__}")
    config = check_model_config(meta["model"], parsed["config"], source=str(path))
    info = {"model": meta["model"], "config": config, "extra": parsed["extra"]}
    return state, info


def check_state_fits(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Raises ``ValueError`` (prefixed with ``what``) unless ``state`` has exactly ``model``'s
    keys and shapes; ``model`` may live on the ``meta`` device."""
    ours = model.state_dict()
    missing = sorted(k for k in ours if k not in state)
    unexpected = sorted(k for k in state if k not in ours)
    shapes = [
        f"{k}: {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in ours.items() if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{what}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}, "
            f"shape mismatches {shapes[:5]}"
        )


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuilds a model from a weights file and returns it in eval mode.

    The architecture is first built on the ``meta`` device (no memory) and compared with the
    tensors in the file, so a file whose metadata does not describe its tensors is refused
    before anything is allocated. Entries that are negligible in their tensor are set to zero
    (:func:`~n3seq_image.denormals.zero_negligible_weights`: the output is unchanged, and CPU
    inference does not slow down on subnormal arithmetic).
    """
    state, info = read_weights(path)
    what = f"{path} does not match a {info['model']} with config {info['config']}"
    try:
        with torch.device("meta"):
            skeleton = build_model(info["model"], info["config"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"{path}: cannot build a {info['model']} from its metadata: {exc}"
        ) from None
    check_state_fits(skeleton, state, what)
    del skeleton
    model = build_model(info["model"], info["config"])
    model.load_state_dict(state)
    zero_negligible_weights(model)
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
    weights_extra: dict[str, Any] | None = None,
) -> Path:
    """Writes ``run_dir/checkpoints/step_<step>/`` atomically and points ``latest.json`` at it.

    Args:
        run_dir: training output folder.
        model: the model (or its DDP wrapper).
        optimizer: optimizer whose state is saved (``None`` for weights only).
        step: number of optimisation steps done.
        state: extra JSON-serialisable training state (arguments, log, best PSNR…).
        keep: how many most recent checkpoints to keep (older ones are deleted).
        weights_extra: notes for the checkpoint's ``model.safetensors`` (as in
            :func:`save_weights`; the trainer gives those of its final weights file, so that a
            checkpoint's weights work wherever a weights file does); ``step`` is added.

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
        os.chmod(tmp, dir_mode())  # mkdtemp's 0700 would differ from every other folder
        notes = {**(weights_extra or {}), "step": step}
        save_weights(tmp / "model.safetensors", model, extra=notes)
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
        for written in tmp.iterdir():  # safetensors creates its files 0600: one mode for all
            os.chmod(written, file_mode())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        os_error = as_os_error(exc)
        if os_error is not None and os_error.strerror:
            raise OSError(os_error.errno, f"cannot write checkpoint {final}: "
                          f"{os_error.strerror}") from exc
        raise
    atomic_write_json(Path(run_dir) / "latest.json", {"checkpoint": name, "step": step})
    done = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


_CHECKPOINT_NAME = re.compile(r"step_\d+")


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or ``None``.

    Raises:
        ValueError: ``latest.json`` exists but is not a pointer written by
            :func:`save_checkpoint` (the message says how to recover).
    """
    run_dir = Path(run_dir)
    pointer = run_dir / "latest.json"
    if pointer.is_file():
        try:
            doc = json.loads(pointer.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(_bad_pointer(pointer, f"unreadable: {exc}")) from None
        name = doc.get("checkpoint") if isinstance(doc, dict) else None
        if not isinstance(name, str) or not _CHECKPOINT_NAME.fullmatch(name):
            raise ValueError(_bad_pointer(
                pointer, f"expected {{\"checkpoint\": \"step_N\", ...}}, got {_short(doc)}"
            ))
        ckpt = run_dir / "checkpoints" / name
        if (ckpt / "state.json").is_file():
            return ckpt
    complete = sorted(p.parent for p in (run_dir / "checkpoints").glob("step_*/state.json"))
    return complete[-1] if complete else None


def _bad_pointer(pointer: Path, why: str) -> str:
    return (f"{pointer} is not a checkpoint pointer ({why}); delete it to resume from the "
            "newest complete checkpoint folder")


def load_checkpoint(
    ckpt: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restores model (and optimizer, RNG) from a checkpoint folder; returns ``state.json``.

    Every file is read and checked before ``model`` or ``optimizer`` is changed, so a corrupt
    checkpoint (truncated file, edited JSON) raises and leaves both as they were.

    Raises:
        FileNotFoundError: the folder or one of its files is missing.
        ValueError: a file is unreadable or malformed, or the weights do not fit ``model``;
            the message names the file.
    """
    from safetensors.torch import load_file

    ckpt = Path(ckpt)
    state_json = ckpt / "state.json"
    if not state_json.is_file():
        raise FileNotFoundError(f"no complete checkpoint in {ckpt} (state.json missing)")
    hint = "delete this checkpoint folder to resume from an older one"
    try:
        doc = json.loads(state_json.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{state_json} is not valid JSON ({exc}); {hint}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{state_json} has unknown format {got!r}; {hint}")
    step, groups, extra = doc.get("step"), doc.get("param_groups", []), doc.get("state", {})
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"{state_json}: 'step' must be an integer >= 0, got {_short(step)}; "
                         f"{hint}")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise ValueError(f"{state_json}: 'param_groups' must be a list of objects; {hint}")
    if not isinstance(extra, dict):
        raise ValueError(f"{state_json}: 'state' must be an object; {hint}")
    log = extra.get("log", [])
    if not isinstance(log, list) or not all(isinstance(row, dict) for row in log):
        raise ValueError(f"{state_json}: 'state.log' must be a list of objects; {hint}")
    elapsed = extra.get("elapsed_s", 0.0)
    if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)) or not (
            math.isfinite(elapsed) and elapsed >= 0):
        raise ValueError(f"{state_json}: 'state.elapsed_s' must be a number >= 0; {hint}")
    try:
        state, _ = read_weights(ckpt / "model.safetensors")
    except ValueError as exc:
        raise ValueError(f"{exc}; {hint}") from None
    target = getattr(model, "module", model)
    check_state_fits(target, state, f"checkpoint {ckpt} does not fit the model")
    opt_file = ckpt / "optimizer.safetensors"
    if not opt_file.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt} is incomplete: {opt_file.name} missing")
    try:
        tensors = load_file(str(opt_file))
    except Exception as exc:  # safetensors raises its own error type for truncated files
        raise ValueError(
            f"{opt_file} is not a readable safetensors file (truncated or corrupt?): {exc}; "
            f"{hint}"
        ) from None
    osd = None
    if optimizer is not None:
        if not doc.get("has_optimizer"):
            raise ValueError(f"checkpoint {ckpt} holds no optimizer state")
        osd = _optimizer_state(tensors, groups, optimizer, f"{opt_file}", hint)
    # Everything read and checked: now change the model, the optimizer and the RNGs.
    target.load_state_dict(state)
    if optimizer is not None and osd is not None:
        try:
            optimizer.load_state_dict(osd)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{state_json}: optimizer state does not fit: {exc}; {hint}") from None
    if restore_rng:
        try:
            _set_rng_state(doc.get("rng", {}), tensors.get("rng.torch"))
        except (TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise ValueError(f"{state_json}: malformed RNG state ({exc}); {hint}") from None
    return doc


def _optimizer_state(
    tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]],
    optimizer: torch.optim.Optimizer, where: str, hint: str,
) -> dict[str, Any]:
    """The optimizer ``state_dict`` stored in a checkpoint, checked against ``optimizer``."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    sizes = [len(g["params"]) if isinstance(g.get("params"), list) else -1 for g in groups]
    if sizes != [len(g["params"]) for g in optimizer.param_groups]:
        raise ValueError(
            f"{where}: the stored parameter groups ({sizes} parameters) do not fit the "
            f"optimizer ({[len(g['params']) for g in optimizer.param_groups]}); {hint}"
        )
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith("state."):
            continue
        parts = key.split(".", 2)
        if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) >= len(params):
            raise ValueError(f"{where}: unexpected tensor {key!r} for an optimizer of "
                             f"{len(params)} parameters; {hint}")
        idx, name = int(parts[1]), parts[2]
        if value.dim() > 0 and tuple(value.shape) != tuple(params[idx].shape):
            raise ValueError(
                f"{where}: {key} has shape {tuple(value.shape)}, the parameter "
                f"{tuple(params[idx].shape)}; {hint}"
            )
        per_param.setdefault(idx, {})[name] = value
    restored = [
        {k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups
    ]
    return {"state": per_param, "param_groups": restored}
