"""SR training pairs (multi-scale, stateless, crop = crop of the whole-image degradation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from n3seq_image.data import save_image
from n3seq_image.sr import bicubic, downscale, luma
from n3seq_image.sr_data import (
    SRCropDataset,
    SRValidation,
    degrade,
    parse_scales,
    split_folders,
)
from tests.image._helpers import smooth_image


def _images(n=3, size=(100, 110), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random(size) for _ in range(n)]


class TestScales:
    @pytest.mark.parametrize(("text", "expected"), [
        ("2,3,4", (2, 3, 4)), ("4, 2", (2, 4)), (3, (3,)), ([4, 2, 2], (2, 4)), ("2+3", (2, 3)),
    ])
    def test_parse(self, text, expected):
        assert parse_scales(text) == expected

    @pytest.mark.parametrize("bad", ["", "2,x", "1,2", [], [2.5]])
    def test_bad(self, bad):
        with pytest.raises(ValueError, match="scale"):
            parse_scales(bad)

    def test_split_folders(self, tmp_path):
        assert split_folders("a, b") == [tmp_path.__class__("a"), tmp_path.__class__("b")]
        with pytest.raises(ValueError, match="no training folder"):
            split_folders(" , ")


class TestSRCropDataset:
    def test_pairs_are_crops_of_the_whole_image_degradation(self):
        images = _images(2, (96, 108))
        ds = SRCropDataset(images, crop=40, scales="2,3", seed=5)
        np.testing.assert_allclose(degrade(images[0], 3), bicubic(downscale(images[0], 3), 3))
        for g in range(8):
            # The documented draw order: scale, image, top, left, rotation, flip.
            rng = np.random.default_rng([5, g])
            scale = (2, 3)[int(rng.integers(2))]
            i = int(rng.integers(2))
            top, left = int(rng.integers(96 - 40 + 1)), int(rng.integers(108 - 40 + 1))
            k, flip = int(rng.integers(4)), bool(rng.integers(2))

            def aug(a, k=k, flip=flip):
                a = np.rot90(a, k=k)
                return a[:, ::-1] if flip else a

            window = (slice(top, top + 40), slice(left, left + 40))
            inp, tgt, got_scale = ds.sample(g)
            assert got_scale == scale
            np.testing.assert_allclose(tgt, aug(images[i][window]), atol=1e-6)
            np.testing.assert_allclose(inp, aug(degrade(images[i], scale)[window]), atol=1e-6)

    def test_stateless_and_seeded(self):
        images = _images()
        a = SRCropDataset(images, crop=48, seed=3)
        b = SRCropDataset(images, crop=48, seed=3)
        c = SRCropDataset(images, crop=48, seed=4)
        xa, ya = a.batch([5, 6, 7])
        xb, yb = b.batch([5, 6, 7])
        torch.testing.assert_close(xa, xb)
        torch.testing.assert_close(ya, yb)
        assert not torch.equal(ya, c.batch([5, 6, 7])[1])
        # A sample does not depend on which batch it is drawn in.
        torch.testing.assert_close(a.batch([6])[1][0], ya[1])

    def test_scales_are_mixed(self):
        ds = SRCropDataset(_images(1), crop=32, scales="2,3,4")
        seen = {ds.sample(g)[2] for g in range(60)}
        assert seen == {2, 3, 4}
        # Larger scales lose more: the input is further from the target.
        err = {s: [] for s in (2, 3, 4)}
        for g in range(120):
            inp, tgt, s = ds.sample(g)
            err[s].append(np.mean((inp - tgt) ** 2))
        assert np.mean(err[2]) < np.mean(err[3]) < np.mean(err[4])

    def test_batch_shapes_and_dtype(self):
        x, y = SRCropDataset(_images(), crop=36).batch(range(4))
        assert x.shape == y.shape == (4, 1, 36, 36)
        assert x.dtype == y.dtype == torch.float32

    def test_small_images_left_out_with_a_warning(self, capsys):
        images = [*_images(2), np.zeros((50, 200))]
        ds = SRCropDataset(images, crop=60)
        assert len(ds) == 2 and ds.skipped == ["#2"]
        assert "1 of 3 training images are smaller than crop=60" in capsys.readouterr().err
        with pytest.raises(ValueError, match="larger than every image"):
            SRCropDataset([np.zeros((50, 50))], crop=60)

    def test_mod_crop_to_all_scales(self):
        ds = SRCropDataset([np.random.default_rng(0).random((101, 113))], crop=40)
        assert ds.targets[0].shape == (96, 108)  # multiples of lcm(2, 3, 4) = 12

    def test_folders_and_colour(self, tmp_path):
        a, b = tmp_path / "a", tmp_path / "b"
        save_image(a / "grey.png", smooth_image(64, 0))
        rgb = np.stack([smooth_image(64, i) for i in range(3)], -1)
        save_image(b / "rgb.png", rgb)
        ds = SRCropDataset(f"{a},{b}", crop=48, scales="2")
        assert ds.names == ["a/grey.png", "b/rgb.png"]
        rgb8 = np.round(rgb * 255) / 255
        np.testing.assert_allclose(ds.targets[1], luma(rgb8), atol=1e-6)  # 64 = 0 mod 2

    def test_bad_crop(self):
        with pytest.raises(ValueError, match="crop must be an int >= 1"):
            SRCropDataset(_images(1), crop=0)


class _Identity(nn.Module):
    def forward(self, x):
        return x


class TestSRValidation:
    def test_identity_model_scores_bicubic(self, tmp_path):
        from n3seq_image.sr_evaluate import evaluate_sr

        for i in range(2):
            save_image(tmp_path / f"v{i}.png",
                       np.stack([smooth_image(72, 3 * i + c) for c in range(3)], -1))
        val = SRValidation(tmp_path, images=2, crop=0, scales="2,4")
        score = val(_Identity())
        reference = np.mean([evaluate_sr({}, tmp_path, s, progress=False)["mean"]["bicubic"]["psnr"]
                             for s in (2, 4)])
        assert score == pytest.approx(reference, abs=1e-4)

    def test_crop_and_training_mode_restored(self, tmp_path):
        save_image(tmp_path / "v.png", smooth_image(90, 1))
        val = SRValidation(tmp_path, images=1, crop=48, scales="3")
        assert [item[2].shape for item in val.items] == [(48, 48)]
        net = nn.Sequential(nn.Conv2d(1, 1, 1))
        net.train()
        assert np.isfinite(val(net))
        assert net.training
