"""scripts/sr_crops_figure.py: SR crops with each method's protocol Y-PSNR."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from n3seq_image import VDSR
from n3seq_image.checkpoint import save_weights
from n3seq_image.data import save_image
from n3seq_image.sr_evaluate import build_sr_methods, evaluate_sr
from n3seq_image.train import zero_init_tails
from tests._scripts import load_script

from ._helpers import smooth_image

fig_mod = load_script("sr_crops_figure")


@pytest.fixture
def setup(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rgb = np.stack([smooth_image(64, c) for c in range(3)], axis=-1)[:62, :63]
    rgb = np.clip(rgb + 0.05 * rng.standard_normal(rgb.shape), 0, 1)  # some detail
    save_image(folder / "photo.png", rgb)
    torch.manual_seed(0)
    random = tmp_path / "random.safetensors"
    save_weights(random, VDSR(depth=3, features=4), extra={"task": "sr", "scales": [2, 3, 4]})
    ident = VDSR(depth=3, features=4)
    zero_init_tails(ident)
    identity = tmp_path / "identity.safetensors"
    save_weights(identity, ident, extra={"task": "sr", "scales": [2, 3, 4]})
    return folder, random, identity


def test_psnrs_are_the_benchmark_numbers_and_crops_the_outputs(tmp_path, setup, one_thread):
    folder, random, identity = setup
    out = tmp_path / "figs" / "crops.png"
    argv = [str(folder / "photo.png"), "--scale", "3", "--method", "bicubic",
            "--method", f"Random={random}", "--method", str(identity), "--box", "3,6,30",
            "--out", str(out)]
    assert fig_mod.main(argv) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(out.with_suffix(".json").read_text())
    assert [r["label"] for r in doc["methods"]] == ["bicubic", "Random", "identity"]
    assert doc["box"] == {"top": 3, "left": 6, "size": 30} and doc["hr_shape"] == [60, 63]
    # The benchmark's own entry point on a folder of this one image.
    methods = build_sr_methods([str(random), str(identity)])
    bench = evaluate_sr(methods, folder, 3, progress=False)["mean"]
    got = {r["label"]: r["psnr"] for r in doc["methods"]}
    assert got["bicubic"] == pytest.approx(bench["bicubic"]["psnr"], abs=1e-9)
    assert got["Random"] == pytest.approx(bench["random"]["psnr"], abs=1e-9)
    assert got["identity"] == pytest.approx(bench["bicubic"]["psnr"], abs=1e-9)
    assert abs(got["Random"] - got["bicubic"]) > 0.1
    assert not list(out.parent.glob(".*tmp"))


def test_crops_and_default_box(setup):
    folder, random, _ = setup
    doc, crops = fig_mod.crops_figure(folder / "photo.png", 2,
                                      [("bicubic", "bicubic"), ("R", str(random))], size=16)
    assert list(crops) == ["bicubic", "R", "ground truth"]
    box = doc["box"]
    assert box["size"] == 16 and all(c.shape == (16, 16) for c in crops.values())
    # The ground-truth panel is the HR Y crop; crop PSNRs are those of the panels.
    from n3seq_image.data import load_image
    from n3seq_image.sr import luma

    hr = luma(load_image(folder / "photo.png", grayscale=False)[:62, :62])
    window = (slice(box["top"], box["top"] + 16), slice(box["left"], box["left"] + 16))
    np.testing.assert_array_equal(crops["ground truth"], hr[window])
    for row in doc["methods"]:
        mse = np.mean((crops[row["label"]] - hr[window]) ** 2)
        assert row["crop_psnr"] == pytest.approx(10 * np.log10(1 / mse))
    # The default box is where bicubic errs most among the half-overlapping squares.
    whole = fig_mod.crops_figure(folder / "photo.png", 2, [("bicubic", "bicubic")],
                                 box=(0, 0, 62))[1]
    err = (whole["bicubic"] - whole["ground truth"]) ** 2
    sums = {(t, left): err[t : t + 16, left : left + 16].sum()
            for t in range(0, 62 - 16 + 1, 8) for left in range(0, 62 - 16 + 1, 8)}
    assert sums[box["top"], box["left"]] == pytest.approx(max(sums.values()))


def test_errors_leave_no_file(tmp_path, setup):
    folder, _, _ = setup
    out = tmp_path / "x.png"
    with pytest.raises(FileNotFoundError):
        fig_mod.main([str(folder / "photo.png"), "--scale", "2", "--method",
                      str(tmp_path / "missing.safetensors"), "--out", str(out)])
    with pytest.raises(ValueError, match="does not fit"):
        fig_mod.main([str(folder / "photo.png"), "--scale", "2", "--method", "bicubic",
                      "--box", "50,0,20", "--out", str(out)])
    with pytest.raises(SystemExit):
        fig_mod.main([str(folder / "photo.png"), "--scale", "2", "--box", "1,2",
                      "--out", str(out)])
    assert not out.exists() and not out.with_suffix(".json").exists()
