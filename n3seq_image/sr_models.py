"""The two super-resolution networks: VDSR and the SR N3Net (one model for ×2, ×3, ×4).

Both map the bicubic-upsampled luma channel (Y of MATLAB's ``rgb2ycbcr``, in ``[0, 1]``) to
the high-resolution Y channel of the same size.

**N3Net-SR** (Plötz & Roth, 2018, §5.3) is :class:`~n3seq_image.N3Net` with three VDSR-style
stages (7 convolutions of 64 features, biases and ReLUs, no batch-norm) and an N³ block with
k = 7 between consecutive stages; 8 channels pass between stages, as in the denoiser. The
paper leaves the N³ patch geometry open; we keep the denoiser's: 10×10 patches at stride 5
searched in a 15×15-patch window (80×80 px). Reasons: on the upsampled grid a 10 px patch is 5,
3.3 and 2.5 low-resolution pixels at ×2, ×3, ×4 — a structure size that still repeats across an
image at every scale; stride 5 divides 10, so the fast N³ backend applies; and the 80 px window
fits the 80 px training crops of the shipped recipe (``scripts/train_runs.sh``;
:mod:`n3seq_image.sr_data`), where every query's window is the whole crop. Images must then be
at least 80 px per side (the upscaler pads smaller ones). The per-stage residuals of N3Net
chain the input's first channel through every stage to the output (the N³ block passes its
input on unchanged in its first channels), which is VDSR's global residual: with zero-
initialised stage tails (the trainer's default) the network starts as the bicubic
interpolation. 816 k parameters against VDSR's 666 k.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from n3seq_image.n3net import N3Net
from n3seq_image.vdsr import VDSR

#: Constructor arguments of the SR N3Net (:class:`~n3seq_image.N3Net`).
N3NET_SR_CONFIG: dict[str, Any] = {
    "in_channels": 1, "out_channels": 1, "stages": 3, "depth": 7, "features": 64,
    "stage_channels": 8, "k": 7, "patch_size": 10, "stride": 5, "window": 15,
    "batch_norm": False,
}

#: Constructor arguments of VDSR (:class:`~n3seq_image.VDSR`): the paper's model.
VDSR_CONFIG: dict[str, Any] = {"in_channels": 1, "out_channels": 1, "depth": 20, "features": 64}

#: Default architecture of each SR model name (the names of :mod:`n3seq_image.checkpoint`).
SR_CONFIGS: dict[str, dict[str, Any]] = {"n3net": N3NET_SR_CONFIG, "vdsr": VDSR_CONFIG}


def sr_model(name: str, **overrides: Any) -> nn.Module:
    """Builds the SR model ``"n3net"`` or ``"vdsr"`` (``overrides`` change its config).

    Example:
        >>> net = sr_model("n3net")
        >>> net.config["depth"], net.config["batch_norm"], len(net.n3blocks)
        (7, False, 2)
    """
    classes: dict[str, Any] = {"n3net": N3Net, "vdsr": VDSR}
    if name not in classes:
        raise ValueError(f"unknown SR model {name!r}; choose one of {sorted(classes)}")
    return classes[name].from_config({**SR_CONFIGS[name], **overrides})
