"""Hybrid SeriesModel (classical base + learned correction), quantiles, episode-pool training."""

import pytest
import torch

from n3seq.timeseries import (
    SeriesModel,
    fit_on_episodes,
    forecast,
    make_episode,
    masked_mse,
    pinball_loss,
)


def _hybrid(**kwargs) -> SeriesModel:
    torch.manual_seed(0)
    return SeriesModel(1, use_base=True, window=6, stride=3, width=8, k=3, **kwargs)


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 40, 1, generator=gen)
    base = torch.randn(3, 40, 1, generator=gen)
    mask = torch.arange(40)[None] < torch.tensor([40, 31, 25])[:, None]
    observed = torch.ones_like(x, dtype=torch.bool)
    observed[:, 10:18] = False
    return x, base, observed, mask


def test_untrained_hybrid_returns_its_base(data):
    x, base, observed, mask = data
    model = _hybrid()
    y = model(x, observed, mask, base)
    torch.testing.assert_close(y[mask], base[mask], atol=1e-5, rtol=1e-5)
    assert bool((y[~mask] == 0).all())


def test_untrained_hybrid_forecast_returns_base_forecast(data):
    x, base, _, _ = data
    model = _hybrid(quantiles=(0.1, 0.5, 0.9))
    out, quant = forecast(model, x, 7, base=base[:, :7], return_quantiles=True)
    torch.testing.assert_close(out, base[:, :7], atol=1e-5, rtol=1e-5)
    assert quant.shape == (3, 7, 1, 3)


def test_hybrid_output_depends_on_base_after_training_step(data):
    x, base, observed, mask = data
    model = _hybrid()
    with torch.no_grad():
        model.net.head.weight.normal_()
    y1 = model(x, observed, mask, base)
    y2 = model(x, observed, mask, base + 1.0)
    assert not torch.allclose(y1, y2)


def test_base_errors(data):
    x, base, observed, mask = data
    with pytest.raises(ValueError, match="use_base=True: pass the classical prediction base"):
        _hybrid()(x, observed, mask)
    with pytest.raises(ValueError, match="base was given but this model has use_base=False"):
        SeriesModel(1, window=6, stride=3, width=8, k=3)(x, observed, mask, base)
    with pytest.raises(ValueError, match=r"base must have the shape of series"):
        _hybrid()(x, observed, mask, base[:, :20])
    bad = base.clone()
    bad[2, 30:] = float("nan")  # padding of series 2 (length 25): ignored
    torch.testing.assert_close(_hybrid()(x, observed, mask, bad),
                               _hybrid()(x, observed, mask, base))
    bad[1, 3, 0] = float("inf")
    with pytest.raises(ValueError, match=r"^base contains 1 non-finite .* \(1, 3, 0\), value inf"):
        _hybrid()(x, observed, mask, bad)
    with pytest.raises(ValueError, match=r"base must be the classical forecast \(B, H, C\)"):
        forecast(_hybrid(), x, 7, base=base)


def test_quantiles_are_sorted_and_padded_with_zero(data):
    x, _, observed, mask = data
    torch.manual_seed(0)
    model = SeriesModel(1, quantiles=(0.05, 0.5, 0.95), window=6, stride=3, width=8, k=3)
    with torch.no_grad():
        model.net.head.weight.normal_()
    point, quant = model.predict(x, observed, mask)
    assert quant.shape == (3, 40, 1, 3)
    assert bool((quant.diff(dim=-1) >= 0).all())
    assert bool((quant[~mask] == 0).all())
    torch.testing.assert_close(model(x, observed, mask), point)
    assert SeriesModel(1, window=6, stride=3, width=8, k=3).predict(x)[1] is None


@pytest.mark.parametrize("levels", [(0.9, 0.1), (0.0, 0.5), (0.5, 0.5), (1.2,)])
def test_bad_quantiles(levels):
    with pytest.raises(ValueError, match="quantiles must be increasing levels in"):
        SeriesModel(1, quantiles=levels)


def test_pinball_loss_matches_definition():
    target = torch.tensor([[[1.0], [3.0]]])
    quant = torch.tensor([[[[0.0, 2.0]], [[4.0, 4.0]]]])
    where = torch.ones(1, 2, 1, dtype=torch.bool)
    # levels 0.1, 0.9: (0.1*1, 0.1*1 ... ) -> diffs 1,-1,-1,-1
    expected = (0.1 * 1 + 0.1 * 1 + 0.9 * 1 + 0.1 * 1) / 4
    assert float(pinball_loss(quant, target, (0.1, 0.9), where)) == pytest.approx(expected)


def test_fit_on_episodes_learns_a_correction_of_the_base():
    gen = torch.Generator().manual_seed(0)
    steps = torch.arange(48.0)
    clean = torch.sin(steps * 2 * torch.pi / 12 + torch.rand(64, 1, generator=gen) * 6)[..., None]
    ep = make_episode(clean, torch.full((64,), 48), "impute", gap=(6, 10), generator=gen)
    ep["base"] = torch.where(ep["observed"], ep["inputs"], torch.zeros_like(ep["inputs"]))
    model = _hybrid(quantiles=(0.1, 0.9))
    before = float(masked_mse(model(ep["inputs"], ep["observed"], ep["mask"], ep["base"]).detach(),
                              ep["target"], ep["score"]))
    losses = fit_on_episodes(model, ep, steps=80, batch=16, lr=5e-3, seed=0)
    with torch.no_grad():
        after = float(masked_mse(model(ep["inputs"], ep["observed"], ep["mask"], ep["base"]),
                                 ep["target"], ep["score"]))
    assert len(losses) == 80 and after < 0.5 * before


def test_fit_on_episodes_rejects_an_empty_pool():
    ep = {k: torch.zeros(0, 10, 1) for k in ("inputs", "target")}
    with pytest.raises(ValueError, match="at least one episode"):
        fit_on_episodes(_hybrid(), ep, steps=5)


def test_fit_on_episodes_early_stopping_keeps_the_best_validated_parameters():
    gen = torch.Generator().manual_seed(1)
    clean = torch.randn(32, 36, 1, generator=gen)
    ep = make_episode(clean, torch.full((32,), 36), "impute", gap=(6, 8), generator=gen)
    ep["base"] = torch.zeros_like(clean)
    # validation whose truth is the base itself: no training step can beat the untrained
    # hybrid (which returns the base), so early stopping must keep its initial parameters
    val = {**ep, "target": ep["base"].clone()}
    model = _hybrid()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    fit_on_episodes(model, ep, steps=20, batch=8, lr=1e-2, validation=val, eval_every=5)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, start[key])
    trained = _hybrid()
    fit_on_episodes(trained, ep, steps=20, batch=8, lr=1e-2, validation=ep, eval_every=5)
    assert not torch.equal(trained.net.head.weight, start["net.head.weight"])


def test_fill_from_base_feeds_the_base_at_unobserved_steps(data):
    x, base, observed, mask = data
    filled = _hybrid(fill_from_base=True)
    with torch.no_grad():
        filled.net.head.weight.normal_()
    # what the unobserved steps hold is never read: only the base is
    noisy = torch.where(observed, x, torch.full_like(x, 1e3))
    torch.testing.assert_close(filled(noisy, observed, mask, base), filled(x, observed, mask, base))
    # with the same weights, the zero-filling model sees zeros there instead of the base
    zero = _hybrid()
    zero.load_state_dict(filled.state_dict())
    assert not torch.allclose(filled(x, observed, mask, base), zero(x, observed, mask, base))
    # fully observed series: nothing to fill, both models agree
    full = torch.ones_like(observed)
    torch.testing.assert_close(filled(x, full, mask, base), zero(x, full, mask, base))
    # the untrained filled hybrid still returns its base
    torch.testing.assert_close(_hybrid(fill_from_base=True)(x, observed, mask, base)[mask],
                               base[mask], atol=1e-5, rtol=1e-5)


def test_fill_from_base_needs_a_base():
    with pytest.raises(ValueError, match="fill_from_base=True needs use_base=True"):
        SeriesModel(1, fill_from_base=True)
