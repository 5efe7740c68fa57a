"""Super-resolution: colour conversion, the benchmark protocol, VDSR and N3Net-SR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from n3seq_image import DnCNN, N3Net
from n3seq_image.color import quantize, rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from n3seq_image.sr import (
    bicubic,
    check_scale,
    downscale,
    finish,
    luma,
    mod_crop,
    prepare,
    shave,
    sr_psnr,
    sr_ssim,
)
from n3seq_image.sr_models import N3NET_SR_CONFIG, sr_model
from n3seq_image.vdsr import VDSR

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


class TestColour:
    def test_matlab_values(self):
        # MATLAB: rgb2ycbcr(uint8([255 0 0])) = [81 90 240]; green [145 54 34]; blue [41 240 110].
        rgb = np.eye(3)
        ycc = np.round(rgb_to_ycbcr(rgb) * 255, 6)
        np.testing.assert_allclose(ycc, [[81.481, 90.203, 240.0], [144.553, 53.797, 34.214],
                                         [40.966, 240.0, 109.786]], atol=1e-9)
        np.testing.assert_array_equal(quantize(rgb_to_ycbcr(rgb)) * 255,
                                      [[81, 90, 240], [145, 54, 34], [41, 240, 110]])

    def test_round_trip_numpy_and_torch(self):
        rgb = np.random.default_rng(0).random((5, 7, 3))
        np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-12)
        t = torch.from_numpy(rgb).permute(2, 0, 1)[None]  # (1, 3, H, W)
        ycc = rgb_to_ycbcr(t, axis=1)
        assert ycc.shape == t.shape
        np.testing.assert_allclose(ycc[0].permute(1, 2, 0).numpy(), rgb_to_ycbcr(rgb), atol=1e-12)
        np.testing.assert_allclose(rgb_to_y(t, axis=1)[0].numpy(), rgb_to_ycbcr(rgb)[..., 0],
                                   atol=1e-12)

    def test_quantize_rounds_halves_away_from_zero(self):
        x = np.array([0.5, 1.5, 2.5, 254.5]) / 255
        np.testing.assert_array_equal(quantize(x) * 255, [1, 2, 3, 255])
        np.testing.assert_array_equal(quantize(torch.from_numpy(x)).numpy() * 255, [1, 2, 3, 255])

    def test_bad_inputs(self):
        with pytest.raises(ValueError, match="3 channels on axis -1"):
            rgb_to_ycbcr(np.zeros((4, 4)))
        with pytest.raises(TypeError, match="floating point"):
            rgb_to_y(np.zeros((4, 4, 3), dtype=np.uint8))


class TestProtocol:
    def test_mod_crop_keeps_top_left(self):
        img = np.arange(7 * 10).reshape(7, 10).astype(float)
        out = mod_crop(img, 3)
        assert out.shape == (6, 9)
        np.testing.assert_array_equal(out, img[:6, :9])
        assert mod_crop(np.zeros((8, 9, 3)), 4).shape == (8, 8, 3)
        with pytest.raises(ValueError, match="smaller than the scale"):
            mod_crop(np.zeros((2, 9)), 3)

    @pytest.mark.parametrize("bad", [1, 0, 2.0, True, "2"])
    def test_scale_must_be_an_int_from_2(self, bad):
        with pytest.raises(ValueError, match="scale must be an integer >= 2"):
            check_scale(bad)

    def test_luma_is_8bit_matlab_y_and_grey_is_its_own_y(self):
        rgb = np.random.default_rng(1).integers(0, 256, (6, 6, 3)) / 255
        y = luma(rgb)
        assert y.dtype == np.float64
        np.testing.assert_allclose(y * 255, np.round(y * 255), atol=1e-9)
        assert np.abs(y - rgb_to_y(rgb)).max() <= 0.5 / 255 + 1e-12
        grey = rgb[..., 0]
        np.testing.assert_array_equal(luma(grey), grey)

    def test_downscale_requires_mod_crop(self):
        with pytest.raises(ValueError, match="not mod-cropped"):
            downscale(np.zeros((10, 9)), 2)

    def test_prepare_shapes_and_constant_image(self):
        img = np.full((25, 31, 3), 0.5)
        hr, lr = prepare(img, 4)
        assert hr.shape == (24, 28) and lr.shape == (6, 7)
        np.testing.assert_allclose(lr, hr[0, 0], atol=1e-12)  # bicubic keeps constants
        np.testing.assert_allclose(bicubic(lr, 4), hr, atol=1e-12)

    def test_finish_clips_rounds_and_refuses_nan(self):
        np.testing.assert_array_equal(finish(np.array([-0.2, 0.5 / 255, 1.3])) * 255, [0, 1, 255])
        with pytest.raises(ValueError, match="non-finite"):
            finish(np.array([0.2, np.nan]))

    def test_psnr_shaves_the_border(self):
        target = np.zeros((20, 20))
        est = np.zeros((20, 20))
        est[:2, :] = 1.0  # errors only in the 2 px border
        assert sr_psnr(est, target, 2) == np.inf
        assert sr_psnr(est, target, 1) < 20
        est = target + 0.1
        assert sr_psnr(est, target, 3) == pytest.approx(20.0)

    def test_ssim_is_one_for_equal_images_and_shaves(self):
        rng = np.random.default_rng(2)
        target = rng.random((40, 40))
        assert sr_ssim(target, target, 4) == pytest.approx(1.0)
        noisy = np.clip(target + 0.1 * rng.standard_normal(target.shape), 0, 1)
        assert 0 < sr_ssim(noisy, target, 4) < 0.95
        border = target.copy()
        border[:3] = 0
        assert sr_ssim(border, target, 3) == pytest.approx(1.0)
        with pytest.raises(ValueError, match="11×11"):
            sr_ssim(target[:20, :20], target[:20, :20], 5)

    def test_shave_errors(self):
        assert shave(np.zeros((6, 6)), 0).shape == (6, 6)
        with pytest.raises(ValueError, match="cannot shave"):
            shave(np.zeros((6, 6)), 3)


@pytest.mark.data
@pytest.mark.skipif(not (DATA / "set5").is_dir(), reason="needs ../shared/data/set5")
class TestPublishedBicubic:
    """Our resize + Y + shaved PSNR/SSIM reproduce the published Set5 bicubic row."""

    @pytest.mark.parametrize(("scale", "psnr", "ssim"), [
        (2, 33.66, 0.9299), (3, 30.39, 0.8682), (4, 28.42, 0.8104),
    ])
    def test_set5(self, scale, psnr, ssim):
        from n3seq_image.sr_evaluate import evaluate_sr

        result = evaluate_sr({}, DATA / "set5", scale, progress=False)
        assert len(result["images"]) == 5
        mean = result["mean"]["bicubic"]
        assert abs(mean["psnr"] - psnr) <= 0.03
        assert abs(mean["ssim"] - ssim) <= 0.001


class TestModels:
    def test_vdsr_is_the_paper_layout(self):
        net = VDSR()
        convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        assert len(convs) == 20 and all(c.bias is not None for c in convs)
        assert {c.out_channels for c in convs[:-1]} == {64}
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
        assert sum(p.numel() for p in net.parameters()) == 665_921
        assert isinstance(net, DnCNN) and net.residual

    def test_vdsr_global_residual(self):
        net = VDSR(depth=3, features=4)
        torch.nn.init.zeros_(net.tail.weight)
        torch.nn.init.zeros_(net.tail.bias)
        x = torch.rand(2, 1, 12, 12)
        torch.testing.assert_close(net(x), x)

    def test_vdsr_config_round_trip(self):
        net = VDSR(depth=5, features=8)
        assert net.config == {"in_channels": 1, "out_channels": 1, "depth": 5, "features": 8}
        assert VDSR.from_config(net.config).config == net.config
        with pytest.raises(ValueError, match="unknown VDSR config keys"):
            VDSR.from_config({"batch_norm": True})

    def test_n3net_sr_layout(self):
        net = sr_model("n3net")
        assert isinstance(net, N3Net)
        assert net.config == {**N3Net().config, **N3NET_SR_CONFIG}
        assert len(net.stages) == 3 and len(net.n3blocks) == 2
        for stage in net.stages:
            assert stage.depth == 7 and stage.features == 64 and not stage.batch_norm
            assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in stage.modules())
        assert [b.k for b in net.n3blocks] == [7, 7]
        assert (net.n3blocks[0].patch_size, net.n3blocks[0].stride,
                net.n3blocks[0].window) == (10, 5, 15)
        assert net.min_size == 80
        assert sum(p.numel() for p in net.parameters()) == 815_527

    def test_n3net_sr_starts_as_its_input_with_zero_tails(self):
        from n3seq_image.train import zero_init_tails

        net = sr_model("n3net", depth=3, features=8, embed_features=8)
        assert zero_init_tails(net) == 3
        x = torch.rand(1, 1, 80, 88)
        torch.testing.assert_close(net.eval()(x), x)

    def test_default_n3net_keeps_batch_norm_stages(self):
        net = N3Net()
        assert net.config["batch_norm"] is True
        keys = set(net.state_dict())
        # conv (no bias) + BatchNorm + ReLU per hidden layer, as the authors' checkpoints.
        assert {"stages.0.body.0.weight", "stages.0.body.1.running_mean",
                "stages.2.body.10.running_var"} <= keys
        assert "stages.0.body.0.bias" not in keys
        sr = set(N3Net(batch_norm=False).state_dict())
        assert "stages.0.body.0.bias" in sr
        assert not any("running_mean" in k for k in sr if k.startswith("stages."))
        # The N³ blocks are the same either way.
        assert {k for k in keys if k.startswith("n3blocks.")} == {
            k for k in sr if k.startswith("n3blocks.")}

    def test_sr_model_unknown(self):
        with pytest.raises(ValueError, match="unknown SR model 'dncnn'"):
            sr_model("dncnn")

    def test_n3net_sr_forward_backward(self):
        net = sr_model("n3net", depth=3, features=8, embed_features=8)
        x = torch.rand(2, 1, 80, 80, requires_grad=True)
        net(x).mean().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
