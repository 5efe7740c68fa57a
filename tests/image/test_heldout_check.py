"""scripts/heldout_check.py: held-out photos through the CLI, checked by hand.

The expected numbers are computed here independently: the noise, the 8-bit quantisation,
MATLAB's rgb2ycbcr Y, the bicubic LR (the ``resize-right`` package, not our imresize), the
shave and the PSNR are written out with NumPy and compared with the files the script wrote
and the numbers it reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from n3seq_image import VDSR
from n3seq_image.checkpoint import save_weights
from n3seq_image.train import zero_init_tails
from tests._scripts import load_script

from ._helpers import tiny_weights

hc = load_script("heldout_check")


def _centre(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    return image[(h - size) // 2 : (h - size) // 2 + size, (w - size) // 2 : (w - size) // 2 + size]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(1.0 / mse))


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def _y(u8: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr Y of a uint8 image, rounded as MATLAB does (grey: itself)."""
    if u8.ndim == 2:
        return u8 / 255.0
    r, g, b = (u8[..., c] / 255.0 for c in range(3))
    return np.floor(16 + 65.481 * r + 128.553 * g + 24.966 * b + 0.5) / 255.0


def _assert_8bit_equal(written: np.ndarray, expected: np.ndarray) -> None:
    """Equal 8-bit levels; a value within float error of a rounding tie may land either way."""
    diff = written.astype(int) - expected.astype(int)
    assert np.abs(diff).max() <= 1 and np.count_nonzero(diff) <= max(1, diff.size // 1000)


def test_denoise_noisy_pngs_and_psnrs(tmp_path, one_thread):
    import skimage.data

    weights = tiny_weights(tmp_path / "tiny.safetensors")
    out = tmp_path / "held"
    assert hc.main(["denoise", "--model", str(weights), "--baselines", "nlmeans",
                    "--sigma", "25", "--sigma", "50", "--photos", "astronaut,coins",
                    "--size", "48", "--runner", "inprocess", "--out", str(out)]) == 0
    for sigma in (25, 50):
        doc = json.loads((out / f"heldout_denoise_s{sigma}.json").read_text())
        assert doc["noise"] == "clipped" and doc["sigma"] == sigma and "commit" in doc["meta"]
        assert doc["methods"] == ["noisy", "tiny", "nlmeans"]
        assert {r["method"] for r in doc["summary"]} == {"noisy", "tiny", "nlmeans"}
        by = {(r["image"], r["method"]): r["psnr"] for r in doc["rows"]}
        for i, (name, photo) in enumerate((("astronaut", skimage.data.astronaut()),
                                           ("coins", skimage.data.coins()))):
            crop = _centre(photo, 48)
            grey = np.asarray(Image.fromarray(crop).convert("L")) if crop.ndim == 3 else crop
            clean = grey.astype(np.float32) / np.float32(255)
            noise = (np.random.default_rng([0, i]).standard_normal((48, 48)).astype(np.float32)
                     * np.float32(sigma / 255.0))
            expected = np.round(np.clip(clean.astype(np.float64) + noise, 0, 1) * 255)
            noisy_png = _png(out / f"denoise_s{sigma}" / "noisy" / f"{name}.png")
            assert noisy_png.dtype == np.uint8 and noisy_png.ndim == 2
            _assert_8bit_equal(noisy_png, expected)
            assert by[name, "noisy"] == pytest.approx(_psnr(noisy_png / 255.0, clean), abs=1e-6)
            for method in ("tiny", "nlmeans"):
                result = _png(out / f"denoise_s{sigma}" / method / f"{name}.png") / 255.0
                assert by[name, method] == pytest.approx(_psnr(result, clean), abs=1e-6)
        assert doc["mean"]["tiny"]["psnr"] == pytest.approx(
            np.mean([by["astronaut", "tiny"], by["coins", "tiny"]]))
    merged = json.loads((out / "heldout_denoise.json").read_text())
    rows = {r["method"]: r for r in merged["rows"]}
    assert set(rows) == {"noisy", "tiny", "nlmeans"}
    assert rows["nlmeans"]["set"] == "heldout-photos" and rows["nlmeans"]["noise"] == "clipped"
    assert rows["tiny"]["psnr_s50"] == pytest.approx(doc["mean"]["tiny"]["psnr"])


def test_sr_lr_pngs_and_shaved_y_psnr(tmp_path, one_thread):
    resize_right = pytest.importorskip("resize_right")
    import skimage.data

    net = VDSR(depth=3, features=4)
    zero_init_tails(net)  # outputs its bicubic input
    identity = tmp_path / "ident.safetensors"
    save_weights(identity, net, extra={"task": "sr", "scales": [2, 3, 4]})
    torch.manual_seed(1)
    random = tmp_path / "rand.safetensors"
    save_weights(random, VDSR(depth=3, features=4), extra={"task": "sr", "scales": [2, 3, 4]})
    out = tmp_path / "held"
    assert hc.main(["sr", "--model", str(identity), "--model", str(random), "--scale", "2",
                    "--scale", "3", "--photos", "astronaut,coins", "--size", "50",
                    "--runner", "inprocess", "--out", str(out)]) == 0
    for scale in (2, 3):
        doc = json.loads((out / f"heldout_sr_x{scale}.json").read_text())
        assert doc["task"] == "sr" and doc["scale"] == scale
        assert doc["methods"] == ["bicubic", "ident", "rand"]
        by = {(r["image"], r["method"]): r["psnr"] for r in doc["rows"]}
        keep = 50 - 50 % scale  # mod-crop
        for name, photo in (("astronaut", skimage.data.astronaut()),
                            ("coins", skimage.data.coins())):
            hr = _centre(photo, 50)[:keep, :keep]
            planes = [hr] if hr.ndim == 2 else [hr[..., c] for c in range(3)]
            lr = [resize_right.resize(p / 255.0, scale_factors=1 / scale, pad_mode="symmetric")
                  for p in planes]
            expected = np.floor(np.clip(np.stack(lr, -1).squeeze(-1) if hr.ndim == 2
                                        else np.stack(lr, -1), 0, 1) * 255 + 0.5)
            lr_png = _png(out / f"sr_x{scale}" / "lr" / f"{name}.png")
            assert lr_png.dtype == np.uint8 and lr_png.shape == expected.shape
            _assert_8bit_equal(lr_png, expected)
            target = _y(hr)
            for method in ("bicubic", "ident", "rand"):
                result = _y(_png(out / f"sr_x{scale}" / method / f"{name}.png"))
                assert result.shape == target.shape
                s = scale
                shaved = _psnr(result[s:-s, s:-s], target[s:-s, s:-s])
                assert by[name, method] == pytest.approx(shaved, abs=1e-6)  # float32 reads
                # The shave matters at this precision: the whole image scores otherwise.
                assert abs(_psnr(result, target) - shaved) > 1e-3
            # The network runs on Y: an identity network is bicubic, a random one is not.
            assert by[name, "ident"] == pytest.approx(by[name, "bicubic"], abs=0.05)
            assert abs(by[name, "rand"] - by[name, "bicubic"]) > 0.1
    merged = json.loads((out / "heldout_sr.json").read_text())
    rows = {r["method"]: r for r in merged["rows"]}
    assert rows["bicubic"]["set"] == "heldout-photos"
    assert rows["bicubic"]["psnr_x3"] == pytest.approx(doc["mean"]["bicubic"]["psnr"])


def test_sr_luma_lr_through_a_new_process(tmp_path):
    import skimage.data

    out = tmp_path / "held"
    assert hc.main(["sr", "--scale", "2", "--photos", "astronaut", "--size", "40", "--luma",
                    "--runner", "process", "--out", str(out)]) == 0
    lr_png = _png(out / "sr_x2" / "lr" / "astronaut.png")
    assert lr_png.ndim == 2  # the Y channel, saved grey
    target = _y(_centre(skimage.data.astronaut(), 40))
    result = _png(out / "sr_x2" / "bicubic" / "astronaut.png")
    assert result.ndim == 2
    doc = json.loads((out / "heldout_sr_x2.json").read_text())
    assert doc["luma_only"] and doc["runner"] == "process"
    assert doc["mean"]["bicubic"]["psnr"] == pytest.approx(
        _psnr(result[2:-2, 2:-2] / 255.0, target[2:-2, 2:-2]), abs=1e-6)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown photo"):
        hc.load_photo("no_such_photo", 32)
    with pytest.raises(ValueError, match="smaller than --size"):
        hc.load_photo("coins", 400)
    with pytest.raises(RuntimeError, match="missing.safetensors"):
        hc.main(["sr", "--model", str(tmp_path / "missing.safetensors"), "--scale", "2",
                 "--photos", "coins", "--size", "32", "--runner", "inprocess",
                 "--out", str(tmp_path / "o")])
