"""Training and validation data for super-resolution: multi-scale bicubic pairs of Y crops.

Every training image is turned into the protocol's Y channel (:func:`n3seq_image.sr.luma`),
mod-cropped to a multiple of every training scale, and degraded **once per scale** on the
whole image — low resolution with MATLAB-compatible bicubic in double precision, then bicubic
back up (:func:`n3seq_image.sr.downscale`, :func:`~n3seq_image.sr.bicubic`) — so a crop's
input is exactly the crop of the whole image's interpolation, as at test time (no crop-border
effects). Sample ``g`` of seed ``s`` is then a deterministic function of ``(s, g)``: a scale
drawn uniformly from ``scales``, an image, a ``crop × crop`` window and one of the 8
flips/90° rotations (which commute with the degradation, so they are applied to the pair).
Like :class:`~n3seq_image.data.RandomCropDataset` this makes resuming exact and lets DDP
ranks share one global batch.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from n3seq_image.data import list_images, load_image
from n3seq_image.sr import SCALES, bicubic, check_scale, downscale, finish, luma, mod_crop, sr_psnr


def parse_scales(scales: str | int | Sequence[int]) -> tuple[int, ...]:
    """``"2,3,4"``, ``3`` or ``(2, 4)`` → a sorted tuple of distinct integer scales >= 2.

    Raises:
        ValueError: empty, not integers, or a scale below 2.
    """
    if isinstance(scales, str):
        parts = [p.strip() for p in scales.replace("+", ",").split(",") if p.strip()]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"scales must be integers like '2,3,4', got {scales!r}") from None
    elif isinstance(scales, (int, np.integer)) and not isinstance(scales, bool):
        values = [int(scales)]
    else:
        values = list(scales)
    if not values:
        raise ValueError(f"scales must name at least one scale, got {scales!r}")
    return tuple(sorted({check_scale(v, "scales") for v in values}))


def split_folders(data: str | Path | Sequence[str | Path]) -> list[Path]:
    """Training folders from ``"DIR[,DIR…]"`` or a list of folders."""
    if isinstance(data, (str, Path)):
        parts = [p.strip() for p in str(data).split(",") if p.strip()]
    else:
        parts = [str(p) for p in data]
    if not parts:
        raise ValueError(f"no training folder given in {data!r}")
    return [Path(p) for p in parts]


def load_luma_images(folders: Sequence[str | Path]) -> tuple[list[str], list[np.ndarray]]:
    """Names and protocol Y channels (float64) of every image of ``folders``, in order."""
    names, images = [], []
    for folder in folders:
        for path in list_images(folder):
            names.append(f"{Path(folder).name}/{path.name}")
            images.append(luma(load_image(path, grayscale=False)))
    return names, images


def degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """The network input of a mod-cropped HR Y image: bicubic down by ``scale``, then up."""
    return bicubic(downscale(hr, scale), scale)


class SRCropDataset:
    """Multi-scale training pairs ``(bicubic input, HR target)`` of Y crops.

    Args:
        data: folder(s) of training images (``"t91,train400"`` or a list of folders), or a
            list of ``(H, W)`` float Y images in ``[0, 1]``.
        crop: crop side in HR pixels (>= 80 for N3Net-SR, whose search window is 80 px).
        scales: scale factors mixed uniformly (``"2,3,4"``).
        seed: run seed.
        warn: print a line to stderr when images smaller than ``crop`` are left out.

    Raises:
        ValueError: no image is at least ``crop`` px after mod-cropping.

    Example:
        >>> ds = SRCropDataset([np.full((100, 100), 0.5)], crop=80, scales="2,4")
        >>> inputs, targets = ds.batch(range(3))
        >>> inputs.shape, targets.shape
        (torch.Size([3, 1, 80, 80]), torch.Size([3, 1, 80, 80]))
    """

    def __init__(
        self,
        data: str | Path | Sequence[str | Path] | Sequence[np.ndarray],
        crop: int = 96,
        scales: str | Sequence[int] = "2,3,4",
        seed: int = 0,
        warn: bool = True,
    ) -> None:
        if isinstance(crop, bool) or not isinstance(crop, int) or crop < 1:
            raise ValueError(f"crop must be an int >= 1, got {crop!r}")
        self.scales = parse_scales(scales)
        if isinstance(data, (str, Path)) or (
            isinstance(data, Sequence) and data and isinstance(data[0], (str, Path))
        ):
            names, images = load_luma_images(split_folders(data))  # type: ignore[arg-type]
        else:
            images = [np.asarray(im, dtype=np.float64) for im in data]  # type: ignore[union-attr]
            names = [f"#{i}" for i in range(len(images))]
        if not images:
            raise ValueError("SRCropDataset needs at least one image")
        multiple = math.lcm(*self.scales)
        kept, small = [], []
        for name, im in zip(names, images):
            if im.ndim != 2:
                raise ValueError(f"image {name} must be (H, W) Y, got shape {im.shape}")
            h, w = im.shape
            if min(h - h % multiple, w - w % multiple) < crop:
                small.append(name)
            else:
                kept.append((name, mod_crop(im, multiple)))
        if not kept:
            raise ValueError(
                f"crop={crop} is larger than every image after mod-cropping to {multiple} "
                f"(e.g. {small[0]})"
            )
        if small and warn:
            print(f"warning: {len(small)} of {len(names)} training images are smaller than "
                  f"crop={crop} after mod-cropping to {multiple} and are left out: "
                  f"{', '.join(small[:5])}{' …' if len(small) > 5 else ''}", file=sys.stderr)
        self.names = [n for n, _ in kept]
        self.skipped = small
        self.crop, self.seed = crop, seed
        self.targets = [im.astype(np.float32) for _, im in kept]
        self.inputs = {
            s: [degrade(im, s).astype(np.float32) for _, im in kept] for s in self.scales
        }

    def __len__(self) -> int:
        return len(self.targets)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Global sample ``index`` → ``(input, target, scale)``, float32 ``(crop, crop)``."""
        rng = np.random.default_rng([self.seed, int(index)])
        scale = self.scales[int(rng.integers(len(self.scales)))]
        i = int(rng.integers(len(self.targets)))
        target, source = self.targets[i], self.inputs[scale][i]
        h, w = target.shape
        top = int(rng.integers(h - self.crop + 1))
        left = int(rng.integers(w - self.crop + 1))
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        pair = []
        for im in (source[window], target[window]):
            im = np.rot90(im, k=k)
            pair.append(np.ascontiguousarray(im[:, ::-1] if flip else im))
        return pair[0], pair[1], scale

    def batch(self, indices: Sequence[int] | range) -> tuple[Tensor, Tensor]:
        """Stacks samples into ``(inputs, targets)`` tensors ``(B, 1, crop, crop)``."""
        samples = [self.sample(i) for i in indices]
        inputs = torch.from_numpy(np.stack([s[0] for s in samples]))[:, None]
        targets = torch.from_numpy(np.stack([s[1] for s in samples]))[:, None]
        return inputs, targets


class SRValidation:
    """Validation PSNR during training: mean Y-PSNR over images and scales (protocol steps).

    The first ``images`` images of ``folder`` are centre-cropped to ``crop`` px (0: whole
    images), mod-cropped to every scale and degraded once; :meth:`__call__` runs a model on
    each input and averages :func:`n3seq_image.sr.sr_psnr` of the clipped, 8-bit rounded
    output. On whole images (``crop = 0``) this is the benchmark number of
    :mod:`n3seq_image.sr_evaluate` averaged over the scales.

    Args:
        folder: folder of HR test images (e.g. Set5).
        images: how many (sorted by name).
        crop: centre crop side (bounds the cost; 0 = whole images).
        scales: the scales to average over.
    """

    def __init__(
        self, folder: str | Path, images: int = 4, crop: int = 0,
        scales: str | Sequence[int] = SCALES,
    ) -> None:
        self.scales = parse_scales(scales)
        self.items: list[tuple[int, np.ndarray, np.ndarray]] = []
        for path in list_images(folder)[:images]:
            image = load_image(path, grayscale=False)
            if crop:
                h, w = image.shape[:2]
                c = min(crop, h, w)
                top, left = (h - c) // 2, (w - c) // 2
                image = image[top : top + c, left : left + c]
            hr = luma(image)
            for s in self.scales:
                target = mod_crop(hr, s)
                self.items.append((s, degrade(target, s).astype(np.float32), target))

    @torch.no_grad()
    def __call__(self, model: nn.Module, device: torch.device | str = "cpu") -> float:
        """Mean PSNR (dB) of ``model`` over the validation images and scales."""
        was_training = model.training
        model.eval()
        values = []
        try:
            for scale, source, target in self.items:
                x = torch.from_numpy(source)[None, None].to(device)
                out = model(x)[0, 0].float().cpu().numpy()
                values.append(sr_psnr(finish(out), target, scale))
        finally:
            model.train(was_training)
        return float(np.mean(values))


def sr_training_source(
    cfg: Any, device: torch.device | str, main: bool = True,
) -> tuple[SRCropDataset, Callable[[nn.Module], float] | None]:
    """The data of an ``n3seq-image train --task sr`` run (see :class:`~n3seq_image.train.
    TrainConfig`): the pairs, and the validation function on the main process (or ``None``).
    """
    dataset = SRCropDataset(cfg.data, crop=cfg.crop, scales=cfg.scales, seed=cfg.seed, warn=main)
    if not (cfg.val_data and main):
        return dataset, None
    val = SRValidation(cfg.val_data, images=cfg.val_images, crop=cfg.val_crop, scales=cfg.scales)
    return dataset, lambda model: val(model, device)


def sr_weights_extra(cfg: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """The notes of an SR run's weights file: ``task: "sr"`` and the scales (no σ)."""
    out = {k: v for k, v in extra.items() if k != "sigma"}
    out["train_data"] = ",".join(p.name for p in split_folders(cfg.data))
    return {"task": "sr", "scales": list(parse_scales(cfg.scales)), **out}
