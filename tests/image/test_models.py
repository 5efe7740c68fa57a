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


# --- Bad and unusual inputs (issue 9): one table per public entry point ---------------------

def tiny_n3net(**kwargs) -> N3Net:
    torch.manual_seed(0)
    return N3Net(features=4, embed_features=4, depth=3, stage_channels=2, **kwargs).eval()


def bad_pixel(value: float, shape=(1, 1, 80, 80), where=(0, 0, 5, 7)) -> torch.Tensor:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    x[where] = value
    return x


N3NET_CONSTRUCTOR_CASES = [
    ({"features": 1e8, "depth": 100}, TypeError, "features must be an int, got float"),
    ({"features": 10**8, "depth": 100}, ValueError, "parameters .* refusing to build it"),
    ({"features": 10**5}, ValueError, "refusing to build it"),
    ({"stages": 0}, ValueError, "stages must be >= 1"),
    ({"stages": 10**6}, ValueError, "stages must be <= 64"),
    ({"stages": True}, TypeError, "stages must be an int, got bool"),
    ({"depth": 1}, ValueError, "depth must be >= 2"),
    ({"depth": 10**6, "features": 1}, ValueError, "depth must be <= 1024"),
    ({"depth": 6.0}, TypeError, "depth must be an int, got float"),
    ({"k": -1}, ValueError, "k must be >= 0"),
    ({"k": 2.0}, TypeError, "k must be an int, got float"),
    ({"k": 225}, ValueError, "k must be <= 224"),
    ({"in_channels": 0}, ValueError, "in_channels must be >= 1"),
    ({"out_channels": "1"}, TypeError, "out_channels must be an int, got str"),
    ({"stage_channels": 0}, ValueError, "stage_channels must be >= 1"),
    ({"patch_size": 0}, ValueError, "patch_size must be >= 1"),
    ({"stride": 11}, ValueError, "stride=11 > patch_size=10"),
    ({"window": 0}, ValueError, "window must be >= 1"),
    ({"window": 15.0}, TypeError, "window must be an int, got float"),
    ({"embed_features": 0}, ValueError, "embed_features must be >= 1"),
    ({"embed_depth": 0}, ValueError, "embed_depth must be >= 1"),
    ({"temperature_bias": 0.0}, ValueError, "temperature_bias must be positive"),
    ({"temperature_bias": 1e-45}, ValueError, "smallest normal float32"),
    ({"temperature_bias": float("nan")}, ValueError, "temperature_bias must be finite"),
    ({"temperature_bias": float("inf")}, ValueError, "temperature_bias must be finite"),
    ({"temperature_bias": "0.1"}, TypeError, "temperature_bias must be a real number, got str"),
    ({"score_norm": 1}, TypeError, r"score_norm must be a bool \(True or False\), got int"),
    ({"batch_norm": "no"}, TypeError, r"batch_norm must be a bool \(True or False\), got str"),
    ({"placement": "both"}, ValueError, "placement must be one of 'official', 'paper'"),
    ({"backend": "gpu"}, ValueError, "backend must be one of 'fast', 'reference'"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), N3NET_CONSTRUCTOR_CASES)
def test_n3net_constructor_exception_table(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        N3Net(**kwargs)
    with pytest.raises(exc, match=match):
        N3Net.from_config(kwargs)


@pytest.mark.parametrize(("config", "exc", "match"), [
    ([1], TypeError, "config must be a dict, got list"),
    ({"colour": True}, ValueError, "unknown N3Net config keys"),
    ({1: 2}, ValueError, r"unknown N3Net config keys \['1'\]"),
])
def test_n3net_from_config_exception_table(config, exc, match):
    with pytest.raises(exc, match=match):
        N3Net.from_config(config)


def test_hostile_config_refused_before_any_allocation(monkeypatch):
    def no_allocation(*args, **kwargs):
        raise AssertionError("a layer was built")

    monkeypatch.setattr(nn.Conv2d, "__init__", no_allocation)
    with pytest.raises(ValueError, match="refusing to build it"):
        N3Net.from_config({"features": 10**8, "depth": 100})
    with pytest.raises(ValueError, match="refusing to build it"):
        DnCNN.from_config({"features": 10**6})


def test_numpy_integers_accepted_and_stored_as_int():
    np = pytest.importorskip("numpy")
    net = N3Net(features=np.int64(4), embed_features=np.int32(4), depth=3, stage_channels=2)
    assert type(net.config["features"]) is int
    assert json.loads(json.dumps(net.config)) == net.config


N3NET_FORWARD_CASES = [
    ([[0.5]], TypeError, "x must be a torch.Tensor, got list"),
    (torch.zeros(1, 1, 80, 80, dtype=torch.long), TypeError, "floating-point tensor"),
    (torch.rand(1, 3, 80, 80), ValueError, r"x must have shape \(B, 1, H, W\)"),
    (torch.rand(1, 1, 79, 80), ValueError, r"at least 80×80 px"),
    (bad_pixel(float("nan")), ValueError,
     r"x contains 1 non-finite \(NaN/Inf\) value\(s\) at pixels \(b, c, y, x\) "
     r"\(first at index \(0, 0, 5, 7\), value nan\)"),
    (bad_pixel(float("inf")), ValueError, r"first at index \(0, 0, 5, 7\), value inf\)"),
    (bad_pixel(-float("inf"), where=(0, 0, 79, 3)), ValueError,
     r"first at index \(0, 0, 79, 3\), value -inf\)"),
    (torch.rand(1, 1, 80, 80) * 1e30, OverflowError, "overflow float32 inside N3Net"),
    (torch.full((1, 1, 80, 80), 3e38), OverflowError, "overflow float32 inside N3Net"),
]


@pytest.mark.parametrize(("x", "exc", "match"), N3NET_FORWARD_CASES)
def test_n3net_forward_exception_table(x, exc, match):
    with torch.no_grad(), pytest.raises(exc, match=match):
        tiny_n3net()(x)


def test_nan_pixel_is_reported_for_the_image_not_an_internal_tensor():
    # Before: "scores contains 50400 NaN/Inf value(s) (first at index (0,0,0), value nan)".
    x = bad_pixel(float("nan"), shape=(2, 1, 85, 90), where=(1, 0, 40, 88))
    with pytest.raises(ValueError) as info:
        tiny_n3net()(x)
    message = str(info.value)
    assert message.startswith("x contains 1 non-finite (NaN/Inf) value(s)")
    assert "(first at index (1, 0, 40, 88), value nan)" in message and "scores" not in message


def test_n3net_checks_the_image_once_and_runs_the_relaxation_unchecked(monkeypatch):
    import n3seq.relaxation
    from n3seq_image import block2d, dncnn, n3net

    def public_path(*args, **kwargs):
        raise AssertionError("the public continuous_knn validated internal scores")

    monkeypatch.setattr(n3seq.relaxation, "_validate_scores", public_path)
    calls = []
    for module in (n3net, dncnn, block2d):
        original = module.check_finite_images
        monkeypatch.setattr(module, "check_finite_images",
                            lambda *a, _f=original, **k: calls.append(a) or _f(*a, **k))
    out = tiny_n3net()(torch.rand(1, 1, 80, 84))
    assert out.shape == (1, 1, 80, 84)
    assert len(calls) == 1 and calls[0][0][0] == "x"


@pytest.mark.parametrize("train", [False, True])
def test_n3net_empty_batch_gives_empty_output(train):
    net = tiny_n3net().train(train)
    x = torch.rand(0, 1, 80, 90, requires_grad=True)
    out = net(x)
    assert out.shape == (0, 1, 80, 90)
    out.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("scale", [1e-30, 1e-10, 1e-3, 1.0, 1e3, 1e10, 1e15])
def test_n3net_finite_in_finite_out_over_scales(scale):
    x = torch.rand(1, 1, 80, 82, generator=torch.Generator().manual_seed(1)) * scale
    with torch.no_grad():
        out = tiny_n3net()(x)
    assert bool(torch.isfinite(out).all())


def test_non_finite_parameters_are_named():
    net = tiny_n3net()
    with torch.no_grad():
        net.stages[1].tail.bias.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"parameters \['stages.1.tail.bias'\] are not finite"):
        net(torch.rand(1, 1, 80, 80))


DNCNN_CONSTRUCTOR_CASES = [
    ({"in_channels": 0}, ValueError, "in_channels must be >= 1"),
    ({"in_channels": 1.0}, TypeError, "in_channels must be an int, got float"),
    ({"out_channels": True}, TypeError, "out_channels must be an int, got bool"),
    ({"depth": 1}, ValueError, "depth must be >= 2"),
    ({"depth": 5000}, ValueError, "depth must be <= 1024"),
    ({"features": 0}, ValueError, "features must be >= 1"),
    ({"features": 10**6}, ValueError, "refusing to build it"),
    ({"batch_norm": "yes"}, TypeError, r"batch_norm must be a bool \(True or False\)"),
    ({"residual": None}, TypeError, r"residual must be a bool \(True or False\)"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), DNCNN_CONSTRUCTOR_CASES)
def test_dncnn_constructor_exception_table(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DnCNN(**kwargs)
    with pytest.raises(exc, match=match):
        DnCNN.from_config(kwargs)


@pytest.mark.parametrize(("x", "exc", "match"), [
    ("image", TypeError, "x must be a torch.Tensor, got str"),
    (torch.zeros(1, 1, 9, 9, dtype=torch.uint8), TypeError, "floating-point tensor"),
    (torch.rand(1, 9, 9), ValueError, r"x must have shape \(B, 1, H, W\)"),
    (bad_pixel(float("nan"), shape=(2, 1, 9, 9), where=(1, 0, 2, 3)), ValueError,
     r"first at index \(1, 0, 2, 3\), value nan\)"),
    (torch.full((1, 1, 9, 9), 3e38), OverflowError, "overflow float32 inside DnCNN"),
])
def test_dncnn_forward_exception_table(x, exc, match):
    torch.manual_seed(0)
    with torch.no_grad(), pytest.raises(exc, match=match):
        DnCNN(depth=3, features=4).eval()(x)


def test_dncnn_empty_batch_and_from_config_errors():
    assert DnCNN(depth=3, features=4)(torch.rand(0, 1, 9, 9)).shape == (0, 1, 9, 9)
    with pytest.raises(TypeError, match="config must be a dict, got list"):
        DnCNN.from_config([3])
    with pytest.raises(ValueError, match=r"unknown DnCNN config keys \['2'\]"):
        DnCNN.from_config({2: 3})
