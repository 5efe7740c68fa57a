"""n3seq_image.denormals: negligible weights zeroed at load, subnormals flushed in a block."""

from __future__ import annotations

import argparse

import pytest
import torch

import n3seq_image.denormals as den
from n3seq_image import DnCNN
from n3seq_image.checkpoint import load_model, save_weights
from n3seq_image.cli import run

SUBNORMAL = 1e-40  # below float32's smallest normal, 1.18e-38


def flushes() -> bool:
    """Whether the calling thread treats subnormals as zero now."""
    return torch.tensor([SUBNORMAL]).mul(1.0).item() == 0.0


@pytest.fixture
def restore_flush(monkeypatch):
    monkeypatch.setattr(den, "_flush_always", False)
    monkeypatch.setattr(den, "_flush_depth", 0)
    yield
    torch.set_flush_denormal(False)


def tiny_net() -> DnCNN:
    torch.manual_seed(0)
    return DnCNN(depth=3, features=4).eval()


class TestZeroNegligibleWeights:
    def test_zeroes_only_negligible_entries(self):
        net = tiny_net()
        weight = net.head.weight
        with torch.no_grad():
            scale = weight.abs().max().item()
            weight.view(-1)[:3] = torch.tensor([SUBNORMAL, scale * 1e-15, scale * 1e-12])
        before = weight.detach().clone()
        changed = den.zero_negligible_weights(net)
        assert changed >= 2
        assert weight.view(-1)[0] == 0 and weight.view(-1)[1] == 0
        assert weight.view(-1)[2] == before.view(-1)[2]  # 1e-12 × max is kept
        assert torch.equal(weight.view(-1)[3:], before.view(-1)[3:])

    def test_output_unchanged(self):
        net = tiny_net()
        with torch.no_grad():
            for p in net.parameters():
                p.view(-1)[::5] *= 1e-20
        x = torch.rand(1, 1, 24, 24)
        with torch.no_grad():
            reference = net(x)
            assert den.zero_negligible_weights(net) > 0
            assert torch.allclose(net(x), reference, rtol=1e-6, atol=1e-7)

    def test_all_zero_and_integer_tensors(self):
        net = tiny_net()
        with torch.no_grad():
            net.head.weight.zero_()
        assert den.zero_negligible_weights(net) == 0  # nothing non-zero became zero
        assert net.head.weight.abs().sum() == 0

    def test_load_model_applies_it(self, tmp_path):
        net = tiny_net()
        with torch.no_grad():
            net.head.weight.view(-1)[0] = SUBNORMAL
        save_weights(tmp_path / "w.safetensors", net)
        loaded = load_model(tmp_path / "w.safetensors")
        assert loaded.head.weight.view(-1)[0] == 0
        assert torch.equal(loaded.head.weight.view(-1)[1:], net.head.weight.view(-1)[1:])


class TestFlush:
    def test_block_flushes_and_restores(self, restore_flush):
        assert not flushes()
        with den.denormals_flushed():
            assert flushes()
            with den.denormals_flushed():
                assert flushes()
            assert flushes()  # the outer block is still open
        assert not flushes()

    def test_restored_after_an_error(self, restore_flush):
        with pytest.raises(RuntimeError), den.denormals_flushed():
            raise RuntimeError("boom")
        assert not flushes()

    def test_process_wide_setting_survives_a_block(self, restore_flush):
        assert den.flush_denormals()
        with den.denormals_flushed():
            pass
        assert flushes()

    def test_cli_command_runs_flushed(self, restore_flush, tmp_path):
        seen = []

        def command(args: argparse.Namespace) -> int:
            seen.append(flushes())
            return 0

        args = argparse.Namespace(func=command, command="denoise", save_noisy=None,
                                  output=str(tmp_path / "out.png"))
        assert run(args) == 0
        assert seen == [True] and not flushes()

    def test_autocast_flushes(self, restore_flush):
        from n3seq_image.precision import autocast

        with autocast("float32", "cpu"):
            assert flushes()
        assert not flushes()
