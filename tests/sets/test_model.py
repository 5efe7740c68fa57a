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
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
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
