"""Benchmark super-resolution methods on a folder of HR images (``evaluate --task sr``).

Every image goes through the protocol of :mod:`n3seq_image.sr` — mod-crop to the scale,
the 8-bit MATLAB Y channel, bicubic low resolution in double precision — and every method's
output is clipped, rounded to 8 bits and scored on Y with ``scale`` border pixels shaved
(PSNR and Wang et al.'s SSIM). ``bicubic`` is always evaluated (the role ``noisy`` plays for
denoising). The result has the schema of :func:`n3seq_image.evaluate.evaluate` —
``rows``, ``mean.<method>.psnr`` … — with ``task: "sr"`` and ``scale`` in place of ``sigma``,
so :func:`~n3seq_image.evaluate.format_table` and
:func:`~n3seq_image.evaluate.write_results` serve both tasks.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from n3seq_image.data import list_images, load_image
from n3seq_image.evaluate import check_min_side, mean_by_method
from n3seq_image.sr import (
    SSIM_WINDOW,
    SRMethod,
    bicubic,
    check_scale,
    finish,
    prepare,
    sr_psnr,
    sr_ssim,
)
from n3seq_image.upscale import get_sr_method

#: One line on the protocol, stored in the results.
PROTOCOL = (
    "HR mod-cropped to the scale; Y = MATLAB rgb2ycbcr of the 8-bit image, rounded (grey "
    "images: their own Y); LR = MATLAB-compatible bicubic imresize(Y, 1/scale) in float64; "
    "outputs clipped to [0, 1] and rounded to 8 bits; PSNR (peak 1) and SSIM (11x11 Gaussian, "
    "sigma 1.5) on Y with `scale` border pixels shaved"
)


def evaluate_sr(
    methods: dict[str, SRMethod],
    data: str | Path,
    scale: int,
    limit: int | None = None,
    progress: bool = True,
    skip: int = 0,
) -> dict[str, Any]:
    """Runs ``bicubic`` and every method of ``methods`` on every image of ``data``.

    Args:
        methods: name → :data:`~n3seq_image.sr.SRMethod` (e.g. from
            :func:`build_sr_methods`); a ``"bicubic"`` entry is ignored (always run).
        data: folder of HR test images.
        scale: integer scale factor >= 2.
        limit: at most this many images (sorted by name).
        progress: tqdm bar on stderr.
        skip: start after the first ``skip`` images.

    Returns:
        ``{"task": "sr", "data", "scale", "protocol", "images", "methods", "rows": [{"image",
        "method", "psnr", "ssim", "seconds"}], "mean": {method: {"psnr", "ssim", "seconds"}}}``.
    """
    from tqdm.auto import tqdm

    scale = check_scale(scale)
    all_methods = {"bicubic": bicubic, **{k: v for k, v in methods.items() if k != "bicubic"}}
    files = list_images(data)[skip:][:limit]
    check_test_image_sizes(files, scale)
    rows: list[dict[str, Any]] = []
    for path in tqdm(files, desc=f"evaluate x{scale}", disable=not progress, file=sys.stderr):
        hr, lr = prepare(load_image(path, grayscale=False), scale)
        for name, method in all_methods.items():
            t0 = time.perf_counter()
            try:
                out = np.asarray(method(lr, scale))
            except ValueError as exc:
                raise ValueError(f"{name} on {path}: {exc}") from exc
            seconds = time.perf_counter() - t0
            if out.shape != hr.shape:
                raise ValueError(
                    f"method {name} returned shape {out.shape} for {path.name}, expected "
                    f"{hr.shape}"
                )
            out = finish(out)
            rows.append({
                "image": path.name, "method": name, "psnr": sr_psnr(out, hr, scale),
                "ssim": sr_ssim(out, hr, scale), "seconds": seconds,
            })
    names = list(all_methods)
    mean = mean_by_method(rows, names)
    return {
        "task": "sr", "data": str(data), "scale": scale, "protocol": PROTOCOL,
        "images": [p.name for p in files], "methods": names, "rows": rows, "mean": mean,
    }


def check_test_image_sizes(files: list[Path], scale: int) -> None:
    """Fails before any method runs when a test image is too small to be scored at ``scale``.

    After mod-cropping and shaving ``scale`` pixels from every border, both sides must still
    hold SSIM's window (:data:`~n3seq_image.sr.SSIM_WINDOW` pixels).

    Raises:
        ValueError: naming the first such file, its size and the smallest usable side.
    """
    cropped = 2 * scale + SSIM_WINDOW
    check_min_side(
        files, -(-cropped // scale) * scale, f" for x{scale}",
        f"mod-cropped to the scale, at least {cropped} px: {scale} px are shaved from every "
        f"border, then SSIM needs {SSIM_WINDOW}×{SSIM_WINDOW}",
    )


def method_name(spec: str) -> str:
    """The result name of a method spec: the spec, or a weights file's stem."""
    return Path(spec).stem if spec.endswith(".safetensors") else spec


def build_sr_methods(
    models: list[str],
    baselines: list[str] | None = None,
    tile: int = 512,
    overlap: int = 48,
    device: str = "cpu",
    scale: int | None = None,
) -> dict[str, SRMethod]:
    """Named SR methods for :func:`evaluate_sr` from ``--model`` and ``--baselines`` specs.

    Each spec is ``"n3net"``, ``"vdsr"`` (shipped weights), ``"bicubic"`` or a weights file
    (named by its stem).

    Raises:
        ValueError: two specs with one result name, or a weights file of another task.
        FileNotFoundError: missing weights.
    """
    methods: dict[str, SRMethod] = {}
    specs: dict[str, str] = {}
    for spec in [*models, *(baselines or [])]:
        name = method_name(spec)
        if name in specs:
            if specs[name] == spec:
                continue  # named twice (e.g. in --model and --baselines): evaluate once
            raise ValueError(f"{specs[name]!r} and {spec!r} would both be named {name!r} in "
                             "the results; rename one weights file")
        specs[name] = spec
        methods[name] = get_sr_method(spec, tile=tile, overlap=overlap, device=device,
                                      scale=scale)
    return methods
