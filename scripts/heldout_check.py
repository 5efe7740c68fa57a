"""Held-out photo checks of issues 11 and 12, through the command line a user runs.

Both issues are judged on photos outside ``../shared``. This script measures our own version
on scikit-image's bundled sample photos (``skimage.data``; none of them is in ``../shared``
— ``camera`` is left out of the default list because Set12's ``01.png`` is the same
cameraman photograph), centre-cropped to ``--size`` (256) px:

``denoise``
    Each crop is made grey (PIL's ``L``, as ``n3seq-image denoise`` reads colour), gets
    Gaussian noise of σ (seed ``[seed, i]``, :func:`n3seq_image.evaluate.make_noisy`), is
    clipped and quantised to 8 bits and **written as an 8-bit PNG** — what a user's noisy
    photo is. Every model then denoises that file with ``n3seq-image denoise NOISY OUT
    --sigma σ --model M`` (``--blind M``: without ``--sigma``, the σ the command estimates),
    and the PSNR/SSIM of the written output against the clean crop are taken
    (:mod:`n3seq_image.metrics`, as ``evaluate``). NL-means and BM3D (when ``bm3d`` is
    installed) run the same way (``--baselines``).

``sr``
    Each crop is the HR image, mod-cropped to the scale. The LR image is MATLAB-compatible
    bicubic (:func:`n3seq_image.sr.downscale`, per RGB channel; ``--luma``: of the 8-bit Y
    channel only, saved grey) in float64, clipped, rounded to 8 bits and **written as an
    8-bit PNG**; every method upscales that file with ``n3seq-image upscale LR OUT --scale s
    --model M`` (``bicubic`` always), and the PSNR/SSIM are taken on the Y channel (MATLAB's
    ``rgb2ycbcr`` of the 8-bit output and HR, :func:`n3seq_image.sr.luma`) with ``s`` pixels
    shaved (:func:`~n3seq_image.sr.sr_psnr`).

Each σ or scale gives one JSON in the schema of ``n3seq-image evaluate --json`` (``meta``,
``summary``, ``rows``, ``mean.<method>.psnr``; ``data: "heldout-photos"``), and all of them
are merged by ``scripts/merge_results.py`` into ``OUT/heldout_denoise.json`` /
``OUT/heldout_sr.json`` (a docs-table source, one column per σ or scale)::

    python scripts/heldout_check.py denoise --model n3net --model dncnn --sigma 25 \
        --out results/heldout
    python scripts/heldout_check.py sr --model vdsr --model n3net --out results/heldout

The photos, noisy / LR inputs and every output are kept under ``OUT`` for inspection.
``--runner inprocess`` calls the same command-line entry point
(:func:`n3seq_image.cli.main`) inside this process instead of a new ``python -m
n3seq_image.cli`` per image (faster: torch is imported once).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: Default photos: ``skimage.data`` names, colour and grey, none of them in ``../shared``.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "coins", "moon", "brick")

#: Where :data:`PHOTOS` names differ from the ``skimage.data`` function (and its element).
_SOURCES = {"motorcycle": ("stereo_motorcycle", 0)}

DATA_NAME = "heldout-photos"


def load_photo(name: str, size: int) -> np.ndarray:
    """The centre ``size × size`` crop of a ``skimage.data`` photo, uint8 ``(H, W[, 3])``.

    Raises:
        ValueError: unknown name, not an 8-bit grey/RGB photo, or smaller than ``size``.
    """
    import skimage.data

    function, index = _SOURCES.get(name, (name, None))
    loader = getattr(skimage.data, function, None)
    if loader is None or not callable(loader):
        raise ValueError(f"unknown photo {name!r}: not a skimage.data image")
    image = loader()
    if index is not None:
        image = image[index]
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3
                                                           and image.shape[2] == 3)):
        raise ValueError(f"photo {name!r} is not an 8-bit grey or RGB image "
                         f"({image.dtype}, shape {image.shape})")
    h, w = image.shape[:2]
    if min(h, w) < size:
        raise ValueError(f"photo {name!r} ({h}×{w}) is smaller than --size {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


def to_grey(image: np.ndarray) -> np.ndarray:
    """Grey ``[0, 1]`` float32 of a uint8 photo: PIL's ``L`` (how the CLI reads colour grey)."""
    from PIL import Image

    if image.ndim == 2:
        return image.astype(np.float32) / 255.0
    return np.asarray(Image.fromarray(image).convert("L"), dtype=np.float32) / 255.0


def method_name(spec: str) -> str:
    """Result name of a model spec: the spec, a weights file's stem, ``official-<stem>``."""
    from n3seq_image.sr_evaluate import method_name as sr_name

    if spec.startswith("official:"):
        return "official-" + Path(spec.split(":", 1)[1]).stem
    return sr_name(spec)


class Runner:
    """Runs ``n3seq-image`` commands: in a new process or through the same entry point here."""

    def __init__(self, mode: str = "process", threads: int = 0) -> None:
        if mode not in ("process", "inprocess"):
            raise ValueError(f"runner must be 'process' or 'inprocess', got {mode!r}")
        self.mode, self.threads = mode, threads

    def __call__(self, *argv: str) -> None:
        """Runs ``n3seq-image ARGV --no-progress``; raises ``RuntimeError`` on failure."""
        args = [*argv, "--no-progress", *(("--threads", str(self.threads)) if self.threads
                                          else ())]
        if self.mode == "process":
            done = subprocess.run([sys.executable, "-m", "n3seq_image.cli", *args],
                                  capture_output=True, text=True)
            code, err = done.returncode, done.stderr
        else:
            from n3seq_image.cli import main as cli_main

            buf = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(buf):
                try:
                    code = cli_main(args)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
            err = buf.getvalue()
        if code != 0:
            raise RuntimeError(f"n3seq-image {' '.join(args)} failed ({code}): "
                               f"{err.strip().splitlines()[-1] if err.strip() else ''}")


def check_denoise(
    models: list[str],
    sigma: float,
    out: Path,
    photos: list[str],
    size: int = 256,
    seed: int = 0,
    baselines: list[str] | None = None,
    blind: list[str] | None = None,
    runner: Runner | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """The denoising check at one σ (see the module docstring); files go under ``out``.

    Returns:
        An ``evaluate``-schema result (``noise: "clipped"``): ``rows`` per photo and method
        (``noisy`` is the 8-bit noisy PNG), ``mean``, ``images``, ``methods``.
    """
    from n3seq_image.data import load_image, save_image
    from n3seq_image.denoise import bm3d_available
    from n3seq_image.evaluate import make_noisy, mean_by_method
    from n3seq_image.metrics import psnr, ssim

    runner = runner or Runner()
    specs: dict[str, tuple[str, bool]] = {}
    for spec in models:
        specs[method_name(spec)] = (spec, True)
    for spec in blind or []:
        specs[f"{method_name(spec)}@estimated-sigma"] = (spec, False)
    for spec in baselines or []:
        if spec == "bm3d" and not bm3d_available():
            print("warning: bm3d is not installed; skipping it", file=sys.stderr)
            continue
        specs[method_name(spec)] = (spec, True)
    folder = out / f"denoise_s{sigma:g}"
    rows: list[dict[str, Any]] = []
    for i, name in enumerate(photos):
        clean = to_grey(load_photo(name, size))
        save_image(out / "photos_grey" / f"{name}.png", clean)
        noisy_path = folder / "noisy" / f"{name}.png"
        save_image(noisy_path, make_noisy(clean, sigma, [seed, i], noise="clipped"))
        noisy = load_image(noisy_path)  # what the user's file holds
        rows.append({"image": name, "method": "noisy", "psnr": psnr(noisy, clean),
                     "ssim": ssim(noisy, clean), "seconds": 0.0})
        for method, (spec, with_sigma) in specs.items():
            target = folder / method / f"{name}.png"
            argv = ["denoise", str(noisy_path), str(target), "--model", spec]
            if with_sigma:
                argv += ["--sigma", f"{sigma:g}"]
            if precision and spec not in ("nlmeans", "bm3d"):
                argv += ["--precision", precision]
            t0 = time.perf_counter()
            runner(*argv)
            seconds = time.perf_counter() - t0
            result = load_image(target)
            rows.append({"image": name, "method": method, "psnr": psnr(result, clean),
                         "ssim": ssim(result, clean), "seconds": seconds})
    names = ["noisy", *specs]
    return {
        "data": DATA_NAME, "sigma": sigma, "seed": seed, "noise": "clipped",
        "protocol": (f"skimage.data photos, centre {size}x{size} crops, grey (PIL L); Gaussian "
                     "noise seeded [seed, i], clipped and quantised to 8 bits, saved as 8-bit "
                     "PNG; n3seq-image denoise on that file; PSNR/SSIM of the written output"),
        "size": size, "runner": runner.mode, "specs": {m: s for m, (s, _) in specs.items()},
        "images": list(photos), "methods": names, "rows": rows, "mean": mean_by_method(rows, names),
    }


def make_lr(hr: np.ndarray, scale: int, luma_only: bool) -> np.ndarray:
    """The 8-bit LR image of a mod-cropped uint8 HR photo, on the ``[0, 1]`` scale.

    MATLAB-compatible bicubic (:func:`n3seq_image.sr.downscale`) in float64, per RGB channel
    (or of the 8-bit Y channel with ``luma_only``; grey photos are their own Y), then clipped
    and rounded to the 256 levels of an 8-bit file.
    """
    from n3seq_image.color import quantize
    from n3seq_image.sr import downscale, luma

    image = hr.astype(np.float64) / 255.0
    if image.ndim == 2 or luma_only:
        lr = downscale(luma(image), scale)
    else:
        lr = np.stack([downscale(image[..., c], scale) for c in range(3)], axis=-1)
    return quantize(np.clip(lr, 0.0, 1.0))


def check_sr(
    models: list[str],
    scale: int,
    out: Path,
    photos: list[str],
    size: int = 256,
    luma_only: bool = False,
    runner: Runner | None = None,
) -> dict[str, Any]:
    """The super-resolution check at one scale (see the module docstring).

    Returns:
        An ``evaluate --task sr``-schema result: ``rows`` per photo and method (``bicubic``
        always), ``mean``, ``images``, ``methods``, ``task: "sr"``, ``scale``.
    """
    from n3seq_image.data import load_image, save_image
    from n3seq_image.evaluate import mean_by_method
    from n3seq_image.sr import check_scale, luma, mod_crop, sr_psnr, sr_ssim

    scale = check_scale(scale)
    runner = runner or Runner()
    specs = {"bicubic": "bicubic", **{method_name(s): s for s in models if s != "bicubic"}}
    folder = out / f"sr_x{scale}"
    rows: list[dict[str, Any]] = []
    for name in photos:
        hr = mod_crop(load_photo(name, size), scale)
        save_image(folder / "hr" / f"{name}.png", hr.astype(np.float64) / 255.0)
        target_y = luma(hr.astype(np.float64) / 255.0)
        lr_path = folder / "lr" / f"{name}.png"
        save_image(lr_path, make_lr(hr, scale, luma_only))
        for method, spec in specs.items():
            result_path = folder / method / f"{name}.png"
            t0 = time.perf_counter()
            runner("upscale", str(lr_path), str(result_path), "--scale", str(scale),
                   "--model", spec)
            seconds = time.perf_counter() - t0
            result_y = luma(load_image(result_path, grayscale=False))
            if result_y.shape != target_y.shape:
                raise ValueError(f"{method} wrote {result_path} of shape {result_y.shape}, "
                                 f"expected {target_y.shape}")
            rows.append({"image": name, "method": method,
                         "psnr": sr_psnr(result_y, target_y, scale),
                         "ssim": sr_ssim(result_y, target_y, scale), "seconds": seconds})
    names = list(specs)
    return {
        "task": "sr", "data": DATA_NAME, "scale": scale,
        "protocol": (f"skimage.data photos, centre {size}x{size} crops mod-cropped to the "
                     "scale; LR = MATLAB-compatible bicubic "
                     f"{'of the 8-bit Y' if luma_only else 'per RGB channel'} in float64, "
                     "clipped and rounded to 8 bits, saved as PNG; n3seq-image upscale on that "
                     "file; PSNR/SSIM on Y (rgb2ycbcr of the 8-bit output) with `scale` px "
                     "shaved"),
        "size": size, "luma_only": luma_only, "runner": runner.mode, "specs": specs,
        "images": list(photos), "methods": names, "rows": rows, "mean": mean_by_method(rows, names),
    }


def _write(result: dict[str, Any], path: Path, meta: dict[str, Any]) -> None:
    from n3seq_image.evaluate import format_table, write_results

    print(format_table(result))
    write_results(result, path.with_suffix(".csv"), path, meta=meta)
    print(f"wrote {path}", file=sys.stderr)


def _merge(paths: list[Path], target: Path) -> None:
    import json

    from merge_results import merge

    from n3seq._files import atomic_write

    text = json.dumps(merge(paths), indent=1) + "\n"
    atomic_write(target, lambda p: p.write_text(text, encoding="utf-8"))
    print(f"wrote {target}", file=sys.stderr)


def _list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="task", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, required=True, help="output folder")
    common.add_argument("--photos", type=_list, default=list(PHOTOS),
                        help=f"comma-separated skimage.data names (default: {','.join(PHOTOS)})")
    common.add_argument("--size", type=int, default=256, help="centre crop side (px)")
    common.add_argument("--runner", choices=["process", "inprocess"], default="process",
                        help="a new `python -m n3seq_image.cli` per image (default) or the "
                        "same entry point in this process")
    common.add_argument("--threads", type=int, default=0, help="--threads of each command")
    p = sub.add_parser("denoise", parents=[common], help="denoising on 8-bit noisy PNGs")
    p.add_argument("--model", action="append", default=[],
                   help="n3net | dncnn | n3net-blind | weights.safetensors | official:PATH "
                   "(repeat); run with --sigma")
    p.add_argument("--blind", action="append", default=[],
                   help="a model run without --sigma (the command estimates it; repeat)")
    p.add_argument("--baselines", type=_list, default=["nlmeans", "bm3d"],
                   help="classical methods (default nlmeans,bm3d; bm3d where installed)")
    p.add_argument("--sigma", type=float, action="append", default=None,
                   help="noise level(s) on the 0-255 scale (repeat; default 25)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default=None,
                   help="--precision of the networks (default: the command's)")
    p = sub.add_parser("sr", parents=[common], help="super-resolution from 8-bit LR PNGs")
    p.add_argument("--model", action="append", default=[],
                   help="n3net | vdsr | weights.safetensors (repeat); bicubic always runs")
    p.add_argument("--scale", type=int, action="append", default=None,
                   help="scale factor(s) (repeat; default 2, 3 and 4)")
    p.add_argument("--luma", action="store_true",
                   help="LR of the Y channel only, saved grey (default: RGB LR)")
    args = parser.parse_args(argv)
    if args.size < 16:
        parser.error(f"--size must be >= 16, got {args.size}")

    from n3seq._provenance import run_metadata

    runner = Runner(args.runner, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = []
    if args.task == "denoise":
        for sigma in args.sigma or [25.0]:
            meta, t0 = run_metadata(), time.monotonic()
            result = check_denoise(args.model, sigma, args.out, args.photos, size=args.size,
                                   seed=args.seed, baselines=args.baselines, blind=args.blind,
                                   runner=runner, precision=args.precision)
            meta["wall_s"] = round(time.monotonic() - t0, 1)
            paths.append(args.out / f"heldout_denoise_s{sigma:g}.json")
            _write(result, paths[-1], meta)
    else:
        for scale in args.scale or [2, 3, 4]:
            meta, t0 = run_metadata(), time.monotonic()
            result = check_sr(args.model, scale, args.out, args.photos, size=args.size,
                              luma_only=args.luma, runner=runner)
            meta["wall_s"] = round(time.monotonic() - t0, 1)
            paths.append(args.out / f"heldout_sr_x{scale}.json")
            _write(result, paths[-1], meta)
    _merge(paths, args.out / f"heldout_{args.task}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
