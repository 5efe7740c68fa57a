"""Batch-norm recalibration ("precise BN"): the function and its use in training."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from n3seq_image import DnCNN
from n3seq_image.batchnorm_stats import has_batchnorm, recalibrate_batchnorm
from n3seq_image.checkpoint import load_model
from n3seq_image.data import RandomCropDataset
from n3seq_image.train import BN_SAMPLES_START, TrainConfig, bn_sample_indices, train
from tests.image.test_train import tiny_config


def batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


class TestRecalibrateBatchnorm:
    def test_statistics_are_the_mean_over_batches(self):
        torch.manual_seed(0)
        bn = nn.BatchNorm2d(3)
        model = nn.Sequential(bn).eval()
        batches = [torch.randn(4, 3, 5, 6) * (i + 1) + i for i in range(5)]
        recalibrate_batchnorm(model, batches)
        means = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches])
        variances = torch.stack([b.transpose(0, 1).reshape(3, -1).var(dim=1) for b in batches])
        torch.testing.assert_close(bn.running_mean, means.mean(0))
        torch.testing.assert_close(bn.running_var, variances.mean(0))
        assert int(bn.num_batches_tracked) == 5

    def test_weights_mode_and_momentum_are_kept(self):
        torch.manual_seed(0)
        net = DnCNN(depth=3, features=8).eval()
        weights = {k: v.clone() for k, v in net.named_parameters()}
        before = [bn.running_var.clone() for bn in batchnorms(net)]
        recalibrate_batchnorm(net, [torch.rand(2, 1, 12, 12) for _ in range(3)])
        assert not net.training
        assert all(bn.momentum == 0.1 for bn in batchnorms(net))
        assert all(torch.equal(weights[k], v) for k, v in net.named_parameters())
        assert all(not torch.equal(a, bn.running_var) for a, bn in zip(before, batchnorms(net)))

    def test_context_wraps_the_forward_passes(self):
        entered = []

        class Probe:
            def __enter__(self):
                entered.append(True)

            def __exit__(self, *exc):
                return False

        net = DnCNN(depth=3, features=8)
        recalibrate_batchnorm(net, [torch.rand(2, 1, 8, 8)], context=Probe)
        assert entered == [True]

    def test_model_without_batchnorm_is_not_run(self):
        class NoBN(nn.Module):
            def forward(self, x):
                raise AssertionError("forward must not run")

        net = DnCNN(depth=3, features=8, batch_norm=False)
        assert not has_batchnorm(net) and has_batchnorm(DnCNN(depth=3, features=8))
        recalibrate_batchnorm(NoBN(), [torch.rand(1, 1, 4, 4)])


class TestTrainingRecalibration:
    def test_weights_unchanged_and_buffers_recomputed(self, tmp_path):
        plain = tiny_config(tmp_path, out=str(tmp_path / "plain"), bn_batches=0,
                            precision="float32")
        precise = replace(plain, out=str(tmp_path / "precise"), bn_batches=3)
        train(plain)
        train(precise)
        a = load_model(tmp_path / "plain" / "model.safetensors")
        b = load_model(tmp_path / "precise" / "model.safetensors")
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        # Independently: the running statistics of the plain run's weights recomputed from the
        # recalibration samples must be the precise run's buffers.
        data = RandomCropDataset(plain.data, crop=plain.crop, sigma=plain.sigma,
                                 seed=plain.seed, quantized_share=plain.quantized_share)
        recalibrate_batchnorm(
            a, [data.batch(bn_sample_indices(i, plain.batch_size))[0] for i in range(3)]
        )
        for x, y in zip(batchnorms(a), batchnorms(b)):
            torch.testing.assert_close(x.running_mean, y.running_mean)
            torch.testing.assert_close(x.running_var, y.running_var)
            assert int(y.num_batches_tracked) == 3

    def test_samples_are_outside_the_training_stream(self):
        assert bn_sample_indices(0, 8) == range(BN_SAMPLES_START, BN_SAMPLES_START + 8)
        assert bn_sample_indices(2, 8).start == BN_SAMPLES_START + 16

    @pytest.mark.parametrize("value", [-1, 1.5, True])
    def test_bad_value_named(self, tmp_path, value):
        cfg = tiny_config(tmp_path, bn_batches=value)
        with pytest.raises(ValueError, match="bn_batches"):
            cfg.validate()


def test_default_is_on():
    assert TrainConfig(data="d", out="o").bn_batches == 32
