import numpy as np
import pytest
import torch

from n3seq.timeseries import (
    SeriesModel,
    fit_series_model,
    load_split,
    make_episode,
    masked_mse,
    random_crops,
    split_in_time,
)


@pytest.fixture
def clean():
    lengths = torch.tensor([50, 30])
    x = torch.randn(2, 50, 1, generator=torch.Generator().manual_seed(0))
    return x, lengths


def test_impute_episode_hides_gaps_inside_series(clean):
    x, lengths = clean
    ep = make_episode(x, lengths, "impute", gap=(5, 8), num_gaps=2,
                      generator=torch.Generator().manual_seed(1))
    mask = ep["mask"][..., None]
    assert bool((ep["score"] == (mask & ~ep["observed"])).all())
    assert 5 <= int(ep["score"][1].sum()) <= 16
    assert bool(ep["observed"][:, 0].all())  # a gap never starts at the first step
    assert bool((ep["inputs"][~ep["observed"]] == 0).all())


def test_forecast_episode_hides_last_steps(clean):
    x, lengths = clean
    ep = make_episode(x, lengths, "forecast", horizon=7)
    assert ep["score"][1, :, 0].nonzero().flatten().tolist() == list(range(23, 30))
    assert int(ep["score"][0].sum()) == 7


def test_denoise_episode_adds_noise_of_given_scale():
    x = torch.zeros(4, 500, 1)
    ep = make_episode(x, torch.full((4,), 500), "denoise", noise=0.5)
    assert float(ep["inputs"].std()) == pytest.approx(0.5, rel=0.1)
    assert bool(ep["score"].all())


def test_split_in_time_standardises_with_train_stats():
    series = np.arange(100.0)[:, None]
    train, test, mean, std = split_in_time(series, 0.2)
    assert len(train) == 80 and len(test) == 20
    assert abs(float(train.mean())) < 1e-6 and float(train.std()) == pytest.approx(1, rel=1e-5)
    np.testing.assert_allclose(test[:, 0] * std + mean, series[80:, 0], rtol=1e-5)


def test_statsmodels_data_has_no_nan():
    pytest.importorskip("statsmodels")
    split = load_split("co2")
    assert np.isfinite(split.train).all() and np.isfinite(split.test).all()
    assert split.period == 52 and len(split.train) + len(split.test) == 2284


def test_taylor_ships_with_pmdarima_and_has_its_two_seasons():
    pytest.importorskip("pmdarima", reason="taylor ships with pmdarima (the timeseries extra)")
    split = load_split("taylor")
    assert split.period == 336 and len(split.train) + len(split.test) == 4032
    assert np.isfinite(split.train).all() and np.isfinite(split.test).all()
    series = np.concatenate([split.train, split.test])[:, 0]
    day = np.corrcoef(series[:-48], series[48:])[0, 1]
    week = np.corrcoef(series[:-336], series[336:])[0, 1]
    assert day > 0.8 and week > day  # the daily and (stronger) weekly repetition


def test_errors(clean):
    x, lengths = clean
    with pytest.raises(ValueError, match="task must be one of"):
        make_episode(x, lengths, "classify")
    with pytest.raises(ValueError, match="more than horizon=40"):
        make_episode(x, lengths, "forecast", horizon=40)
    with pytest.raises(ValueError, match="max_gap"):
        make_episode(x, lengths, "impute", gap=(5, 30))
    with pytest.raises(ValueError, match="name must be one of"):
        load_split("airline")
    with pytest.raises(ValueError, match="min_len <= max_len"):
        random_crops(np.zeros((10, 1)), 2, 5, 20)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        fit_series_model(SeriesModel(1, width=4), np.zeros((50, 1), np.float32), "denoise",
                         steps=0)


@pytest.mark.parametrize("steps", [1, 2, 10])
def test_very_short_runs_work(steps):
    series = np.random.default_rng(0).normal(size=(100, 1)).astype(np.float32)
    losses = fit_series_model(SeriesModel(1, width=4), series, "denoise", steps=steps,
                              batch=2, min_len=30, max_len=40)
    assert len(losses) == steps and np.isfinite(losses).all()


@pytest.mark.parametrize("task", ["impute", "forecast"])
def test_short_training_lowers_loss(task):
    t = np.arange(600)
    series = (np.sin(2 * np.pi * t / 24) + 0.01 * t / 60)[:, None].astype(np.float32)
    torch.manual_seed(0)
    model = SeriesModel(1, window=6, stride=3, width=12, k=3)
    ep = make_episode(*random_crops(series, 8, 60, 60, torch.Generator().manual_seed(5)), task,
                      horizon=12, gap=(6, 12), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        before = masked_mse(model(ep["inputs"], ep["observed"], ep["mask"]), ep["target"],
                            ep["score"])
    losses = fit_series_model(model, series, task, steps=60, batch=8, min_len=40,
                              max_len=60, lr=5e-3, horizon=12, gap=(6, 12))
    with torch.no_grad():
        after = masked_mse(model(ep["inputs"], ep["observed"], ep["mask"]), ep["target"],
                           ep["score"])
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert float(after) < 0.5 * float(before)
