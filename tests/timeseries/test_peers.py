"""Classical peers: configured on training data, applied to episodes with fixed settings."""

import numpy as np
import pytest
import torch

pytest.importorskip("statsmodels", reason="the peers need statsmodels (the timeseries extra)")

from n3seq.timeseries import (
    HoltWinters,
    SavitzkyGolayPeer,
    SeasonalLevelPeer,
    SeasonalNaivePeer,
    StateSpacePeer,
    STLPeer,
    make_episode,
    peer_predict,
    seasonal_naive,
    select_state_space,
)
from n3seq.timeseries.peers import UNINFORMATIVE_VARIANCE_RATIO


@pytest.fixture(scope="module")
def ar2():
    rng = np.random.default_rng(0)
    y = np.zeros(400)
    for t in range(2, 400):
        y[t] = 1.5 * y[t - 1] - 0.8 * y[t - 2] + 0.1 * rng.standard_normal()
    return y


def seasonal(n: int, period: int = 12, slope: float = 0.01) -> np.ndarray:
    t = np.arange(n)
    return np.sin(2 * np.pi * t / period) + slope * t


def test_select_state_space_picks_the_true_order_by_aic(ar2):
    candidates = [StateSpacePeer(f"AR({p})", order=(p, 0, 0)) for p in (0, 1, 2)]
    best = select_state_space(ar2[:300], candidates, name="chosen")
    assert best.spec["order"] == (2, 0, 0) and best.name == "chosen"
    assert best.aic == min(c.aic for c in candidates)


def test_state_space_forecast_impute_denoise(ar2):
    peer = StateSpacePeer("AR(2)", order=(2, 0, 0)).fit(ar2[:300])
    fc = peer.forecast(ar2[:300], 3)
    assert fc.shape == (3,)
    assert np.mean((fc - ar2[300:303]) ** 2) < np.mean(ar2[300:303] ** 2)
    gappy = ar2[:300].copy()
    gaps = np.zeros(300, dtype=bool)
    for start in range(20, 280, 26):
        gaps[start:start + 4] = True
    gappy[gaps] = np.nan
    filled = peer.impute(gappy)
    np.testing.assert_array_equal(filled[~gaps], ar2[:300][~gaps])
    assert np.isfinite(filled).all()
    steps = np.arange(300)
    linear = np.interp(steps[gaps], steps[~gaps], ar2[:300][~gaps])
    error = np.mean((filled[gaps] - ar2[:300][gaps]) ** 2)
    assert error < 0.7 * np.mean((linear - ar2[:300][gaps]) ** 2)
    noisy_peer = StateSpacePeer("AR(2)+noise", order=(2, 0, 0), measurement_error=True)
    rng = np.random.default_rng(1)
    noisy = ar2[:300] + 0.2 * rng.standard_normal(300)
    noisy_peer.fit(noisy)
    assert np.mean((noisy_peer.denoise(noisy) - ar2[:300]) ** 2) < 0.5 * 0.2 ** 2


def test_unobserved_components_impute_a_seasonal_gap():
    y = seasonal(240)
    peer = StateSpacePeer("UC", "uc", level="lltrend",
                          freq_seasonal=[{"period": 12, "harmonics": 1}]).fit(y[:200])
    gappy = y.copy()
    gappy[210:222] = np.nan
    assert np.abs(peer.impute(gappy)[210:222] - y[210:222]).max() < 0.05


def test_fitted_keeps_the_value_where_the_filter_has_no_prediction_yet():
    rng = np.random.default_rng(0)
    y = seasonal(240, 12, 0.02) + 0.05 * rng.standard_normal(240)
    peer = StateSpacePeer("UC", "uc", level="lltrend",
                          freq_seasonal=[{"period": 12, "harmonics": 2}]).fit(y[:200])
    gappy = y[:80].copy()
    gappy[4:30] = np.nan  # a long gap before the state is known: the filter has no idea yet
    result = peer._run(gappy, smooth=False)
    raw = np.asarray(result.forecasts[0])
    assert np.nanmax(np.abs(raw - y[:80])[30:]) > 1  # what the filter alone predicts there
    fitted = peer.fitted(gappy)
    observed = ~np.isnan(gappy)
    assert np.abs(fitted - y[:80])[observed].max() < 0.5
    variance = np.asarray(result.forecasts_error_cov[0, 0])
    vague = observed & (variance > UNINFORMATIVE_VARIANCE_RATIO * np.median(variance[observed]))
    assert vague[30:].any()
    np.testing.assert_array_equal(fitted[vague], gappy[vague])
    steady = observed & ~vague
    steady[:6] = False  # the start-up steps are the values too
    np.testing.assert_array_equal(fitted[steady], raw[steady])


def test_peers_need_fit_and_finite_data(ar2):
    with pytest.raises(RuntimeError, match="call fit"):
        StateSpacePeer("AR", order=(1, 0, 0)).forecast(ar2, 2)
    with pytest.raises(ValueError, match="kind must be"):
        StateSpacePeer("x", "arima")
    peer = StateSpacePeer("AR", order=(1, 0, 0)).fit(ar2[:100])
    bad = ar2[:50].copy()
    bad[7] = np.inf
    with pytest.raises(ValueError, match=r"history has 1 non-finite .* index 7, value inf"):
        peer.forecast(bad, 2)
    with pytest.raises(ValueError, match=r"series has 1 non-finite"):
        peer.impute(bad)
    with pytest.raises(NotImplementedError, match="does not impute"):
        HoltWinters(12).impute(ar2)


def test_holt_winters_and_stl_continue_trend_and_season():
    y = seasonal(120)
    truth = seasonal(132)[120:]
    for peer in (HoltWinters(12, "add"), STLPeer(12, order=(1, 1, 0), trend="t")):
        assert np.abs(peer.forecast(y, 12) - truth).max() < 0.05, peer.name


def test_seasonal_naive_peer_matches_the_tensor_baseline_and_imputes_from_last_season():
    y = np.arange(30.0)
    out = SeasonalNaivePeer(7).forecast(y, 10)
    ref = seasonal_naive(torch.tensor(y).view(1, 30, 1), 10, 7)[0, :, 0].numpy()
    np.testing.assert_array_equal(out, ref)
    gappy = y.copy()
    gappy[[3, 20, 21]] = np.nan
    filled = SeasonalNaivePeer(7).impute(gappy)
    assert filled[20] == 13.0 and filled[21] == 14.0  # one season earlier
    assert filled[3] == 3.0  # no earlier season: linear interpolation


def test_savitzky_golay_peer_is_tuned_on_train_and_smooths():
    y = seasonal(300, 40, 0.0)
    peer = SavitzkyGolayPeer(0.2).fit(y)
    noisy = y + 0.2 * np.random.default_rng(3).standard_normal(300)
    assert peer.window > 5 and "Savitzky" in peer.name
    assert np.mean((peer.denoise(noisy) - y) ** 2) < 0.3 * 0.2 ** 2


def test_peer_predict_fills_scored_points_of_a_padded_batch(ar2):
    peer = StateSpacePeer("AR(2)", order=(2, 0, 0)).fit(ar2[:300])
    clean = torch.as_tensor(np.stack([ar2[300:360], ar2[320:380]]), dtype=torch.float32)[..., None]
    lengths = torch.tensor([60, 45])
    gen = torch.Generator().manual_seed(0)
    for task in ("impute", "forecast", "denoise"):
        ep = make_episode(clean, lengths, task, horizon=5, gap=(4, 6), generator=gen)
        pred = peer_predict(peer, ep, task)
        assert pred.shape == clean.shape and pred.dtype == torch.float32
        kept = ep["observed"] & ep["mask"][..., None] & ~ep["score"]
        torch.testing.assert_close(pred[kept], ep["inputs"][kept])
        alone = peer_predict(peer, {k: v[1:, :45] for k, v in ep.items()}, task)
        torch.testing.assert_close(pred[1:, :45], alone)
    with pytest.raises(ValueError, match="does not support task 'impute'"):
        peer_predict(HoltWinters(12), ep, "impute")


def test_tbats_peer_forecasts_a_seasonal_series():
    pytest.importorskip("tbats", reason="TBATSPeer needs the tbats package")
    from n3seq.timeseries import TBATSPeer

    y = seasonal(96, 12, 0.0)
    peer = TBATSPeer((12,), use_arma_errors=False).fit(y[:72])
    assert np.abs(peer.forecast(y[:84], 12) - y[84:]).max() < 0.1


def test_fitted_values_are_in_sample_predictions(ar2):
    y = np.arange(10.0)
    y[6] = np.nan
    np.testing.assert_array_equal(SeasonalNaivePeer(3).fitted(y)[[0, 2, 3, 5, 9]],
                                  [0, 2, 0, 2, 9.0])
    peer = StateSpacePeer("AR(2)", order=(2, 0, 0)).fit(ar2[:300])
    one_step = peer.fitted(ar2[:300])
    assert one_step.shape == (300,)
    # one-step-ahead predictions: close to the AR recursion on the previous two values
    pred = peer.params[0] * ar2[9:299] + peer.params[1] * ar2[8:298]
    np.testing.assert_allclose(one_step[10:300], pred, atol=1e-6)
    clean = torch.as_tensor(ar2[300:340], dtype=torch.float32).view(1, 40, 1)
    gen = torch.Generator().manual_seed(0)
    for task in ("impute", "forecast"):
        ep = make_episode(clean, torch.tensor([40]), task, horizon=5, gap=(4, 6),
                          generator=gen)
        plain, fitted = peer_predict(peer, ep, task), peer_predict(peer, ep, task, fitted=True)
        torch.testing.assert_close(fitted[ep["score"]], plain[ep["score"]])
        obs = ep["observed"]
        assert not torch.allclose(fitted[obs], ep["inputs"][obs])
        torch.testing.assert_close(plain[obs], ep["inputs"][obs])


class TestSeasonalLevelPeer:
    """Seasonal naive re-anchored to the current level: exact on season + linear trend."""

    def test_forecast_of_season_plus_trend_is_exact_for_one_season(self):
        y = seasonal(60, 12, 0.05)
        peer = SeasonalLevelPeer(12, level_steps=(3,))
        np.testing.assert_allclose(peer.forecast(y[:48], 12), y[48:], atol=1e-12)
        naive = SeasonalNaivePeer(12).forecast(y[:48], 12)
        np.testing.assert_allclose(y[48:] - naive, 12 * 0.05, atol=1e-12)  # what it corrects

    def test_imputes_a_gap_from_both_neighbouring_seasons_exactly(self):
        y = seasonal(60, 12, 0.05)
        gappy = y.copy()
        gappy[25:30] = np.nan
        peer = SeasonalLevelPeer(12, level_steps=(4,))
        np.testing.assert_allclose(peer.impute(gappy), y, atol=1e-12)
        # with the next season missing too, the previous one alone is used
        gappy[37:42] = np.nan
        np.testing.assert_allclose(peer.impute(gappy), y, atol=1e-12)

    def test_averages_the_two_analogs(self):
        y = np.zeros(30)
        y[2:4], y[16:18] = 1.0, 3.0  # the analogs one season (7) before and after 9:11
        gappy = y.copy()
        gappy[9:11] = np.nan
        filled = SeasonalLevelPeer(7, level_steps=(1,)).impute(gappy)
        np.testing.assert_allclose(filled[9:11], [2.0, 2.0])

    def test_gap_without_analogs_falls_back_to_seasonal_naive(self):
        y = np.arange(10.0)
        gappy = y.copy()
        gappy[4:7] = np.nan
        np.testing.assert_array_equal(SeasonalLevelPeer(7).impute(gappy),
                                      SeasonalNaivePeer(7).impute(gappy))

    def test_fit_prefers_a_long_level_window_under_noise(self):
        rng = np.random.default_rng(0)
        y = seasonal(400, 12, 0.01) + 0.3 * rng.standard_normal(400)
        peer = SeasonalLevelPeer(12, level_steps=(1, 12)).fit(y)
        assert peer.m == 12 and "m = 12" in peer.name

    def test_fitted_is_the_in_sample_prediction(self):
        y = seasonal(60, 12, 0.05)
        fitted = SeasonalLevelPeer(12, level_steps=(3,)).fitted(y)
        np.testing.assert_array_equal(fitted[:12], y[:12])  # no earlier season
        np.testing.assert_allclose(fitted[15:], y[15:], atol=1e-12)  # exact on season + trend

    @pytest.mark.parametrize("m", [1, 5, 12])
    def test_fitted_and_forecast_follow_one_rule(self, m):
        rng = np.random.default_rng(m)
        y = seasonal(50, 12, 0.05) + 0.2 * rng.standard_normal(50)
        peer = SeasonalLevelPeer(12, level_steps=(m,))
        fitted = peer.fitted(y)
        for t in range(12, 50):  # a one-step forecast from y[:t] is the in-sample prediction
            assert fitted[t] == pytest.approx(peer.forecast(y[:t], 1)[0], abs=1e-12)
        y[[20, 30, 31, 45]] = np.nan  # missing steps: brute force over the observed pairs
        fitted = peer.fitted(y)
        for t in range(12, 50):
            pairs = [y[s] - y[s - 12] for s in range(max(t - m, 12), t)]
            pairs = [d for d in pairs if not np.isnan(d)]
            # no value one season back: the value itself (NaN where that is missing too)
            want = y[t] if np.isnan(y[t - 12]) else y[t - 12] + (np.mean(pairs) if pairs else 0.0)
            np.testing.assert_allclose(fitted[t], want, atol=1e-12)

    def test_peer_predict_on_episodes(self):
        y = seasonal(120, 12, 0.05)
        clean = torch.as_tensor(np.stack([y[:96], y[24:120]]), dtype=torch.float64)[..., None]
        lengths = torch.tensor([96, 96])
        gen = torch.Generator().manual_seed(0)
        peer = SeasonalLevelPeer(12, level_steps=(3,))
        for task in ("impute", "forecast"):
            ep = make_episode(clean, lengths, task, horizon=12, gap=(5, 8), generator=gen)
            pred = peer_predict(peer, ep, task)
            torch.testing.assert_close(pred[ep["score"]], clean[ep["score"]])

    @pytest.mark.parametrize(("kwargs", "message"), [
        ({"period": 0}, "period must be >= 1, got 0"),
        ({"period": 4, "level_steps": (6, 8)}, r"level_steps must hold a value in \[1, "
                                               r"period=4\], got \(6, 8\)"),
    ])
    def test_bad_arguments(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            SeasonalLevelPeer(**kwargs)

    def test_too_short_training_span(self):
        with pytest.raises(ValueError, match="train has 30 steps"):
            SeasonalLevelPeer(12, level_steps=(12,)).fit(seasonal(30, 12))
