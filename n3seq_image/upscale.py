"""Super-resolving images: ``n3seq-image upscale`` and the SR methods behind it.

A method maps a low-resolution luma image to the high-resolution one (:data:`SRMethod`):
``bicubic`` is MATLAB-compatible bicubic interpolation; a network (VDSR or N3Net-SR) runs on
the bicubic-upsampled image in overlapping tiles (:func:`~n3seq_image.denoise.denoise_tensor`,
so memory stays bounded on large images). Grey images are upscaled as they are (a grey image
is its own Y in the benchmark protocol); colour images go through YCbCr (MATLAB's
``rgb2ycbcr``): the method on Y, bicubic on Cb and Cr, as is standard; an alpha channel is
upscaled with bicubic too.

Shipped weights live in ``n3seq_image/weights/n3net_sr.safetensors`` and
``n3seq_image/weights/vdsr.safetensors``; until those files exist ``--model n3net`` and
``--model vdsr`` fail with a message saying so (``--model bicubic`` and weights files made
by ``n3seq-image train --task sr`` work).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from n3seq._files import check_output_path
from n3seq_image.checkpoint import load_model, read_weights
from n3seq_image.color import rgb_to_ycbcr, ycbcr_to_rgb
from n3seq_image.data import check_image_output, read_image, save_image
from n3seq_image.denoise import (
    WEIGHTS_DIR,
    check_image_values,
    check_tiling,
    denoise_tensor,
    resolve_device,
)
from n3seq_image.imresize import imresize
from n3seq_image.sr import SRMethod, bicubic, check_scale

#: Shipped SR weights files (in ``n3seq_image/weights/``), by model name.
SR_WEIGHTS = {"n3net": "n3net_sr.safetensors", "vdsr": "vdsr.safetensors"}
#: Names ``--model`` accepts besides weights files.
SR_METHODS = ("n3net", "vdsr", "bicubic")


def sr_weights(name: str) -> Path:
    """Path of the shipped SR weights ``"n3net"`` or ``"vdsr"``.

    Raises:
        ValueError: unknown name.
        FileNotFoundError: the file is not there (an incomplete installation).
    """
    if name not in SR_WEIGHTS:
        raise ValueError(
            f"no shipped SR weights named {name!r}; choose one of {sorted(SR_WEIGHTS)}"
        )
    path = WEIGHTS_DIR / SR_WEIGHTS[name]
    if not path.is_file():
        label = {"n3net": "N3Net-SR", "vdsr": "VDSR"}[name]
        raise FileNotFoundError(
            f"the shipped {label} weights are missing ({path}; reinstall n3seq, or see "
            f"docs/sr.md to train them); use --model bicubic, or --model FILE.safetensors "
            f"with weights from 'n3seq-image train --task sr'"
        )
    return path


def load_sr_network(spec: str) -> tuple[nn.Module, dict]:
    """Loads an SR network and its weights metadata from a shipped name or a weights file.

    Raises:
        FileNotFoundError: no such file / shipped weights missing.
        ValueError: the file holds a model trained for another task (denoising).
    """
    if spec in SR_WEIGHTS:
        path = sr_weights(spec)
    else:
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(
                f"model {spec!r} is neither one of {', '.join(SR_METHODS)} nor an existing "
                ".safetensors weights file"
            )
    _, info = read_weights(path)
    task = info["extra"].get("task", "denoise")
    if task != "sr":
        raise ValueError(
            f"{path} holds a model ({info['model']}) trained for {task!r}, not "
            "super-resolution (weights from 'n3seq-image train --task sr' record task 'sr')"
        )
    return load_model(path), info


def network_method(
    model: nn.Module,
    tile: int = 512,
    overlap: int = 48,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> SRMethod:
    """The :data:`SRMethod` of a network on the bicubic-upsampled input (float32, tiled).

    ``tile`` and ``overlap`` are in high-resolution pixels.
    """
    check_tiling(tile, overlap)
    device = resolve_device(device)

    def run(lr: np.ndarray, scale: int) -> np.ndarray:
        upsampled = bicubic(lr, scale).astype(np.float32)
        return denoise_tensor(model, upsampled, tile=tile, overlap=overlap, device=device,
                              progress=progress).astype(np.float64)

    return run


def get_sr_method(
    spec: str,
    tile: int = 512,
    overlap: int = 48,
    device: str | torch.device = "cpu",
    progress: bool = False,
    scale: int | None = None,
) -> SRMethod:
    """An :data:`SRMethod` from ``"bicubic"``, ``"n3net"``, ``"vdsr"`` or a weights file.

    Args:
        spec: the method.
        tile: tile side for networks (HR pixels, >= 80).
        overlap: tile overlap for networks.
        device: torch device for networks.
        progress: show a tile progress bar on stderr (networks, images larger than a tile).
        scale: if given, warn on stderr when a network was not trained for it.
    """
    if spec == "bicubic":
        return bicubic
    model, info = load_sr_network(spec)
    trained = info["extra"].get("scales")
    if scale is not None and isinstance(trained, list) and scale not in trained:
        print(f"warning: model {spec} was trained for scales {trained}, not x{scale}",
              file=sys.stderr)
    return network_method(model, tile=tile, overlap=overlap, device=device, progress=progress)


def upscale_array(method: SRMethod, image: np.ndarray, scale: int) -> np.ndarray:
    """Upscales a ``[0, 1]`` image by ``scale``: grey directly, colour through YCbCr.

    Returns:
        ``(H·s, W·s)`` or ``(H·s, W·s, 3)`` float array (not clipped).
    """
    scale = check_scale(scale)
    image = np.asarray(image)
    check_image_values(image)
    if image.ndim == 2:
        return method(image.astype(np.float64), scale)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W) or (H, W, 3), got {image.shape}")
    ycc = rgb_to_ycbcr(image.astype(np.float64))
    y = method(ycc[..., 0], scale)
    chroma = resize_channels(ycc[..., 1:], scale)
    return ycbcr_to_rgb(np.concatenate([y[..., None], chroma], axis=-1))


def resize_channels(image: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic ×``scale`` of an ``(H, W, C)`` array (float32 arithmetic, float64 result)."""
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, 0), dtype=np.float32))
    h, w = image.shape[:2]
    out = imresize(x, size=(h * scale, w * scale)).numpy()
    return np.moveaxis(out, 0, -1).astype(np.float64)


def upscale_file(
    src: str | Path,
    dst: str | Path,
    scale: int,
    model: str = "n3net",
    tile: int = 512,
    overlap: int = 48,
    device: str = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Upscales an image file by ``scale`` and writes the result atomically.

    Files are read and written as by ``n3seq-image denoise``
    (:func:`~n3seq_image.data.read_image`, :func:`~n3seq_image.data.save_image`): grey stays
    grey, colour stays colour, an alpha channel is kept (bicubic), 16-bit grey stays 16-bit.

    Args:
        src: input (low-resolution) image.
        dst: output path; written only if everything succeeds, never the input itself.
        scale: integer factor >= 2 (the SR models are trained for 2, 3 and 4).
        model: ``"n3net"``, ``"vdsr"``, ``"bicubic"`` or a weights file.
        tile: tile side for networks, in output pixels.
        overlap: tile overlap.
        device: torch device.
        progress: tile progress bar on stderr.

    Returns:
        The upscaled image (without alpha).

    Raises:
        ValueError: bad scale, options, output format, or a weights file of another task.
        FileNotFoundError: missing input or weights.
    """
    scale = check_scale(scale)
    dst = check_output_path(dst, inputs=(src,))
    check_image_output(dst)
    method = get_sr_method(model, tile=tile, overlap=overlap, device=device, progress=progress,
                           scale=scale)
    image, alpha, depth = read_image(src)
    check_image_output(dst, alpha=alpha is not None)
    out = upscale_array(method, image, scale)
    alpha_out = None if alpha is None else np.clip(resize_channels(alpha[..., None], scale)[..., 0],
                                                   0.0, 1.0)
    save_image(dst, out, alpha=alpha_out, depth=depth)
    return out
