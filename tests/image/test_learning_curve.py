"""scripts/learning_curve.py: validation PSNR against samples, BM3D / bicubic as the line."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from n3seq_image import VDSR
from n3seq_image.data import save_image
from n3seq_image.sr_data import SRValidation
from n3seq_image.sr_evaluate import evaluate_sr
from n3seq_image.train import TrainConfig, zero_init_tails
from tests._scripts import load_script

from ._helpers import smooth_image, write_folder

lc = load_script("learning_curve")


def _rgb_folder(folder: Path, sizes=((40, 36), (38, 44))) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        rgb = np.stack([smooth_image(48, 3 * i + c)[:h, :w] for c in range(3)], axis=-1)
        save_image(folder / f"im{i}.png", rgb)
    return folder


def _run(run_dir: Path, config: TrainConfig, steps=(2, 4, 6), psnrs=(20.0, 21.5, 22.0),
         every_other_missing=False) -> Path:
    """A run folder as ``n3seq-image train`` leaves it: a checkpoint's state.json + log.json."""
    ckpt = run_dir / "checkpoints" / f"step_{steps[-1]:07d}"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text(json.dumps({"step": steps[-1],
                                                 "state": {"config": asdict(config)}}))
    log = [{"step": s, "lr": 1e-3, "loss": 0.01,
            "val_psnr": None if every_other_missing and k % 2 else p, "skipped": 0,
            "elapsed_s": float(s)} for k, (s, p) in enumerate(zip(steps, psnrs))]
    (run_dir / "log.json").write_text(json.dumps(log))
    return run_dir


def _sr_config(tmp_path: Path, **kw) -> TrainConfig:
    val = _rgb_folder(tmp_path / "val")
    return TrainConfig(data=str(val), out="x", task="sr", model="vdsr", batch_size=3, crop=32,
                       val_data=str(val), val_images=2, val_crop=0, scales="2,3,4", **kw)


class TestSR:
    def test_bicubic_level_is_the_benchmark_bicubic_over_scales(self, tmp_path):
        cfg = _sr_config(tmp_path)
        level = lc.bicubic_level(asdict(cfg))
        # evaluate_sr is the benchmark path (prepare: mod-crop, 8-bit Y, LR in float64).
        per_scale = [evaluate_sr({}, cfg.val_data, s, progress=False)["mean"]["bicubic"]["psnr"]
                     for s in (2, 3, 4)]
        assert level == pytest.approx(np.mean(per_scale), abs=1e-9)

    def test_bicubic_level_is_where_an_identity_network_starts(self, tmp_path, one_thread):
        # A zero-tail VDSR outputs its bicubic input: its logged val_psnr is the line.
        cfg = _sr_config(tmp_path)
        net = VDSR(depth=3, features=4)
        zero_init_tails(net)
        validation = SRValidation(cfg.val_data, images=2, crop=0, scales="2,3,4")
        assert validation(net) == pytest.approx(lc.bicubic_level(asdict(cfg)), abs=1e-9)
        with torch.no_grad():
            net.tail.weight.normal_()
        assert abs(validation(net) - lc.bicubic_level(asdict(cfg))) > 0.1

    def test_main_plots_samples_and_writes_json(self, tmp_path):
        cfg = _sr_config(tmp_path)
        a = _run(tmp_path / "vdsr", cfg, every_other_missing=True)
        b = _run(tmp_path / "n3net_sr", TrainConfig(**{**asdict(cfg), "model": "n3net",
                                                       "batch_size": 5}),
                 steps=(2, 4), psnrs=(25.0, 26.0))
        out = tmp_path / "fig" / "sr_curve.png"
        assert lc.main([f"{a}=VDSR", str(b), "--out", str(out)]) == 0
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        doc = json.loads(out.with_suffix(".json").read_text())
        assert doc["task"] == "sr" and doc["reference"] == "bicubic"
        # Rows without a validation PSNR are left out; samples = step × that run's batch.
        assert doc["curves"]["VDSR"] == {"samples": [6, 18], "val_psnr": [20.0, 22.0]}
        assert doc["curves"]["n3net_sr"] == {"samples": [10, 20], "val_psnr": [25.0, 26.0]}
        assert doc["bicubic_val_psnr"] == pytest.approx(lc.bicubic_level(asdict(cfg)))
        assert doc["scales"] == "2,3,4" and doc["batch_size"] == {"VDSR": 3, "n3net_sr": 5}
        assert not list(out.parent.glob(".*tmp"))

    def test_runs_with_other_validation_are_refused(self, tmp_path):
        cfg = _sr_config(tmp_path)
        a = _run(tmp_path / "a", cfg)
        b = _run(tmp_path / "b", TrainConfig(**{**asdict(cfg), "scales": "4"}))
        with pytest.raises(ValueError, match="scales"):
            lc.main([str(a), str(b), "--out", str(tmp_path / "c.png")])
        denoise = TrainConfig(data=cfg.val_data, out="x", val_data=cfg.val_data)
        c = _run(tmp_path / "c", denoise)
        with pytest.raises(ValueError, match="task"):
            lc.main([str(a), str(c), "--out", str(tmp_path / "c.png")])
        assert not (tmp_path / "c.png").exists()

    def test_run_without_checkpoint_is_named(self, tmp_path):
        (tmp_path / "empty").mkdir()
        with pytest.raises(FileNotFoundError, match="empty"):
            lc.main([str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")])


def test_denoise_runs_get_the_bm3d_line(tmp_path):
    pytest.importorskip("bm3d")
    import bm3d

    from n3seq_image.data import add_noise, load_image
    from n3seq_image.metrics import psnr

    val = write_folder(tmp_path / "val", count=2, size=40)
    cfg = TrainConfig(data=str(val), out="x", batch_size=8, crop=32, sigma="25",
                      val_data=str(val), val_images=2, val_crop=32)
    run = _run(tmp_path / "dncnn", cfg)
    out = tmp_path / "curve.png"
    assert lc.main([f"{run}=DnCNN", "--out", str(out)]) == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["task"] == "denoise" and doc["reference"] == "BM3D"
    assert doc["curves"]["DnCNN"]["samples"] == [16, 32, 48]
    # By hand: centre 32×32 crops, noise seeded [1234, i] as train.validate's.
    values = []
    for i, path in enumerate(sorted(val.glob("*.png"))):
        clean = load_image(path)[4:36, 4:36]
        noisy = add_noise(clean, 25.0, seed=[1234, i])
        values.append(psnr(np.clip(bm3d.bm3d(noisy, 25 / 255), 0, 1), clean))
    assert doc["bm3d_val_psnr"] == pytest.approx(np.mean(values), abs=1e-4)


def test_old_name_runs_the_same_script(tmp_path):
    shim = load_script("denoise_learning_curve")
    assert shim.main is lc.main
