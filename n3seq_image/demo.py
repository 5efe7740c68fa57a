"""``make demo``: denoise scikit-image's ``camera`` at σ = 25 with the shipped N3Net.

Prints the PSNR of the noisy and the denoised image and writes ``noisy.png``,
``denoised.png`` and ``side_by_side.png`` (clean | noisy | denoised, each panel labelled
above with its name and PSNR) to the output folder.
What it is doing (loading the model, denoising, writing) is reported on stderr as it goes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage import data

from n3seq_image.data import add_noise, save_image
from n3seq_image.denoise import get_denoiser
from n3seq_image.metrics import psnr, ssim

#: Height in pixels of the label strip above the panels of ``side_by_side.png``.
LABEL_HEIGHT = 28
#: White gap between the panels of ``side_by_side.png``.
GAP = 8


def _stderr_log(stream: TextIO | None = None) -> Callable[[str], None]:
    start = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - start:5.1f} s] {message}", file=stream or sys.stderr,
              flush=True)

    return log


def labelled_panels(panels: list[np.ndarray], labels: list[str]) -> np.ndarray:
    """Grey ``(H, W)`` panels side by side with ``GAP`` px between them, each labelled above.

    The labels are drawn in black on a white strip of ``LABEL_HEIGHT`` px with PIL's default
    font, left-aligned over their panel.

    Args:
        panels: ``(H, W_i)`` float images in ``[0, 1]`` of one height.
        labels: one text per panel.

    Returns:
        ``(LABEL_HEIGHT + H, sum(W_i) + GAP * (len(panels) - 1))`` float32 image in ``[0, 1]``.

    Raises:
        ValueError: no panels, a label count that differs, or panels of different heights.
    """
    if not panels or len(labels) != len(panels):
        raise ValueError(f"need one label per panel, got {len(panels)} panels and "
                         f"{len(labels)} labels")
    heights = {p.shape[0] for p in panels}
    if len(heights) != 1 or any(p.ndim != 2 for p in panels):
        raise ValueError(f"panels must be (H, W) images of one height, got shapes "
                         f"{[p.shape for p in panels]}")
    h = panels[0].shape[0]
    gap = np.ones((h, GAP), dtype=np.float32)
    row = [part for p in panels for part in (np.clip(p, 0, 1).astype(np.float32), gap)][:-1]
    body = np.concatenate(row, axis=1)
    canvas = Image.new("L", (body.shape[1], LABEL_HEIGHT + h), 255)
    canvas.paste(Image.fromarray(np.round(body * 255).astype(np.uint8)), (0, LABEL_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=LABEL_HEIGHT - 10)
    left = 0
    for panel, label in zip(panels, labels):
        draw.text((left + 6, LABEL_HEIGHT // 2), label, fill=0, font=font, anchor="lm")
        left += panel.shape[1] + GAP
    return np.asarray(canvas, dtype=np.float32) / 255.0


def run_demo(
    out_dir: str | Path = "results/demo",
    sigma: float = 25.0,
    seed: int = 0,
    model: str = "n3net",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Runs the demo; returns the PSNR/SSIM numbers and the written paths.

    Args:
        out_dir: folder for the three PNG files.
        sigma: noise level (0–255 scale).
        seed: noise seed.
        model: denoiser spec (see :func:`~n3seq_image.denoise.get_denoiser`).
        log: called with a line for each stage (default: timestamped lines on stderr).
    """
    log = log or _stderr_log()
    clean = data.camera().astype(np.float32) / 255.0
    noisy = add_noise(clean, sigma, seed=[seed, 0])
    log(f"loading the model {model}")
    denoiser = get_denoiser(model, sigma)
    log(f"denoising the 512x512 camera image at sigma={sigma:g} (CPU: tens of seconds)")
    t0 = time.perf_counter()
    denoised = denoiser(noisy)
    log(f"denoised in {time.perf_counter() - t0:.1f} s")
    out_dir = Path(out_dir)
    psnr_noisy, psnr_denoised = psnr(noisy, clean), psnr(denoised, clean)
    side = labelled_panels(
        [clean, np.clip(noisy, 0, 1), denoised],
        ["clean", f"noisy (sigma {sigma:g}): PSNR {psnr_noisy:.2f} dB",
         f"denoised ({Path(model).stem}): PSNR {psnr_denoised:.2f} dB"],
    )
    paths = {
        "noisy": out_dir / "noisy.png",
        "denoised": out_dir / "denoised.png",
        "side_by_side": out_dir / "side_by_side.png",
    }
    log(f"writing {', '.join(p.name for p in paths.values())} to {out_dir}")
    save_image(paths["noisy"], noisy)
    save_image(paths["denoised"], denoised)
    save_image(paths["side_by_side"], side)
    return {
        "sigma": sigma,
        "model": model,
        "psnr_noisy": psnr_noisy,
        "psnr_denoised": psnr_denoised,
        "ssim_noisy": ssim(np.clip(noisy, 0, 1), clean),
        "ssim_denoised": ssim(denoised, clean),
        "paths": {k: str(v) for k, v in paths.items()},
    }


def report(result: dict[str, Any]) -> str:
    """The demo's numbers and written files as text."""
    return "\n".join([
        f"camera (512x512) with Gaussian noise sigma={result['sigma']:g}, model {result['model']}",
        f"  noisy    PSNR {result['psnr_noisy']:6.2f} dB  SSIM {result['ssim_noisy']:.4f}",
        f"  denoised PSNR {result['psnr_denoised']:6.2f} dB  SSIM {result['ssim_denoised']:.4f}",
        *(f"  wrote {p}" for p in result["paths"].values()),
    ])
