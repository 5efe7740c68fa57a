import pytest
import torch

from n3seq.sets import (
    CorrespondenceNet,
    count_parameters,
    fit_correspondence_net,
    inlier_loss,
    make_correspondences,
    matching_width,
    mean_average_precision,
)


@pytest.fixture
def data():
    return make_correspondences(3, min_points=30, max_points=50,
                                generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("use_n3", [True, False])
def test_shapes_and_padding(data, use_n3):
    torch.manual_seed(0)
    net = CorrespondenceNet(width=16, k=4, use_n3=use_n3)
    logits = net(data["x"], data["mask"])
    assert logits.shape == data["mask"].shape
    assert bool((logits[~data["mask"]] == 0).all())
    assert net(data["x"][:, :30]).shape == (3, 30)


@pytest.mark.parametrize("use_n3", [True, False])
@pytest.mark.parametrize("masked", [True, False])
def test_permutation_equivariance(data, use_n3, masked):
    torch.manual_seed(0)
    net = CorrespondenceNet(width=16, k=4, use_n3=use_n3).double()
    x, mask = data["x"].double(), data["mask"] if masked else None
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(1))
    out = net(x, mask)
    out_perm = net(x[:, perm], None if mask is None else mask[:, perm])
    torch.testing.assert_close(out_perm, out[:, perm])


def test_padding_values_and_position_do_not_matter(data):
    torch.manual_seed(0)
    net = CorrespondenceNet(width=16, k=4).double()
    x, mask = data["x"].double(), data["mask"]
    out = net(x, mask)
    for b in range(3):
        alone = net(x[b:b + 1, mask[b]])
        torch.testing.assert_close(alone[0], out[b, mask[b]])
    x2 = torch.where(mask[..., None], x, torch.full_like(x, 7.0))
    torch.testing.assert_close(net(x2, mask), out)


def test_gradients_reach_n3_embedding(data):
    net = CorrespondenceNet(width=16, k=4)
    inlier_loss(net(data["x"], data["mask"]), data["labels"], data["mask"]).backward()
    assert float(net.mid.block.embedding[0].weight.grad.abs().sum()) > 0


def test_inlier_loss_balances_classes():
    labels = torch.tensor([[True, False, False, False]])
    logits = torch.tensor([[0.0, 10.0, 10.0, 10.0]])
    loss = inlier_loss(logits, labels)
    expected = 0.5 * (torch.log(torch.tensor(2.0)) + torch.nn.functional.softplus(
        torch.tensor(10.0)))
    torch.testing.assert_close(loss, expected)


def test_matching_width():
    target = count_parameters(CorrespondenceNet(width=32, k=4))
    width = matching_width(target, lambda w: CorrespondenceNet(width=w, use_n3=False))
    best = abs(count_parameters(CorrespondenceNet(width=width, use_n3=False)) - target)
    for w in (width - 1, width + 1):
        assert abs(count_parameters(CorrespondenceNet(width=w, use_n3=False)) - target) >= best


def test_errors(data):
    net = CorrespondenceNet(width=16, k=4)
    with pytest.raises(ValueError, match="D=4 features per correspondence"):
        net(torch.randn(1, 20, 3))
    with pytest.raises(ValueError, match=r"x must have shape \(B, N, D\)"):
        net(torch.randn(20, 4))
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        net(data["x"], data["mask"].float())
    few = torch.zeros(1, 20, dtype=torch.bool)
    few[0, :3] = True
    with pytest.raises(ValueError, match="at least 5 real points"):
        net(torch.randn(1, 20, 4), few)
    with pytest.raises(ValueError, match="NaN/Inf"):
        net(torch.full((1, 20, 4), float("nan")))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        fit_correspondence_net(net, steps=0)


def test_very_short_run_works():
    losses = fit_correspondence_net(CorrespondenceNet(width=8, k=2), steps=10, batch=2,
                                    min_points=20, max_points=30)
    assert len(losses) == 10


def test_short_training_lowers_loss():
    torch.manual_seed(0)
    net = CorrespondenceNet(width=24, k=4)
    kwargs = {"min_points": 40, "max_points": 64}
    val = make_correspondences(16, generator=torch.Generator().manual_seed(9), **kwargs)
    with torch.no_grad():
        before = mean_average_precision(net(val["x"], val["mask"]), val["labels"], val["mask"])
    losses = fit_correspondence_net(net, steps=60, batch=8, lr=3e-3, **kwargs)
    with torch.no_grad():
        after = mean_average_precision(net(val["x"], val["mask"]), val["labels"], val["mask"])
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10])
    assert after > before + 0.1


# --- Bad and unusual inputs (issue 9) -------------------------------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from n3seq.sets import ContextNormBlock  # noqa: E402


def _net(**kwargs) -> CorrespondenceNet:
    torch.manual_seed(0)
    net = CorrespondenceNet(width=16, k=4, **kwargs)
    if net.use_n3:  # a learned temperature that depends on the input, as after training
        with torch.no_grad():
            net.mid.block.temperature_net[-1].weight.normal_(0, 0.5)
    return net


CONSTRUCTOR_CASES = [
    ({"in_dim": 0}, ValueError, "in_dim must be >= 1"),
    ({"in_dim": 4.0}, TypeError, "in_dim must be an int, got float"),
    ({"width": 2.5}, TypeError, "width must be an int, got float"),
    ({"width": 0}, ValueError, "width must be >= 1"),
    ({"depth": -1}, ValueError, "depth must be >= 0"),
    ({"depth": True}, TypeError, "depth must be an int, got bool"),
    ({"k": 0}, ValueError, "k must be >= 1"),
    ({"k": "8"}, TypeError, "k must be an int, got str"),
    ({"use_n3": "yes"}, TypeError, r"use_n3 must be a bool \(True or False\)"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), CONSTRUCTOR_CASES)
def test_constructor_exception_table(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        CorrespondenceNet(**kwargs)


def _points(b=2, n=20, value=None, where=None):
    x = torch.rand(b, n, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    if value is not None:
        x[where] = value
    return x


_SOME = torch.ones(2, 20, dtype=torch.bool)
_SOME[:, 15:] = False

FORWARD_CASES = [
    (([[0.0] * 4],), TypeError, "x must be a torch.Tensor, got list"),
    ((torch.zeros(1, 20, 4, dtype=torch.long),), TypeError, "x must be a floating-point"),
    ((torch.rand(20, 4),), ValueError, r"x must have shape \(B, N, D\)"),
    ((torch.rand(1, 20, 3),), ValueError, "D=4 features per correspondence"),
    ((_points(), _SOME.float()), TypeError, "mask must be a bool tensor"),
    ((_points(), _SOME[:, :19]), ValueError, r"mask must be broadcastable to \(B, N\)"),
    ((_points(n=4),), ValueError, "at least 5 real points .* got a set with 4"),
    ((_points(), torch.zeros(2, 20, dtype=torch.bool)), ValueError, "got a set with 0"),
    ((_points(value=float("nan"), where=(1, 3, 2)),), ValueError,
     r"x contains 1 non-finite \(NaN/Inf\) value\(s\) \(first at index \(1, 3, 2\), value nan\)"),
    ((_points(value=float("inf"), where=(0, 7, 0)), _SOME), ValueError,
     r"x contains 1 non-finite \(NaN/Inf\) value\(s\) at real points \(first at index "
     r"\(0, 7, 0\), value inf\)"),
    ((_points(value=-float("inf"), where=(1, 14, 3)), _SOME), ValueError,
     r"value -inf\)"),
]


@pytest.mark.parametrize(("args", "exc", "match"), FORWARD_CASES)
def test_forward_exception_table(args, exc, match):
    with pytest.raises(exc, match=match):
        _net()(*args)


@pytest.mark.parametrize("value", [float("inf"), -float("inf"), float("nan"), 1e30])
def test_padding_content_never_matters(data, value):
    # Before: x * mask turned inf in padding into NaN, reported as "value nan".
    net = _net()
    x, mask = data["x"], data["mask"]
    want = net(x, mask)
    dirty = torch.where(mask[..., None], x, torch.full_like(x, value))
    torch.testing.assert_close(net(dirty, mask), want, rtol=0, atol=0)


@pytest.mark.parametrize("use_n3", [True, False])
@pytest.mark.parametrize("masked", [True, False])
def test_empty_batch_gives_empty_logits(use_n3, masked):
    net = _net(use_n3=use_n3)
    x = torch.rand(0, 30, 4, requires_grad=True)
    mask = torch.ones(0, 30, dtype=torch.bool) if masked else None
    out = net(x, mask)
    assert out.shape == (0, 30)
    out.sum().backward()


@given(st.floats(-30, 30), st.booleans())
def test_finite_in_finite_out_over_extreme_scales(exponent, masked):
    # Before: x * 1e20 gave NaN (the context-norm variance overflowed).
    batch = make_correspondences(2, min_points=20, max_points=30,
                                 generator=torch.Generator().manual_seed(3))
    mask = batch["mask"] if masked else None
    out = _net()(batch["x"] * 10.0 ** exponent, mask)
    assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("scale", [1e-38, 1e20, 1e30, 3e37])
def test_finite_in_finite_out_float32_extremes(data, scale):
    out = _net()(data["x"] * scale, data["mask"])
    assert bool(torch.isfinite(out).all())


def test_overflow_inside_is_an_overflow_error(data):
    net = _net()
    with torch.no_grad():
        net.head.weight.fill_(3e38)
    with pytest.raises(OverflowError, match="logits are not finite although x is"):
        net(data["x"], data["mask"])


def test_forward_checks_the_mask_once_not_per_normalisation(data, monkeypatch):
    from n3seq.sets import model

    def checked(*args, **kwargs):
        raise AssertionError("the public context_norm re-validated an internal tensor")

    monkeypatch.setattr(model, "context_norm", checked)
    assert _net()(data["x"], data["mask"]).shape == data["mask"].shape


def test_context_norm_block_validate_flag_is_equivalent(data):
    torch.manual_seed(0)
    block = ContextNormBlock(8)
    h = torch.randn(3, 50, 8)
    torch.testing.assert_close(block(h, data["mask"], validate=False), block(h, data["mask"]))
    with pytest.raises(TypeError, match="dim must be an int"):
        ContextNormBlock(8.0)


def test_fit_argument_errors():
    net = CorrespondenceNet(width=8, k=2)
    for kwargs, exc, match in [
        ({"steps": 2.5}, TypeError, "steps must be an int, got float"),
        ({"batch": 0}, ValueError, "batch must be >= 1"),
        ({"lr": float("nan")}, ValueError, "lr must be finite"),
        ({"lr": -1.0}, ValueError, "lr must be positive"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"progress": "no"}, TypeError, "progress must be a bool"),
        ({"noise_px": -1.0}, ValueError, "noise_px must be >= 0"),
    ]:
        with pytest.raises(exc, match=match):
            fit_correspondence_net(net, **{"steps": 1, **kwargs})


def test_inlier_loss_ignores_padding_and_checks_inputs():
    labels = torch.tensor([[True, False, True]])
    mask = torch.tensor([[True, True, False]])
    logits = torch.tensor([[1.0, -1.0, float("nan")]])
    clean = inlier_loss(torch.tensor([[1.0, -1.0, 0.0]]), labels, mask)
    torch.testing.assert_close(inlier_loss(logits, labels, mask), clean)
    assert float(inlier_loss(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.bool))) == 0.0
    with pytest.raises(TypeError, match="labels must be a bool tensor"):
        inlier_loss(logits, labels.float())
    with pytest.raises(ValueError, match=r"mask must have shape \(1, 3\)"):
        inlier_loss(logits, labels, mask[:, :2])
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        inlier_loss(labels, labels)
