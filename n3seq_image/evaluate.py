"""Benchmark denoisers on a folder of clean images: per-image and mean PSNR / SSIM.

Protocol (the usual one for Gaussian denoising): every clean grayscale image ``x`` in
``[0, 1]`` gets noise ``N(0, (σ/255)²)`` drawn from a generator seeded with ``[seed, i]``
(``i`` = position of the image in the sorted folder, so a subset sees the same noise as the
full run), the noisy image is **not** clipped, each method's output **is** clipped to
``[0, 1]``, and PSNR/SSIM are computed against ``x`` with data range 1.
All methods see the same noisy images.

``noise="clipped"`` evaluates on what a user's noisy 8-bit file holds instead: the same
Gaussian noise, then clipped to ``[0, 1]`` and quantised to 256 levels
(:func:`~n3seq_image.data.quantize_8bit`).
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from n3seq._provenance import run_metadata
from n3seq_image.checkpoint import atomic_write
from n3seq_image.data import (
    add_noise,
    image_size,
    list_images,
    load_image,
    parse_sigma,
    quantize_8bit,
)
from n3seq_image.denoise import Denoiser, bm3d_available, get_denoiser
from n3seq_image.metrics import SSIM_WINDOW, psnr, ssim

#: Noise kinds of :func:`evaluate`: ``gaussian`` (not clipped) and ``clipped`` (8-bit).
NOISE_KINDS = ("gaussian", "clipped")



def mean_by_method(rows: list[dict[str, Any]], methods: list[str]) -> dict[str, dict[str, float]]:
    """The mean PSNR, SSIM and seconds of each method over its per-image ``rows``."""
    return {m: {key: float(np.mean([r[key] for r in rows if r["method"] == m]))
                for key in ("psnr", "ssim", "seconds")} for m in methods}

def make_noisy(clean: np.ndarray, sigma: float, seed: int | list[int],
               noise: str = "gaussian") -> np.ndarray:
    """The noisy image of the protocol: Gaussian ``N(0, (σ/255)²)``, or that clipped + 8-bit.

    Raises:
        ValueError: ``noise`` is not one of :data:`NOISE_KINDS`.
    """
    if noise not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {', '.join(NOISE_KINDS)}, got {noise!r}")
    noisy = add_noise(clean, sigma, seed=seed)
    return quantize_8bit(noisy) if noise == "clipped" else noisy


def evaluate(
    methods: dict[str, Denoiser],
    data: str | Path,
    sigma: float,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    skip: int = 0,
    noise: str = "gaussian",
) -> dict[str, Any]:
    """Runs every method on every image of ``data``.

    Args:
        methods: name → denoiser ``(H, W) noisy → (H, W)`` (e.g. from
            :func:`~n3seq_image.denoise.get_denoiser`).
        data: folder of clean images.
        sigma: noise level (0–255 scale).
        seed: noise seed.
        limit: evaluate at most ``limit`` images (sorted by name).
        progress: show a tqdm bar.
        skip: start after the first ``skip`` images (with ``limit``, splits a long evaluation
            into parts; image ``i`` gets the same noise whatever the split).
        noise: ``"gaussian"`` (the usual protocol: not clipped) or ``"clipped"`` (the same
            noise, clipped to ``[0, 1]`` and quantised to 8 bits, as in a noisy PNG).

    Returns:
        ``{"data", "sigma", "seed", "noise", "images": [...], "methods", "rows": [{"image",
        "method", "psnr", "ssim", "seconds"}], "mean": {method: {"psnr", "ssim",
        "seconds"}}}``; the method ``"noisy"`` is the unprocessed noisy input.

    Raises:
        ValueError: ``sigma`` not one level in ``[0, 255]``; ``seed``/``skip`` not an int
            ``>= 0``; ``limit`` not ``None`` or an int ``>= 1``; an unknown ``noise``; no
            images left after ``skip``.
        FileNotFoundError: ``data`` does not exist.
    """
    from tqdm.auto import tqdm

    low, high = parse_sigma(sigma)
    if low != high:
        raise ValueError(f"sigma must be one noise level, got the range {sigma!r}")
    for name, value, minimum in (("seed", seed, 0), ("skip", skip, 0), ("limit", limit, 1)):
        if name == "limit" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if noise not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {', '.join(NOISE_KINDS)}, got {noise!r}")
    every = list_images(data)
    files = every[skip:][:limit]
    if not files:
        raise ValueError(f"skip={skip} leaves none of the {len(every)} images of {data} to "
                         "evaluate")
    check_min_side(files, SSIM_WINDOW, "", f"SSIM's {SSIM_WINDOW}×{SSIM_WINDOW} window")
    rows: list[dict[str, Any]] = []
    for j, path in enumerate(tqdm(files, desc="evaluate", disable=not progress, file=sys.stderr)):
        i = skip + j
        clean = load_image(path)
        noisy = make_noisy(clean, sigma, [seed, i], noise)
        rows.append({
            "image": path.name, "method": "noisy", "psnr": psnr(noisy, clean),
            "ssim": ssim(np.clip(noisy, 0, 1), clean), "seconds": 0.0,
        })
        for name, denoiser in methods.items():
            t0 = time.perf_counter()
            try:
                out = np.clip(denoiser(noisy), 0.0, 1.0)
            except ValueError as exc:
                raise ValueError(f"{name} on {path}: {exc}") from exc
            seconds = time.perf_counter() - t0
            rows.append({
                "image": path.name, "method": name, "psnr": psnr(out, clean),
                "ssim": ssim(out, clean), "seconds": seconds,
            })
    names = ["noisy", *methods]
    mean = mean_by_method(rows, names)
    return {
        "data": str(data), "sigma": sigma, "seed": seed, "noise": noise,
        "images": [p.name for p in files],
        "methods": names, "rows": rows, "mean": mean,
    }


def check_min_side(files: list[Path], smallest: int, context: str, why: str) -> None:
    """Names the first test image with a side under ``smallest`` px, before any method runs.

    Raises:
        ValueError: ``test image PATH (W×H px) is too small{context}: both sides must be at
            least {smallest} px ({why})``.
    """
    for path in files:
        height, width = image_size(path)
        if min(height, width) < smallest:
            raise ValueError(f"test image {path} ({width}×{height} px) is too small{context}: "
                             f"both sides must be at least {smallest} px ({why})")


def format_table(result: dict[str, Any]) -> str:
    """Per-image PSNR/SSIM table with a final mean row (plain text, one column per method)."""
    names = result["methods"]
    by = {(r["image"], r["method"]): r for r in result["rows"]}
    width = max(8, *(len(n) for n in result["images"]))
    head = f"{'image':<{width}}" + "".join(f" | {n[:17]:>17}" for n in names)
    sub = f"{'':<{width}}" + "".join(f" | {'PSNR':>8} {'SSIM':>8}" for _ in names)
    lines = [head, sub, "-" * len(sub)]
    for image in result["images"]:
        cells = "".join(
            f" | {by[image, n]['psnr']:8.2f} {by[image, n]['ssim']:8.4f}" for n in names
        )
        lines.append(f"{image:<{width}}{cells}")
    lines.append("-" * len(sub))
    mean = "".join(
        f" | {result['mean'][n]['psnr']:8.2f} {result['mean'][n]['ssim']:8.4f}" for n in names
    )
    lines.append(f"{'mean':<{width}}{mean}")
    return "\n".join(lines)


def write_results(
    result: dict[str, Any],
    csv_path: str | Path | None,
    json_path: str | Path | None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Writes the rows as CSV and the whole result as JSON (each atomically).

    The JSON also holds ``meta`` (commit, machine, command: see
    :func:`n3seq._provenance.run_metadata`; taken now when not given — pass the one taken when
    the run started) and ``summary``, one row per method (``method``, ``psnr``, ``ssim``,
    ``seconds``, ``images``), from which ``scripts/render_docs_tables.py`` renders the docs'
    tables (``rows=summary``).
    """
    if csv_path:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["image", "method", "psnr", "ssim", "seconds"])
        writer.writeheader()
        writer.writerows(result["rows"])
        for m, values in result["mean"].items():
            writer.writerow({"image": "mean", "method": m, **values})
        atomic_write(csv_path, lambda p: p.write_text(buf.getvalue()))
    if json_path:
        summary = [
            {"method": m, **values, "images": len(result["images"])}
            for m, values in result["mean"].items()
        ]
        doc = {"meta": meta or run_metadata(), "summary": summary, **result}
        atomic_write(json_path, lambda p: p.write_text(json.dumps(doc, indent=2) + "\n"))


def build_methods(
    models: list[str],
    sigma: float,
    baselines: list[str] | None = None,
    tile: int = 512,
    overlap: int = 48,
    device: str = "cpu",
    precision: str = "auto",
) -> dict[str, Denoiser]:
    """Named denoisers for :func:`evaluate` from model specs and baseline names.

    ``models`` are specs for :func:`~n3seq_image.denoise.get_denoiser` (``"n3net"``,
    ``"dncnn"``, ``"n3net-blind"``, a weights file, ``"official:PATH"``). ``baselines`` may
    contain ``"dncnn"`` (our shipped DnCNN-17), ``"nlmeans"`` and ``"bm3d"`` (skipped with a
    warning when the package is not installed). ``precision`` is the networks' arithmetic
    (``"auto"``, ``"float32"``, ``"bfloat16"``).
    """
    methods: dict[str, Denoiser] = {}
    for spec in [*models, *(baselines or [])]:
        if spec == "bm3d" and not bm3d_available():
            print("warning: bm3d is not installed (pip install bm3d); skipping it", file=sys.stderr)
            continue
        if spec.startswith("official:"):
            name = "official-" + Path(spec.split(":", 1)[1]).stem
        else:
            name = Path(spec).stem if spec.endswith(".safetensors") else spec
        methods[name] = get_denoiser(spec, sigma, tile=tile, overlap=overlap, device=device,
                                     precision=precision)
    return methods
