"""Learning curves of denoising runs: validation PSNR against training samples, BM3D as a line.

Reads the ``log.json`` of each run folder (written by ``n3seq-image train``), evaluates BM3D
on the same validation images with the same noise (:func:`n3seq_image.train.validate`'s
seeds), and writes a PNG plus a JSON of the plotted numbers::

    python scripts/denoise_learning_curve.py RUN_DIR[=LABEL] ... --out docs/img/denoise_curve.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The training configuration and the log rows of a run folder."""
    from n3seq_image.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir}")
    config = json.loads((ckpt / "state.json").read_text())["state"]["config"]
    log = json.loads((run_dir / "log.json").read_text())
    return config, log


def bm3d_level(config: dict[str, Any]) -> float:
    """BM3D's mean PSNR on the run's validation images and noise (σ = the run's mean σ)."""
    import bm3d
    import torch

    from n3seq_image.data import add_noise, parse_sigma
    from n3seq_image.metrics import batch_psnr
    from n3seq_image.train import TrainConfig, load_validation

    cfg = TrainConfig(**{k: v for k, v in config.items() if k in TrainConfig.__dataclass_fields__})
    clean = load_validation(cfg)
    sigma = float(np.mean(parse_sigma(cfg.sigma)))
    psnrs = []
    for i, img in enumerate(clean):
        noisy = add_noise(img[0].numpy(), sigma, seed=[1234, i])
        out = np.clip(bm3d.bm3d(noisy, sigma / 255.0), 0, 1).astype(np.float32)
        psnrs.append(batch_psnr(torch.from_numpy(out)[None, None], img[None]).item())
    return float(np.mean(psnrs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders, optionally RUN=LABEL")
    parser.add_argument("--out", required=True, help="PNG to write (a .json beside it)")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from n3seq_image.checkpoint import atomic_write, atomic_write_json

    curves: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for spec in args.runs:
        path, _, label = spec.partition("=")
        config, log = read_run(Path(path))
        rows = [r for r in log if r.get("val_psnr") is not None]
        curves[label or Path(path).name] = {
            "samples": [r["step"] * config["batch_size"] for r in rows],
            "val_psnr": [r["val_psnr"] for r in rows],
        }
    print("evaluating BM3D on the validation images ...", file=sys.stderr)
    level = bm3d_level(config)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, c in curves.items():
        ax.plot(c["samples"], c["val_psnr"], label=label)
    ax.axhline(level, color="k", ls="--", lw=1, label=f"BM3D ({level:.2f} dB)")
    ax.set_xlabel("training samples (80×80 crops)")
    ax.set_ylabel(f"validation PSNR (dB), σ = {config['sigma']}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = Path(args.out)
    atomic_write(out, lambda p: fig.savefig(p, format="png", dpi=120))
    atomic_write_json(out.with_suffix(".json"), {
        "curves": curves, "bm3d_val_psnr": level,
        "val_data": config.get("val_data"), "val_images": config.get("val_images"),
        "val_crop": config.get("val_crop"),
    })
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
