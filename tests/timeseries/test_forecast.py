import pytest
import torch

from n3seq.timeseries import SeriesModel, forecast


@pytest.fixture
def model():
    torch.manual_seed(0)
    return SeriesModel(1, window=6, stride=3, width=8, k=3)


def test_forecast_equals_model_on_extended_series(model):
    history = torch.randn(2, 40, 1)
    out = forecast(model, history, 9)
    assert out.shape == (2, 9, 1)
    series = torch.cat([history, torch.zeros(2, 9, 1)], dim=1)
    observed = torch.arange(49)[None, :, None].expand(2, -1, -1) < 40
    torch.testing.assert_close(out, model(series, observed)[:, 40:])


def test_padded_histories_forecast_after_their_own_end(model):
    history = torch.randn(3, 40, 1)
    lengths = [40, 25, 31]
    mask = torch.arange(40)[None] < torch.tensor(lengths)[:, None]
    out = forecast(model, history, 7, mask)
    for i, length in enumerate(lengths):
        alone = forecast(model, history[i:i + 1, :length], 7)
        torch.testing.assert_close(out[i:i + 1], alone, atol=1e-5, rtol=1e-5)


def test_errors(model):
    with pytest.raises(ValueError, match="horizon must be an int >= 1"):
        forecast(model, torch.randn(1, 30, 1), 0)
    with pytest.raises(ValueError, match=r"history must have shape \(B, T, C\)"):
        forecast(model, torch.randn(30, 1), 5)
    with pytest.raises(ValueError, match="not left-aligned"):
        forecast(model, torch.randn(1, 30, 1), 5, torch.arange(30)[None] > 3)
