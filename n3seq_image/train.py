"""Training of Gaussian denoisers (N3Net, DnCNN) on random crops, single process or DDP.

Run ``n3seq-image train --help`` for the options. Under ``torchrun`` (``WORLD_SIZE`` > 1) the
model is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` (gloo on CPU, nccl on
GPU) and every rank takes its slice of the same global batch (see
:func:`n3seq_image.data.shard_indices`), so ``--batch-size`` is the *global* batch and the
result does not depend on the number of processes (up to BatchNorm statistics, which are per
rank unless ``--sync-bn`` is given on GPU).
"""

from __future__ import annotations

import csv
import io
import math
import os
import signal
import sys
import threading
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from n3seq._train_utils import DivergenceGuard, optimizer_step
from n3seq_image.batchnorm_stats import recalibrate_batchnorm
from n3seq_image.checkpoint import (
    atomic_write,
    atomic_write_json,
    build_model,
    check_model_config,
    check_state_fits,
    latest_checkpoint,
    load_checkpoint,
    read_weights,
    save_checkpoint,
    save_weights,
)
from n3seq_image.data import (
    RandomCropDataset,
    add_noise,
    list_images,
    load_folder,
    parse_sigma,
    shard_indices,
)
from n3seq_image.dncnn import DnCNN
from n3seq_image.memory_format import preferred_memory_format
from n3seq_image.metrics import batch_psnr
from n3seq_image.precision import autocast, autocast_dtype, denormals_flushed
from n3seq_image.sr_data import (
    parse_scales,
    split_folders,
    sr_training_source,
    sr_weights_extra,
)
from n3seq_image.sr_models import SR_CONFIGS

DEFAULT_CONFIGS: dict[str, dict[str, Any]] = {
    "n3net": {},
    "dncnn": {"in_channels": 1, "out_channels": 1, "depth": 17, "features": 64},
}


def default_model_config(task: str, model: str) -> dict[str, Any]:
    """The architecture a run starts from: :data:`DEFAULT_CONFIGS` for denoising, the SR
    models' (:data:`n3seq_image.sr_models.SR_CONFIGS`) for ``task="sr"``."""
    return dict((SR_CONFIGS if task == "sr" else DEFAULT_CONFIGS)[model])


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint).

    Attributes:
        data: folder of training images.
        out: run folder (checkpoints, logs, final ``model.safetensors``).
        model: ``"n3net"`` or ``"dncnn"``.
        model_config: constructor arguments overriding the model defaults.
        sigma: noise level (0–255 scale), fixed (``"25"``) or a range (``"0-55"``).
        steps: optimisation steps.
        batch_size: global batch (split over DDP ranks).
        crop: training crop size in pixels.
        lr: peak Adam learning rate.
        schedule: ``"cosine"``: linear warm-up over ``warmup_steps`` from ``lr / 100`` to ``lr``,
            then a cosine decay to ``lr · min_lr_ratio`` at ``steps`` (the schedule spans the
            whole run, so a run meant to go on in later sessions keeps ``steps`` fixed and
            stops with ``max_minutes`` or ``stop_after``); ``"exponential"``:
            ``lr · lr_decay^(step / lr_decay_steps)`` (the paper's schedule, independent of
            ``steps``).
        warmup_steps: see ``schedule``.
        min_lr_ratio: see ``schedule``.
        lr_decay: see ``schedule``.
        lr_decay_steps: see ``schedule``.
        precision: ``"auto"`` runs the convolutions under bfloat16 autocast where the device
            supports it natively (see :mod:`n3seq_image.precision`), ``"float32"`` never,
            ``"bfloat16"`` always. The loss, the N³ matching and the optimiser stay float32.
        quantized_share: share of training samples whose noisy image is clipped and
            quantised to 8 bits (see :class:`~n3seq_image.data.RandomCropDataset`).
        clip_grad_norm: rescale the gradient to at most this global L2 norm before each
            step (0 = no clipping). Whatever this is, a step whose gradient is not finite is
            skipped (weights and Adam moments untouched) and counted in the log's
            ``skipped``; :data:`n3seq._train_utils.MAX_SKIPPED_IN_A_ROW` such steps in a row end
            the run.
        weight_decay: weight decay on weights (not on biases and normalisation parameters):
            Adam's L2 term (added to the gradient, so normalised with it) by default.
        decoupled_weight_decay: apply ``weight_decay`` AdamW-style instead (Loshchilov &
            Hutter, 2019): ``w -= lr * weight_decay * w`` each step, outside Adam's
            normalisation, so a layer whose gradient is still tiny is not driven by the decay
            alone.
        seed: seeds the model initialisation and the data stream.
        val_data: optional folder of validation images.
        val_images: how many validation images to use.
        val_crop: centre crop of the validation images (bounds the cost; 0 = full images).
        val_every: validation interval in steps.
        bn_batches: before each validation and before the final weights are written, every
            batch-norm layer's running statistics are recomputed as the mean over this many
            fixed training batches (:func:`~n3seq_image.batchnorm_stats.recalibrate_batchnorm`;
            samples numbered from :data:`BN_SAMPLES_START`, outside the training stream; the
            weights and the training trajectory are unchanged). 0 keeps the running averages.
        checkpoint_every: checkpoint interval in steps.
        keep_checkpoints: how many recent checkpoints to keep (0 = all).
        max_minutes: stop (after checkpointing) when this wall time is exceeded; 0 = no limit.
        stop_after: stop (after checkpointing) once this step is reached; 0 = run to ``steps``.
            Unlike a smaller ``steps`` it leaves the learning-rate schedule as it is, so a run
            split into pieces with ``--resume`` equals the run in one piece.
        threads: torch intra-op threads (0 = leave as is).
        init: ``"zero-tail"`` zeroes the last convolution of every DnCNN stage, so a residual
            network starts as the identity (output = noisy input) instead of a large random
            correction; this saves the first few hundred steps of a short run. ``"default"``
            keeps the model's own initialisation.
        sync_bn: use SyncBatchNorm under DDP (GPU only).
        init_weights: start from this weights file (``OUT/model.safetensors`` of an earlier
            run, or a shipped file) instead of a fresh initialisation — fine-tuning, e.g. the
            blind model from the σ = 25 one. It must hold the same model with the same
            configuration (checked before anything is made); ``init`` is then not applied.
            The optimiser and schedule start afresh.
        progress: show a tqdm progress bar.
        task: ``"denoise"``, or ``"sr"``: super-resolution of the Y channel with ``model``
            ``"n3net"`` (N3Net-SR) or ``"vdsr"`` on multi-scale bicubic pairs
            (:mod:`n3seq_image.sr_data`); ``data`` may then list several folders separated
            by commas, and ``sigma`` and ``quantized_share`` are not used.
        scales: for ``task="sr"``, the scale factors mixed in training and validation.
    """

    data: str
    out: str
    model: str = "n3net"
    model_config: dict[str, Any] = field(default_factory=dict)
    sigma: str = "25"
    steps: int = 1000
    batch_size: int = 32
    crop: int = 80
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup_steps: int = 200
    min_lr_ratio: float = 0.01
    lr_decay: float = 0.1
    lr_decay_steps: int = 50_000
    precision: str = "auto"
    quantized_share: float = 0.25
    clip_grad_norm: float = 0.0
    weight_decay: float = 1e-4
    decoupled_weight_decay: bool = False
    seed: int = 0
    val_data: str | None = None
    val_images: int = 4
    val_crop: int = 128
    val_every: int = 100
    bn_batches: int = 32
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    max_minutes: float = 0.0
    stop_after: int = 0
    threads: int = 0
    init: str = "zero-tail"
    sync_bn: bool = False
    init_weights: str | None = None
    progress: bool = True
    task: str = "denoise"
    scales: str = "2,3,4"

    def validate(self) -> None:
        """Checks every field and that the data folders hold images, before anything is made.

        Raises:
            ValueError: naming the field and the bad value (wrong type, out of range, not
                finite; a model config that :func:`~n3seq_image.checkpoint.check_model_config`
                refuses); a data folder without images.
            FileNotFoundError: a data folder does not exist.
        """
        if self.task not in ("denoise", "sr"):
            raise ValueError(f"task must be 'denoise' or 'sr', got {self.task!r}")
        models = DEFAULT_CONFIGS if self.task == "denoise" else SR_CONFIGS
        if self.model not in models:
            raise ValueError(f"model must be one of {sorted(models)} for task {self.task!r}, "
                             f"got {self.model!r}")
        parse_sigma(self.sigma)
        minimum = {"steps": 1, "batch_size": 1, "crop": 1, "val_every": 1, "checkpoint_every": 1,
                   "lr_decay_steps": 1, "val_images": 1, "val_crop": 0, "keep_checkpoints": 0,
                   "bn_batches": 0,
                   "threads": 0, "seed": 0, "warmup_steps": 0, "stop_after": 0}
        for name, low in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        # (low, high, low_open): lr > 0; 0 < lr_decay <= 1; weight_decay, max_minutes >= 0.
        ranges = {"lr": (0.0, math.inf, True), "lr_decay": (0.0, 1.0, True),
                  "weight_decay": (0.0, math.inf, False), "max_minutes": (0.0, math.inf, False)}
        for name, (low, high, low_open) in ranges.items():
            value = getattr(self, name)
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value) and (value > low if low_open else value >= low)
                  and value <= high)
            if not ok:
                bound = f"{'>' if low_open else '>='} {low:g}" + (
                    f" and <= {high:g}" if math.isfinite(high) else "")
                raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
        for name in ("decoupled_weight_decay", "sync_bn", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.model_config, dict):
            raise ValueError(f"model_config must be a dict of constructor arguments, got "
                             f"{type(self.model_config).__name__} {self.model_config!r}")
        check_model_config(self.model,
                           {**default_model_config(self.task, self.model), **self.model_config},
                           source="model_config")
        if self.init not in ("zero-tail", "default"):
            raise ValueError(f"init must be 'zero-tail' or 'default', got {self.init!r}")
        if self.init_weights is not None:
            self.initial_state()
        if self.schedule not in ("cosine", "exponential"):
            raise ValueError(
                f"schedule must be 'cosine' or 'exponential', got {self.schedule!r}"
            )
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if not (math.isfinite(self.clip_grad_norm) and self.clip_grad_norm >= 0):
            raise ValueError(f"clip_grad_norm must be finite and >= 0, got {self.clip_grad_norm}")
        if not 0.0 <= self.quantized_share <= 1.0:
            raise ValueError(f"quantized_share must lie in [0, 1], got {self.quantized_share}")
        autocast_dtype(self.precision, "cpu")
        if self.task == "sr":
            parse_scales(self.scales)
            for folder in split_folders(self.data):
                list_images(folder)
        else:
            list_images(self.data)
        if self.val_data:
            list_images(self.val_data)

    def initial_state(self) -> dict[str, torch.Tensor]:
        """The tensors of ``init_weights``, checked to fit this run's model exactly.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not an n3seq_image weights file, another model, or other shapes.
        """
        path = str(self.init_weights)
        state, info = read_weights(path)
        config = {**default_model_config(self.task, self.model), **self.model_config}
        if info["model"] != self.model:
            raise ValueError(f"init_weights: {path} holds a {info['model']!r} model, this run "
                             f"trains a {self.model!r}")
        with torch.device("meta"):
            skeleton = build_model(self.model, config)
        check_state_fits(skeleton, state, f"init_weights: {path} does not fit a {self.model} "
                                          f"with config {config}")
        return state


def config_defaults() -> dict[str, Any]:
    """The default value of every :class:`TrainConfig` field that has one."""
    out = {}
    for f in fields(TrainConfig):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Adam parameter groups: weight decay on conv/linear weights, none on 1-D parameters.

    1-D parameters are biases and BatchNorm scales/shifts; decaying them only hurts.
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def zero_init_tails(model: nn.Module) -> int:
    """Zeroes the output convolution of every residual DnCNN (stage) in ``model``.

    Returns:
        The number of stages changed.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, DnCNN) and module.residual:
            nn.init.zeros_(module.tail.weight)
            if module.tail.bias is not None:
                nn.init.zeros_(module.tail.bias)
            count += 1
    return count


def unnormalised_residual_stages(model: nn.Module) -> int:
    """The residual DnCNN stages of ``model`` without batch-norm (VDSR, N3Net-SR's stages).

    Their zero-initialised tails (:func:`zero_init_tails`) and Adam's L2 weight decay do not
    mix: while a tail is near zero the stage's hidden weights get almost no data gradient, so
    Adam's normalised update follows the decay term alone and shrinks them by about the
    learning rate every step; without batch-norm to restore the scale, the signal through
    the stage vanishes and it stops learning (a VDSR run stayed 0.4 dB above bicubic for
    887 steps this way).
    """
    return sum(1 for m in model.modules()
               if isinstance(m, DnCNN) and m.residual and not m.batch_norm)


#: First sample number of the batch-norm recalibration batches: 2⁴⁰, far beyond any run's
#: training samples, so they never coincide with (or perturb) the training stream.
BN_SAMPLES_START = 2**40


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Learning rate of ``step`` (0-based) under ``cfg.schedule`` (see :class:`TrainConfig`)."""
    if cfg.schedule == "exponential":
        return cfg.lr * cfg.lr_decay ** (step / cfg.lr_decay_steps)
    warmup = min(cfg.warmup_steps, cfg.steps)
    if step < warmup:
        return cfg.lr * (0.01 + 0.99 * step / warmup)
    progress = min(1.0, (step - warmup) / max(1, cfg.steps - warmup))
    low = cfg.lr * cfg.min_lr_ratio
    return low + (cfg.lr - low) * 0.5 * (1.0 + math.cos(math.pi * progress))


class StopRequest:
    """SIGINT/SIGTERM during training: finish the step, checkpoint, then stop.

    The first Ctrl-C (or ``kill``) sets :attr:`requested`; the loop checks it after each
    optimiser step, so the checkpoint holds a consistent step, weights and Adam state and
    ``--resume`` continues exactly. A second signal interrupts at once, as usual.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    @classmethod
    def install(cls) -> StopRequest:
        """Installs the handlers in the main thread (elsewhere signals stay as they are).

        A signal the process ignores (SIGINT of a job started in the background, ``nohup``)
        stays ignored.
        """
        request = cls()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    request._previous[sig] = signal.signal(sig, request._handle)
        return request

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            self.uninstall()
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{signal.Signals(signum).name}: stopping after this step (checkpointed); "
              "send it again to stop at once", file=sys.stderr)

    def uninstall(self) -> None:
        """Restores the handlers that were there before :meth:`install`."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Initialises the process group from torchrun's environment (no-op for 1 process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def bn_sample_indices(batch: int, batch_size: int) -> range:
    """Sample numbers of batch-norm recalibration batch ``batch`` (never training samples)."""
    start = BN_SAMPLES_START + batch * batch_size
    return range(start, start + batch_size)


def load_validation(cfg: TrainConfig) -> torch.Tensor | None:
    """Validation images ``(N, 1, h, w)``: first ``val_images`` files, centre-cropped."""
    if not cfg.val_data:
        return None
    _, images = load_folder(cfg.val_data, limit=cfg.val_images)
    out = []
    for im in images:
        if cfg.val_crop:
            h, w = im.shape
            c = min(cfg.val_crop, h, w)
            top, left = (h - c) // 2, (w - c) // 2
            im = im[top : top + c, left : left + c]
        out.append(im)
    size = min(min(im.shape) for im in out)
    return torch.from_numpy(np.stack([im[:size, :size] for im in out]))[:, None]


@torch.no_grad()
def validate(model: nn.Module, clean: torch.Tensor, sigma: float, device: torch.device) -> float:
    """Mean PSNR (dB) of the clipped output on ``clean`` with fixed-seed noise at ``sigma``."""
    was_training = model.training
    model.eval()
    psnrs = []
    for i, img in enumerate(clean):
        noisy = torch.from_numpy(add_noise(img.numpy(), sigma, seed=[1234, i]))[None]
        out = model(noisy.to(device)).clamp(0, 1).cpu()
        psnrs.append(batch_psnr(out, img[None]).item())
    model.train(was_training)
    return float(np.mean(psnrs))


def write_logs(run_dir: Path, log: list[dict[str, Any]]) -> None:
    """Writes ``log.json`` and ``log.csv`` (one row per logged step) atomically."""
    atomic_write_json(run_dir / "log.json", log)
    keys = ["step", "lr", "loss", "val_psnr", "skipped", "elapsed_s"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(log)
    atomic_write(run_dir / "log.csv", lambda p: p.write_text(buf.getvalue()))


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Trains a denoiser; returns a summary (final step, loss, validation PSNR, wall time).

    Args:
        cfg: run configuration.
        resume: continue from the newest checkpoint in ``cfg.out`` (its stored configuration
            must match ``cfg`` except for ``out`` (a run folder may be moved), ``steps``,
            ``max_minutes``, ``stop_after``, ``threads``, ``progress``, ``keep_checkpoints``
            ``precision`` and ``clip_grad_norm``).

    Returns:
        ``{"step", "loss", "val_psnr", "elapsed_s", "weights", "interrupted", "finished"}``;
        ``finished`` is false when the run stopped before ``cfg.steps`` (``--max-minutes``,
        ``--stop-after`` or a signal). The weights file is written either way and its
        metadata ``extra`` records ``finished`` too, so that a piece of a run is never
        mistaken for the final weights.
    """
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    info = init_distributed()
    device = torch.device(
        f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu"
    )
    run_dir = Path(cfg.out)
    if info.main:
        run_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    model_cfg = {**default_model_config(cfg.task, cfg.model), **cfg.model_config}
    model = build_model(cfg.model, model_cfg)
    if cfg.init_weights is not None:
        model.load_state_dict(cfg.initial_state())
    elif cfg.init == "zero-tail":
        zero_init_tails(model)
        if (cfg.weight_decay > 0 and not cfg.decoupled_weight_decay and info.main
                and unnormalised_residual_stages(model)):
            print(f"warning: --weight-decay {cfg.weight_decay:g} with zero-initialised tails "
                  f"and no batch-norm ({cfg.model}): Adam's L2 decay shrinks the hidden "
                  "weights while the tails are near zero and the network barely learns; use "
                  "--weight-decay 0, --decoupled-weight-decay or --init default",
                  file=sys.stderr)
    model = model.to(device, memory_format=preferred_memory_format(device)).train()
    optimizer = torch.optim.Adam(parameter_groups(model, cfg.weight_decay), lr=cfg.lr,
                                 decoupled_weight_decay=cfg.decoupled_weight_decay)

    start_step, log, elapsed_before = 0, [], 0.0
    if resume:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise FileNotFoundError(f"--resume: no checkpoint found in {run_dir}")
        doc = load_checkpoint(ckpt, model, optimizer)
        saved = doc["state"].get("config", {})
        volatile = {
            "out", "steps", "max_minutes", "stop_after", "threads", "progress",
            "keep_checkpoints", "precision", "clip_grad_norm", "bn_batches",
        }
        # a setting the checkpoint predates had its default value in that run
        saved = {**config_defaults(), **saved}
        diff = {
            k: (saved.get(k), v)
            for k, v in asdict(cfg).items()
            if k not in volatile and k in saved and saved[k] != v
        }
        if diff:
            raise ValueError(f"--resume: configuration differs from the checkpoint's: {diff}")
        start_step = doc["step"]
        log = doc["state"].get("log", [])
        elapsed_before = doc["state"].get("elapsed_s", 0.0)

    if cfg.sync_bn and info.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net: nn.Module = model
    if info.enabled:
        ids = [device.index] if device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)

    if cfg.task == "sr":
        dataset, validator = sr_training_source(cfg, device, info.main)
    else:
        dataset = RandomCropDataset(cfg.data, crop=cfg.crop, sigma=cfg.sigma, seed=cfg.seed,
                                    quantized_share=cfg.quantized_share)
        val = load_validation(cfg) if info.main else None
        sigma_val = float(np.mean(parse_sigma(cfg.sigma)))
        validator = None if val is None else (lambda m: validate(m, val, sigma_val, device))

    from tqdm.auto import tqdm

    bar = tqdm(
        total=cfg.steps, initial=start_step, disable=not (cfg.progress and info.main),
        desc=f"train {cfg.model}", dynamic_ncols=True,
    )
    t0 = time.monotonic()
    running, count, last_val = 0.0, 0, (log[-1].get("val_psnr") if log else None)
    guard = DivergenceGuard("lower --lr or set --clip-grad-norm",
                            skipped=log[-1].get("skipped", 0) if log else 0)
    step = start_step
    calibrated_at = -1  # the step whose batch-norm statistics were last recomputed

    def recalibrate() -> None:
        if cfg.bn_batches:
            recalibrate_batchnorm(
                model,
                (dataset.batch(bn_sample_indices(i, cfg.batch_size))[0].to(device)
                 for i in range(cfg.bn_batches)),
                context=lambda: autocast(cfg.precision, device),
            )

    def weights_extra() -> dict[str, Any]:
        """The weights file's notes (the final file's and every checkpoint's)."""
        extra = {
            "sigma": cfg.sigma, "steps": step, "batch_size": cfg.batch_size, "crop": cfg.crop,
            "seed": cfg.seed, "val_psnr": last_val, "train_data": Path(cfg.data).name,
            "finished": step >= cfg.steps,
        }
        return sr_weights_extra(cfg, extra) if cfg.task == "sr" else extra

    def checkpoint() -> None:
        if info.main:
            state = {
                "config": asdict(cfg), "log": log,
                "elapsed_s": elapsed_before + time.monotonic() - t0,
            }
            save_checkpoint(run_dir, model, optimizer, step, state, keep=cfg.keep_checkpoints,
                            weights_extra=weights_extra())
            write_logs(run_dir, log)

    interrupt = StopRequest.install()
    try:
        with denormals_flushed():
            while step < cfg.steps:
                lr = learning_rate(cfg, step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                indices = shard_indices(step, cfg.batch_size, info.rank, info.world_size)
                noisy, clean = dataset.batch(indices)
                noisy, clean = noisy.to(device), clean.to(device)
                with autocast(cfg.precision, device):
                    output = net(noisy)
                loss = nn.functional.mse_loss(output.float(), clean)
                value = optimizer_step(loss, model, optimizer, None, cfg.clip_grad_norm)
                guard.update(value, step + 1)
                if not math.isnan(value):
                    running, count = running + value, count + 1
                step += 1
                bar.update(1)
                if step % cfg.val_every == 0 or step == cfg.steps:
                    if validator is not None:
                        recalibrate()
                        calibrated_at = step
                        last_val = validator(model)
                    log.append({
                        "step": step, "lr": lr, "loss": running / count if count else None,
                        "val_psnr": last_val,
                        "skipped": guard.skipped,
                        "elapsed_s": round(elapsed_before + time.monotonic() - t0, 2),
                    })
                    running, count = 0.0, 0
                bar.set_postfix(loss=f"{value:.2e}",
                                val_psnr=f"{last_val:.2f}" if last_val else "-")
                stop = (cfg.max_minutes > 0 and (time.monotonic() - t0) / 60 > cfg.max_minutes) or (
                    0 < cfg.stop_after <= step
                ) or interrupt.requested
                if info.enabled:
                    flag = torch.tensor([float(stop)], device=device)
                    dist.all_reduce(flag)
                    stop = bool(flag.item() > 0)
                if step % cfg.checkpoint_every == 0 or step == cfg.steps or stop:
                    checkpoint()
                if stop:
                    break
    finally:
        interrupt.uninstall()
    bar.close()

    summary = {
        "step": step,
        "loss": log[-1]["loss"] if log else None,
        "val_psnr": last_val,
        "elapsed_s": round(elapsed_before + time.monotonic() - t0, 2),
        "weights": str(run_dir / "model.safetensors"),
        "interrupted": interrupt.requested,
        "finished": step >= cfg.steps,
    }
    if info.main:
        if calibrated_at != step:  # the buffers are training averages since the last one
            recalibrate()
        save_weights(run_dir / "model.safetensors", model, extra=weights_extra())
        write_logs(run_dir, log)
    if info.enabled:
        dist.barrier()
    return summary
