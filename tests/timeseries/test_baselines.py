import pytest
import torch

from n3seq.timeseries import (
    linear_interpolation,
    masked_mae,
    masked_mse,
    moving_average,
    savitzky_golay,
    seasonal_naive,
)


def test_linear_interpolation_exact_on_lines():
    t = torch.arange(20.0)
    x = torch.stack([2 * t + 1, -t], dim=-1)[None]
    observed = torch.ones_like(x, dtype=torch.bool)
    observed[0, 5:12] = False
    observed[0, 0:3, 1] = False  # leading gap: nearest value repeated
    out = linear_interpolation(torch.where(observed, x, 0.0), observed)
    torch.testing.assert_close(out[0, :, 0], x[0, :, 0])
    torch.testing.assert_close(out[0, 3:, 1], x[0, 3:, 1])
    torch.testing.assert_close(out[0, :3, 1], torch.full((3,), -3.0))


def test_seasonal_naive_repeats_last_season():
    season = torch.tensor([1.0, 5.0, 2.0])
    history = season.repeat(4).view(1, 12, 1)
    out = seasonal_naive(history, 7, 3)
    torch.testing.assert_close(out[0, :, 0], season.repeat(3)[:7])


def test_smoothers_keep_lines_and_reduce_noise():
    t = torch.linspace(0, 1, 200, dtype=torch.float64)
    line = (3 * t - 1).view(1, 200, 1)
    torch.testing.assert_close(savitzky_golay(line, 11, 2), line)
    torch.testing.assert_close(moving_average(line, 5)[:, 2:-2], line[:, 2:-2])
    noisy = line + 0.1 * torch.randn(line.shape, dtype=torch.float64,
                                     generator=torch.Generator().manual_seed(0))
    for smooth in (moving_average(noisy, 9), savitzky_golay(noisy, 21, 2)):
        assert masked_mse(smooth, line) < masked_mse(noisy, line) / 3


def test_metrics_only_count_scored_points():
    pred, target = torch.tensor([1.0, -2.0, 100.0]), torch.zeros(3)
    where = torch.tensor([True, True, False])
    assert float(masked_mse(pred, target, where)) == pytest.approx(2.5)
    assert float(masked_mae(pred, target, where)) == pytest.approx(1.5)


def test_errors():
    with pytest.raises(ValueError, match="no observed point"):
        linear_interpolation(torch.zeros(1, 5, 1), torch.zeros(1, 5, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="fewer than period=4"):
        seasonal_naive(torch.zeros(1, 3, 1), 2, 4)
    with pytest.raises(ValueError, match="window must be odd"):
        moving_average(torch.zeros(1, 5, 1), 4)
    with pytest.raises(ValueError, match="need 0 <= order < window <= T"):
        savitzky_golay(torch.zeros(1, 5, 1), 7, 2)
    with pytest.raises(ValueError, match="selects no point"):
        masked_mse(torch.zeros(2), torch.zeros(2), torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="same shape"):
        masked_mae(torch.zeros(2), torch.zeros(3))
