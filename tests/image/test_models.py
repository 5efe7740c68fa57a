"""DnCNN and N3Net: layouts, residual connections, configs, smoke forward/backward."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from n3seq_image import DnCNN, N3Block2d, N3Net


def convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


class TestDnCNN:
    def test_dncnn17_layout(self):
        net = DnCNN(1, 1, depth=17, features=64)
        layers = convs(net)
        assert len(layers) == 17
        assert (layers[0].in_channels, layers[0].out_channels) == (1, 64)
        assert layers[0].bias is not None and layers[-1].bias is not None
        assert all(c.bias is None for c in layers[1:-1])
        assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 15
        assert net(torch.rand(2, 1, 30, 31)).shape == (2, 1, 30, 31)

    def test_without_batch_norm_hidden_convs_have_bias(self):
        net = DnCNN(1, 1, depth=4, features=8, batch_norm=False)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        assert all(c.bias is not None for c in convs(net))

    @pytest.mark.parametrize(("c_in", "c_out"), [(1, 8), (64, 8), (64, 1), (3, 3)])
    def test_residual_adds_input_to_first_channels(self, c_in, c_out):
        net = DnCNN(c_in, c_out, depth=3, features=4).eval()
        x = torch.rand(1, c_in, 9, 10)
        with torch.no_grad():
            nn.init.zeros_(net.tail.weight)
            net.tail.bias.copy_(torch.arange(c_out, dtype=torch.float32))
        out = net(x)
        m = min(c_in, c_out)
        bias = torch.arange(c_out, dtype=torch.float32)[None, :, None, None]
        torch.testing.assert_close(out[:, :m], x[:, :m] + bias[:, :m])
        torch.testing.assert_close(out[:, m:], bias[:, m:].expand_as(out[:, m:]))

    def test_without_residual(self):
        net = DnCNN(2, 2, depth=3, features=4, residual=False)
        with torch.no_grad():
            nn.init.zeros_(net.tail.weight)
            nn.init.zeros_(net.tail.bias)
        assert torch.count_nonzero(net(torch.rand(1, 2, 8, 8))) == 0

    @pytest.mark.parametrize(("kwargs", "match"), [({"depth": 1}, "depth must be >= 2"),
                                                   ({"features": 0}, "features")])
    def test_bad_arguments(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            DnCNN(**kwargs)

    def test_wrong_input_channels(self):
        with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
            DnCNN()(torch.rand(1, 3, 10, 10))

    def test_config_round_trip(self):
        net = DnCNN(3, 2, depth=5, features=8, batch_norm=False, residual=False)
        config = json.loads(json.dumps(net.config))
        assert DnCNN.from_config(config).config == net.config
        with pytest.raises(ValueError, match="unknown DnCNN config keys"):
            DnCNN.from_config({"depth": 3, "width": 2})


class TestN3Net:
    def test_paper_layout(self):
        net = N3Net()
        assert len(net.stages) == 3 and len(net.n3blocks) == 2
        io = [(s.in_channels, s.out_channels, s.depth, s.features) for s in net.stages]
        assert io == [(1, 8, 6, 64), (64, 8, 6, 64), (64, 1, 6, 64)]
        for block in net.n3blocks:
            assert isinstance(block, N3Block2d)
            assert (block.k, block.patch_size, block.stride, block.window) == (7, 10, 5, 15)
            assert block.placement == "official" and block.score_norm is not None
            emb = convs(block.embedding)
            assert [(c.in_channels, c.out_channels) for c in emb] == [(8, 64), (64, 64),
                                                                       (64, 8)]
            assert convs(block.temperature_net)[-1].out_channels == 1
            assert block.score_norm.eps == 1e-5

    def test_forward_backward_smoke(self):
        torch.manual_seed(0)
        net = N3Net(features=16, embed_features=16)
        x = torch.rand(2, 1, 80, 84)
        out = net(x)
        assert out.shape == x.shape
        out.pow(2).mean().backward()
        assert all(p.grad is not None for p in net.parameters())

    def test_dncnn_ablation_has_no_n3_blocks(self):
        net = N3Net(k=0)
        assert len(net.n3blocks) == 0
        assert [s.in_channels for s in net.stages] == [1, 8, 8]
        assert net(torch.rand(1, 1, 20, 24)).shape == (1, 1, 20, 24)

    def test_small_image_rejected(self):
        with pytest.raises(ValueError, match=r"at least 80×80 px.*\(1, 1, 64, 120\)"):
            N3Net()(torch.rand(1, 1, 64, 120))

    def test_config_json_round_trip(self):
        net = N3Net(features=32, k=5, placement="paper")
        config = json.loads(json.dumps(net.config))
        clone = N3Net.from_config(config)
        assert clone.config == net.config
        assert {k: v.shape for k, v in clone.state_dict().items()} == {
            k: v.shape for k, v in net.state_dict().items()}

    def test_from_config_rejects_unknown_keys(self):
        with pytest.raises(ValueError, match="unknown N3Net config keys"):
            N3Net.from_config({"k": 7, "colour": True})

    def test_backends_agree_in_float64(self):
        torch.manual_seed(1)
        net = N3Net(features=4, embed_features=4, depth=3, stage_channels=2).double().eval()
        x = torch.rand(1, 1, 80, 83, dtype=torch.float64)
        with torch.no_grad():
            fast = net(x)
            ref = net.set_backend("reference")(x)
        torch.testing.assert_close(fast, ref)
        assert net.config["backend"] == "reference"
