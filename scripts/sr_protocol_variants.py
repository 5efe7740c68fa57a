"""How much the SR protocol's rounding steps move the bicubic baseline (docs/sr.md).

The protocol (:mod:`n3seq_image.sr`) takes the Y channel as MATLAB's ``rgb2ycbcr`` of the
8-bit image (rounded to 8 bits) and rounds the output to 8 bits. This script scores the
bicubic baseline with each of the four combinations of "Y rounded or double" and "output
rounded or double" on one test set, at ×2 / ×3 / ×4, and writes a result JSON
(``n3seq._provenance`` schema) from which the docs table is rendered::

    .venv/bin/python scripts/sr_protocol_variants.py ../shared/data/set5 \
        --json docs/results/sr_protocol.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from n3seq._provenance import run_metadata, write_results_json  # noqa: E402
from n3seq_image.color import quantize, rgb_to_y  # noqa: E402
from n3seq_image.data import list_images, load_image  # noqa: E402
from n3seq_image.sr import SCALES, bicubic, downscale, mod_crop, sr_psnr  # noqa: E402


def y_channel(image: np.ndarray, rounded: bool) -> np.ndarray:
    """The Y channel of an ``[0, 1]`` image, rounded to 8 bits or not; grey is its own Y."""
    if image.ndim == 2:
        return image
    y = rgb_to_y(image)
    return quantize(y) if rounded else y


def bicubic_psnr(image: np.ndarray, scale: int, y_rounded: bool, out_rounded: bool) -> float:
    """Bicubic PSNR on Y of one image under one variant of the protocol."""
    hr = y_channel(mod_crop(image, scale), y_rounded)
    estimate = np.clip(bicubic(downscale(hr, scale), scale), 0.0, 1.0)
    return sr_psnr(quantize(estimate) if out_rounded else estimate, hr, scale)


def variants(folder: Path, scales: tuple[int, ...] = SCALES) -> list[dict[str, Any]]:
    """One row per variant: ``y``, ``output``, ``protocol`` and the mean PSNR ``x<s>``."""
    images = [np.asarray(load_image(p, grayscale=False), dtype=np.float64)
              for p in list_images(folder)]
    rows = []
    for y_rounded in (True, False):
        for out_rounded in (True, False):
            row: dict[str, Any] = {
                "y": "8-bit" if y_rounded else "double",
                "output": "8-bit" if out_rounded else "double",
                "protocol": y_rounded and out_rounded,
            }
            for s in scales:
                row[f"x{s}"] = float(np.mean(
                    [bicubic_psnr(im, s, y_rounded, out_rounded) for im in images]))
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder of RGB test images (e.g. Set5)")
    parser.add_argument("--json", type=Path, required=True, help="result file to write")
    args = parser.parse_args(argv)
    meta, t0 = run_metadata(), time.monotonic()
    rows = variants(args.data)
    meta["wall_s"] = round(time.monotonic() - t0, 1)
    write_results_json(args.json, rows, meta, data=args.data.name)
    for row in rows:
        print(row, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
