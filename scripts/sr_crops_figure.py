"""Figure of super-resolution crops: bicubic, VDSR, N3Net-SR, ground truth, each with its PSNR.

The image goes through the benchmark protocol of :mod:`n3seq_image.sr` — mod-crop, the 8-bit
MATLAB Y channel, MATLAB-compatible bicubic low resolution — and every method through
:func:`n3seq_image.upscale.get_sr_method` (the methods of ``n3seq-image upscale`` and
``evaluate --task sr``); outputs are clipped and rounded to 8 bits (:func:`~n3seq_image.sr.
finish`). The panels show the Y channel, on which the labelled PSNR is measured: over the
whole image with ``scale`` pixels shaved (:func:`~n3seq_image.sr.sr_psnr`), the number
``evaluate --task sr`` gives for that image. Writes one PNG and, beside it, a JSON of the
numbers (both atomically)::

    python scripts/sr_crops_figure.py ../shared/data/set14/ppt3.png --scale 3 \\
        --method bicubic --method vdsr --method n3net --out docs/img/sr_crops.png
    python scripts/sr_crops_figure.py IMG --scale 4 --method VDSR=../runs/vdsr/model.safetensors \\
        --method N3Net-SR=../runs/n3net_sr/model.safetensors --out /tmp/crops.png

Without ``--box`` the crop is the square (a quarter of the shorter side by default,
``--size``) where bicubic's error is largest: the detail a better method can recover.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: Panel labels of the built-in method names.
LABELS = {"bicubic": "bicubic", "vdsr": "VDSR", "n3net": "N3Net-SR"}


def parse_method(text: str) -> tuple[str, str]:
    """``"SPEC"`` or ``"LABEL=SPEC"`` → ``(label, spec)``; a weights file is named by its stem."""
    label, sep, spec = text.partition("=")
    if not sep:
        spec = text
        label = LABELS.get(spec, Path(spec).stem)
    if not label or not spec:
        raise argparse.ArgumentTypeError(f"method must be SPEC or LABEL=SPEC, got {text!r}")
    return label, spec


def parse_box(text: str) -> tuple[int, int, int]:
    """``"TOP,LEFT,SIZE"`` → three integers (SIZE >= 4)."""
    try:
        top, left, size = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--box must be TOP,LEFT,SIZE, got {text!r}") from None
    if top < 0 or left < 0 or size < 4:
        raise argparse.ArgumentTypeError(f"--box needs TOP, LEFT >= 0 and SIZE >= 4, got {text!r}")
    return top, left, size


def worst_box(estimate: np.ndarray, target: np.ndarray, size: int) -> tuple[int, int, int]:
    """The ``size × size`` square (on a grid of step ``size // 2``) of largest squared error."""
    h, w = target.shape
    if size > min(h, w):
        raise ValueError(f"crop size {size} is larger than the image ({h}×{w})")
    err = (np.asarray(estimate, np.float64) - np.asarray(target, np.float64)) ** 2
    step = max(1, size // 2)
    best, box = -1.0, (0, 0, size)
    for top in range(0, h - size + 1, step):
        for left in range(0, w - size + 1, step):
            e = float(err[top : top + size, left : left + size].sum())
            if e > best:
                best, box = e, (top, left, size)
    return box


def crops_figure(
    image_path: str | Path,
    scale: int,
    methods: list[tuple[str, str]],
    box: tuple[int, int, int] | None = None,
    size: int | None = None,
    tile: int = 512,
    overlap: int = 48,
    device: str = "cpu",
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The numbers and Y crops of the figure.

    Args:
        image_path: HR test image (grey or RGB).
        scale: integer scale factor >= 2.
        methods: ``(label, spec)`` pairs; spec as for ``n3seq-image upscale --model``.
        box: ``(top, left, size)`` of the crop on the HR grid; ``None``: :func:`worst_box`
            of bicubic with side ``size``.
        size: crop side when ``box`` is not given (default: a quarter of the shorter side).
        tile: network tile side (HR pixels).
        overlap: network tile overlap.
        device: torch device of the networks.

    Returns:
        ``(doc, crops)``: ``doc`` holds ``image``, ``scale``, ``box`` and ``methods`` (one
        ``{"label", "spec", "psnr", "crop_psnr"}`` each); ``crops`` maps each label and
        ``"ground truth"`` to its ``(size, size)`` Y crop.

    Raises:
        ValueError: two methods with one label, a box outside the image.
    """
    from n3seq_image.data import load_image
    from n3seq_image.sr import bicubic, check_scale, finish, prepare, sr_psnr
    from n3seq_image.upscale import get_sr_method

    scale = check_scale(scale)
    labels = [label for label, _ in methods]
    if len(set(labels)) != len(labels) or "ground truth" in labels:
        raise ValueError(f"method labels must be distinct and not 'ground truth', got {labels}")
    hr, lr = prepare(load_image(image_path, grayscale=False), scale)
    h, w = hr.shape
    if box is None:
        side = size or max(16, min(h, w) // 4)
        box = worst_box(finish(bicubic(lr, scale)), hr, min(side, h, w))
    top, left, side = box
    if top + side > h or left + side > w:
        raise ValueError(f"box {box} (top, left, size) does not fit the {h}×{w} image "
                         f"(mod-cropped to ×{scale})")
    window = (slice(top, top + side), slice(left, left + side))
    rows, crops = [], {}
    for label, spec in methods:
        method = get_sr_method(spec, tile=tile, overlap=overlap, device=device, scale=scale)
        out = finish(method(lr, scale))
        if out.shape != hr.shape:
            raise ValueError(f"method {label} returned shape {out.shape}, expected {hr.shape}")
        mse = float(np.mean((out[window] - hr[window]) ** 2))
        rows.append({"label": label, "spec": spec, "psnr": sr_psnr(out, hr, scale),
                     "crop_psnr": float("inf") if mse == 0 else -10.0 * np.log10(mse)})
        crops[label] = out[window]
    crops["ground truth"] = hr[window]
    doc = {"image": str(image_path), "scale": scale, "hr_shape": [h, w],
           "box": {"top": top, "left": left, "size": side},
           "psnr": "Y channel of the whole image, clipped and 8-bit, scale px shaved",
           "methods": rows}
    return doc, crops


def draw(doc: dict[str, Any], crops: dict[str, np.ndarray], panel_inches: float = 2.4) -> Any:
    """The matplotlib figure: one panel per crop, labelled with the method and its PSNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    psnr = {r["label"]: r["psnr"] for r in doc["methods"]}
    fig, axes = plt.subplots(1, len(crops), figsize=(panel_inches * len(crops),
                                                      panel_inches + 0.7))
    for ax, (label, crop) in zip(np.atleast_1d(axes), crops.items()):
        ax.imshow(crop, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"{label}\n{psnr[label]:.2f} dB" if label in psnr else f"{label}\n(HR Y)",
                     fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    box = doc["box"]
    fig.suptitle(f"{Path(doc['image']).name} ×{doc['scale']}: crop at ({box['top']}, "
                 f"{box['left']}), {box['size']} px; PSNR on Y of the whole image",
                 fontsize=9)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", help="HR test image (e.g. ../shared/data/set14/ppt3.png)")
    parser.add_argument("--scale", type=int, required=True, help="scale factor (2, 3, 4)")
    parser.add_argument("--method", action="append", type=parse_method, default=None,
                        help="bicubic | vdsr | n3net | weights.safetensors, optionally "
                        "LABEL=SPEC; repeat (default: bicubic, vdsr, n3net)")
    parser.add_argument("--box", type=parse_box, default=None,
                        help="TOP,LEFT,SIZE of the crop (HR pixels); default: where bicubic "
                        "errs most")
    parser.add_argument("--size", type=int, default=None,
                        help="crop side without --box (default: a quarter of the shorter side)")
    parser.add_argument("--tile", type=int, default=512, help="network tile side (HR px)")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--out", required=True, help="PNG to write (a .json beside it)")
    args = parser.parse_args(argv)

    import matplotlib.pyplot as plt

    from n3seq._files import atomic_write, check_output_path

    out = check_output_path(args.out, inputs=(args.image,))
    if out.suffix.lower() != ".png":
        parser.error(f"--out must be a .png file, got {args.out!r}")
    methods = args.method or [parse_method(m) for m in ("bicubic", "vdsr", "n3net")]
    doc, crops = crops_figure(args.image, args.scale, methods, box=args.box, size=args.size,
                              tile=args.tile, device=args.device)
    fig = draw(doc, crops)
    atomic_write(out, lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)
    text = json.dumps(doc, indent=1) + "\n"
    atomic_write(out.with_suffix(".json"), lambda p: p.write_text(text, encoding="utf-8"))
    for row in doc["methods"]:
        print(f"{row['label']:>12}: {row['psnr']:.2f} dB (crop {row['crop_psnr']:.2f} dB)",
              file=sys.stderr)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
