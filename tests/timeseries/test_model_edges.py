"""Edge inputs of the time-series model: extreme scales, non-finite values, empty batches."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from n3seq.timeseries import SeriesModel, SeriesNet, forecast


def _model(use_n3: bool = True) -> SeriesModel:
    torch.manual_seed(0)
    return SeriesModel(1, window=6, stride=3, width=8, k=3, use_n3=use_n3)


@pytest.fixture(scope="module")
def series():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 48, 1, generator=gen)


@settings(max_examples=25, deadline=None)
@given(exponent=st.integers(-30, 30), use_n3=st.booleans())
def test_finite_in_finite_out_and_scale_equivariant(series, exponent, use_n3):
    model = _model(use_n3)
    scale = 10.0 ** exponent
    with torch.no_grad():
        reference = model(series)
        y = model(series * scale)
    assert bool(torch.isfinite(y).all())
    torch.testing.assert_close(y / scale, reference, atol=1e-5, rtol=1e-4)


def test_scale_equivariant_forecast_with_gaps(series):
    model = _model()
    observed = torch.ones_like(series, dtype=torch.bool)
    observed[:, 10:20] = False
    with torch.no_grad():
        for scale in (1e-35, 1e35):
            torch.testing.assert_close(model(series * scale, observed) / scale,
                                       model(series, observed), atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(forecast(model, series * scale, 6) / scale,
                                       forecast(model, series, 6), atol=1e-5, rtol=1e-4)


def test_output_overflow_is_a_clear_error():
    model = _model()
    with torch.no_grad():
        model.net.head.bias.fill_(10.0)  # the restored values are ~10x the input's
    x = torch.tensor([3e38, -3e38] * 12).view(1, 24, 1)
    with pytest.raises(ValueError, match=r"overflows torch.float32 .* 3e\+38"):
        model(x)


def test_nan_and_inf_in_padding_and_unobserved_points_do_not_matter(series):
    model = _model()
    mask = torch.arange(48)[None] < torch.tensor([48, 30])[:, None]
    observed = torch.ones_like(series, dtype=torch.bool)
    observed[0, 5:9] = False
    with torch.no_grad():
        y = model(series, observed, mask)
        net_y = model.net(torch.cat([series, series], -1), mask)
        fc = forecast(model, series, 5, mask)
    dirty = series.clone()
    dirty[1, 30:] = float("nan")
    dirty[1, 40:] = float("inf")
    dirty[0, 5:9] = float("-inf")
    with torch.no_grad():
        torch.testing.assert_close(model(dirty, observed, mask), y)
        net_in = torch.cat([series, series], -1).where(mask[..., None], float("nan"))
        torch.testing.assert_close(model.net(net_in, mask), net_y)
        torch.testing.assert_close(forecast(model, series.where(mask[..., None], dirty),
                                            5, mask), fc)
    assert bool(torch.isfinite(y).all()) and bool((y[~mask] == 0).all())


@pytest.mark.parametrize("value, shown", [(float("inf"), "inf"), (float("-inf"), "-inf"),
                                          (float("nan"), "nan")])
def test_non_finite_real_values_name_the_argument_and_first_index(series, value, shown):
    model = _model()
    bad = series.clone()
    bad[1, 7, 0] = value
    bad[1, 9, 0] = value
    with pytest.raises(ValueError, match=rf"^series contains 2 non-finite value\(s\) at "
                                         rf"observed real steps \(first at index \(1, 7, 0\), "
                                         rf"value {shown}\)"):
        model(bad)
    with pytest.raises(ValueError, match=rf"^history contains 2 .* \(1, 7, 0\), value {shown}"):
        forecast(model, bad, 4)
    with pytest.raises(ValueError, match=rf"^x contains 2 .* \(1, 7, 0\), value {shown}"):
        model.net(torch.cat([bad, torch.ones_like(bad)], -1))


@pytest.mark.parametrize("use_n3", [True, False])
def test_empty_batch_gives_empty_output(use_n3):
    model = _model(use_n3)
    x = torch.randn(0, 30, 1)
    y = model(x)
    assert y.shape == (0, 30, 1) and y.dtype == x.dtype
    assert model(x, torch.ones_like(x, dtype=torch.bool),
                 torch.ones(0, 30, dtype=torch.bool)).shape == (0, 30, 1)
    assert forecast(model, x, 4).shape == (0, 4, 1)
    assert SeriesNet(2, 1, window=6, stride=3, width=8, k=3, use_n3=use_n3)(
        torch.randn(0, 30, 2)).shape == (0, 30, 1)
    y.sum().backward()  # an empty batch still trains (zero gradients), as torch ops do
