"""Learning curves: validation PSNR against training samples, with a classical level as a line.

Reads the ``log.json`` and the stored configuration (newest checkpoint's ``state.json``) of
each run folder written by ``n3seq-image train``, and plots the logged ``val_psnr`` against
``step × batch_size``. The horizontal line is the classical method on the *same* validation
images, computed here:

- **denoising** runs (``task: "denoise"``): BM3D with the validation noise of
  :func:`n3seq_image.train.validate` (seeds ``[1234, i]``, σ = the run's mean σ);
- **super-resolution** runs (``task: "sr"``): bicubic interpolation, scored by
  :class:`n3seq_image.sr_data.SRValidation` exactly as the runs' ``val_psnr`` is (protocol
  Y-PSNR with ``scale`` pixels shaved, the mean over images and scales).

All runs of one plot must share the task and the validation settings. Writes a PNG and,
beside it, a JSON of the plotted numbers (both atomically)::

    python scripts/learning_curve.py ../runs/n3net_s25=N3Net ../runs/dncnn_s25=DnCNN-17 \\
        --out docs/img/denoise_curve.png
    python scripts/learning_curve.py ../runs/n3net_sr=N3Net-SR ../runs/vdsr=VDSR \\
        --out docs/img/sr_curve.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: Configuration keys that must agree between the runs of one plot (the validation).
SHARED_KEYS = {
    "denoise": ("task", "val_data", "val_images", "val_crop", "sigma"),
    "sr": ("task", "val_data", "val_images", "val_crop", "scales"),
}


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The training configuration and the log rows of a run folder.

    Raises:
        FileNotFoundError: no checkpoint (the configuration is stored there) or no log.
    """
    from n3seq_image.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir} (its state.json holds the run "
                                "configuration)")
    config = json.loads((ckpt / "state.json").read_text())["state"]["config"]
    config.setdefault("task", "denoise")  # runs made before --task existed
    log_path = run_dir / "log.json"
    if not log_path.is_file():
        raise FileNotFoundError(f"no log.json in {run_dir}")
    return config, json.loads(log_path.read_text())


def curve(config: dict[str, Any], log: list[dict[str, Any]]) -> dict[str, list[float]]:
    """``{"samples", "val_psnr"}`` of the logged rows with a validation PSNR."""
    rows = [r for r in log if r.get("val_psnr") is not None]
    return {
        "samples": [int(r["step"]) * int(config["batch_size"]) for r in rows],
        "val_psnr": [float(r["val_psnr"]) for r in rows],
    }


def check_same_validation(configs: dict[str, dict[str, Any]]) -> str:
    """The common task of the runs; raises ``ValueError`` when their validation differs."""
    labels = list(configs)
    first = configs[labels[0]]
    task = first["task"]
    if task not in SHARED_KEYS:
        raise ValueError(f"run {labels[0]}: unknown task {task!r}")
    for label in labels[1:]:
        other = configs[label]
        diff = {k: (first.get(k), other.get(k)) for k in SHARED_KEYS[task]
                if first.get(k) != other.get(k)}
        if diff:
            raise ValueError(f"runs {labels[0]} and {label} differ in {diff}; one plot needs "
                             "the same task and validation")
    return task


def _train_config(config: dict[str, Any]) -> Any:
    from n3seq_image.train import TrainConfig

    return TrainConfig(**{k: v for k, v in config.items() if k in TrainConfig.__dataclass_fields__})


def bm3d_level(config: dict[str, Any]) -> float:
    """BM3D's mean PSNR on the run's validation images and noise (σ = the run's mean σ)."""
    import bm3d
    import torch

    from n3seq_image.data import add_noise, parse_sigma
    from n3seq_image.metrics import batch_psnr
    from n3seq_image.train import load_validation

    cfg = _train_config(config)
    clean = load_validation(cfg)
    if clean is None:
        raise ValueError("the run has no validation data (val_data)")
    sigma = float(np.mean(parse_sigma(cfg.sigma)))
    psnrs = []
    for i, img in enumerate(clean):
        noisy = add_noise(img[0].numpy(), sigma, seed=[1234, i])
        out = np.clip(bm3d.bm3d(noisy, sigma / 255.0), 0, 1).astype(np.float32)
        psnrs.append(batch_psnr(torch.from_numpy(out)[None, None], img[None]).item())
    return float(np.mean(psnrs))


def bicubic_level(config: dict[str, Any]) -> float:
    """Bicubic's validation PSNR of an SR run: :class:`~n3seq_image.sr_data.SRValidation`
    of the identity on the bicubic-upsampled inputs (the runs' own validation, no network)."""
    from torch import nn

    from n3seq_image.sr_data import SRValidation

    cfg = _train_config(config)
    if not cfg.val_data:
        raise ValueError("the run has no validation data (val_data)")
    validation = SRValidation(cfg.val_data, images=cfg.val_images, crop=cfg.val_crop,
                              scales=cfg.scales)
    return validation(nn.Identity())


def _axes_text(task: str, config: dict[str, Any]) -> tuple[str, str, str]:
    """(name of the reference method, x-axis text, y-axis text) of a plot."""
    crop = config.get("crop")
    if task == "sr":
        from n3seq_image.sr_data import parse_scales

        scales = "/".join(f"×{s}" for s in parse_scales(config["scales"]))
        val = Path(str(config.get("val_data"))).name
        return ("bicubic", f"training samples ({crop}×{crop} crops, {scales} mixed)",
                f"validation Y-PSNR (dB), {val}, mean over {scales}")
    return ("BM3D", f"training samples ({crop}×{crop} crops)",
            f"validation PSNR (dB), σ = {config['sigma']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders, optionally RUN=LABEL")
    parser.add_argument("--out", required=True, help="PNG to write (a .json beside it)")
    parser.add_argument("--title", default=None, help="plot title")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from n3seq._files import atomic_write
    from n3seq_image.checkpoint import atomic_write_json

    curves: dict[str, Any] = {}
    configs: dict[str, dict[str, Any]] = {}
    for spec in args.runs:
        path, _, label = spec.partition("=")
        label = label or Path(path).name
        if label in curves:
            raise SystemExit(f"learning_curve: error: two runs labelled {label!r}")
        config, log = read_run(Path(path))
        configs[label] = config
        curves[label] = curve(config, log)
    task = check_same_validation(configs)
    config = next(iter(configs.values()))
    reference, xlabel, ylabel = _axes_text(task, config)
    print(f"evaluating {reference} on the validation images ...", file=sys.stderr)
    level = bicubic_level(config) if task == "sr" else bm3d_level(config)

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, c in curves.items():
        ax.plot(c["samples"], c["val_psnr"], label=label)
    ax.axhline(level, color="k", ls="--", lw=1, label=f"{reference} ({level:.2f} dB)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if args.title:
        ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = Path(args.out)
    atomic_write(out, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
    atomic_write_json(out.with_suffix(".json"), {
        "task": task, "curves": curves, "reference": reference,
        f"{reference.lower()}_val_psnr": level,
        **{k: config.get(k) for k in SHARED_KEYS[task] if k != "task"},
        "batch_size": {label: c["batch_size"] for label, c in configs.items()},
        "crop": {label: c.get("crop") for label, c in configs.items()},
    })
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
