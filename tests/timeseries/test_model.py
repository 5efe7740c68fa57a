import pytest
import torch

from n3seq.ablation import count_parameters
from n3seq.timeseries import SeriesModel, SeriesNet, matching_width


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 60, 2, generator=gen)
    lengths = torch.tensor([60, 37, 20])
    mask = torch.arange(60)[None] < lengths[:, None]
    observed = torch.rand(3, 60, 2, generator=gen) > 0.3
    return x, observed, mask, lengths


@pytest.mark.parametrize("radius", [None, 2])
@pytest.mark.parametrize("use_n3", [True, False])
def test_shapes_and_padding_zero(batch, radius, use_n3):
    x, observed, mask, _ = batch
    model = SeriesModel(2, window=6, stride=3, width=8, k=3, radius=radius, use_n3=use_n3)
    y = model(x, observed, mask)
    assert y.shape == x.shape
    assert bool((y[~mask] == 0).all())
    assert SeriesNet(4, 1, window=6, stride=2, width=8)(torch.randn(2, 30, 4)).shape == \
        (2, 30, 1)


@pytest.mark.parametrize("radius", [None, 2])
def test_padded_batch_equals_series_alone(batch, radius):
    x, observed, mask, lengths = batch
    torch.manual_seed(0)
    model = SeriesModel(2, window=6, stride=3, width=8, k=3, radius=radius)
    y = model(x, observed, mask)
    for i, length in enumerate(lengths.tolist()):
        alone = model(x[i:i + 1, :length], observed[i:i + 1, :length])
        torch.testing.assert_close(alone[0], y[i, :length], atol=1e-5, rtol=1e-5)


def test_padding_and_unobserved_values_are_ignored(batch):
    x, observed, mask, _ = batch
    model = SeriesModel(2, window=6, stride=3, width=8, k=3)
    y = model(x, observed, mask)
    x2 = x.clone()
    x2[~mask] = 1e3
    x2[~observed] = float("nan")
    torch.testing.assert_close(model(x2, observed, mask), y)


def test_gradients_reach_n3_embedding(batch):
    x, observed, mask, _ = batch
    model = SeriesModel(2, window=6, stride=3, width=8, k=3)
    model(x, observed, mask).square().sum().backward()
    grad = model.net.mid.block.embedding[0].weight.grad
    assert grad is not None and bool(grad.abs().sum() > 0)


def test_matching_width_gives_closest_budget():
    target = count_parameters(SeriesModel(1, width=16))
    width = matching_width(target, lambda w: SeriesModel(1, width=w, use_n3=False))
    best = abs(count_parameters(SeriesModel(1, width=width, use_n3=False)) - target)
    for w in (width - 1, width + 1):
        assert abs(count_parameters(SeriesModel(1, width=w, use_n3=False)) - target) >= best
    assert width > 16


def test_errors(batch):
    x, observed, mask, _ = batch
    model = SeriesModel(2, window=6, stride=3, width=8, k=3)
    with pytest.raises(ValueError, match=r"series must have C=2 channels"):
        model(torch.randn(1, 30, 3))
    with pytest.raises(ValueError, match=r"series must have shape \(B, T, C\)"):
        model(torch.randn(30, 2))
    with pytest.raises(TypeError, match="observed must be a bool tensor"):
        model(x, observed.float())
    with pytest.raises(ValueError, match=r"observed must have the shape of series"):
        model(x, observed[:, :10])
    with pytest.raises(ValueError, match="row 1 is not left-aligned"):
        model(x, observed, mask.flip(-1))
    with pytest.raises(ValueError, match=r"series contains .* non-finite"):
        model(torch.full_like(x, float("nan")), observed)
    with pytest.raises(ValueError, match=r"shorter than window=6"):
        model(torch.randn(1, 4, 2))
    with pytest.raises(ValueError, match=r"only 3 window tokens .* at least 4 \(k=3"):
        model(torch.randn(1, 12, 2))
    short = torch.arange(60)[None] < torch.tensor([60, 9])[:, None]
    with pytest.raises(ValueError, match=r"only 2 window tokens"):
        model(torch.randn(2, 60, 2), mask=short)
    with pytest.raises(ValueError, match="radius must be >= 1"):
        SeriesModel(1, k=4, radius=1)
    with pytest.raises(ValueError, match=r"stride must be <= window"):
        SeriesModel(1, window=2, stride=4)


def test_old_local_stage_name_warns_and_gives_the_renamed_class():
    import n3seq.timeseries as ts
    import n3seq.timeseries.model as ts_model

    for module in (ts, ts_model):
        with pytest.warns(DeprecationWarning, match="renamed TokenConvStage"):
            assert module.LocalStage is ts_model.TokenConvStage
