import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from n3seq.timeseries import (
    WindowTokens,
    check_padding_mask,
    covered_length,
    fold_windows,
    num_windows,
    unfold_windows,
    window_mask,
)


@pytest.mark.parametrize(("length", "window", "stride"), [(10, 4, 2), (11, 4, 3), (4, 4, 1),
                                                          (3, 5, 5), (37, 8, 8)])
def test_fold_inverts_unfold(length, window, stride):
    x = torch.randn(2, length, 3, dtype=torch.float64)
    tokens = unfold_windows(x, window, stride)
    assert tokens.shape == (2, num_windows(length, window, stride), window * 3)
    assert covered_length(length, window, stride) >= length
    torch.testing.assert_close(fold_windows(tokens, length, window, stride), x)


def test_tokens_hold_consecutive_steps_time_major():
    x = torch.randn(1, 12, 2)
    tokens = unfold_windows(x, 4, 3)
    torch.testing.assert_close(tokens[0, 2].view(4, 2), x[0, 6:10])


def test_fold_averages_overlaps():
    tokens = torch.stack([torch.zeros(4), torch.ones(4)])[None]  # windows at 0 and 2
    out = fold_windows(tokens, 6, 4, 2)[0, :, 0]
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 0.5, 0.5, 1.0, 1.0]))


def test_fold_ignores_padding_tokens():
    tokens = torch.stack([torch.zeros(4), torch.full((4,), 9.0)])[None]
    mask = torch.tensor([[True, False]])
    out = fold_windows(tokens, 6, 4, 2, mask)[0, :, 0]
    torch.testing.assert_close(out, torch.tensor([0.0] * 4 + [0.0] * 2))


def test_window_mask_matches_series_alone():
    mask = torch.arange(20)[None] < torch.tensor([20, 13, 4, 1])[:, None]
    tok = window_mask(mask, 4, 2)
    assert tok.shape == (4, num_windows(20, 4, 2))
    for row, length in zip(tok, (20, 13, 4, 1)):
        assert int(row.sum()) == num_windows(length, 4, 2)
        assert bool(row[: int(row.sum())].all())


def test_every_real_step_covered_by_a_real_token():
    mask = torch.arange(30)[None] < torch.arange(1, 31)[:, None]
    tok = window_mask(mask, 8, 3)
    covered = fold_windows(tok[..., None].expand(-1, -1, 8).float(), 30, 8, 3) > 0
    assert bool(covered[..., 0][mask].all())


def test_module_equals_functions():
    tok = WindowTokens(6, 2)
    x = torch.randn(2, 20, 1)
    torch.testing.assert_close(tok(x), unfold_windows(x, 6, 2))
    torch.testing.assert_close(tok.fold(tok(x), 20), x)
    assert "window=6" in repr(tok)


def test_errors():
    with pytest.raises(ValueError, match=r"stride must be <= window"):
        unfold_windows(torch.randn(1, 10, 1), 2, 3)
    with pytest.raises(TypeError, match="window must be an int"):
        unfold_windows(torch.randn(1, 10, 1), 2.0, 1)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, C\)"):
        unfold_windows(torch.randn(10, 1), 2, 1)
    with pytest.raises(TypeError, match="floating-point"):
        unfold_windows(torch.ones(1, 10, 1, dtype=torch.long), 2, 1)
    with pytest.raises(ValueError, match=r"N=num_windows\(10, 4, 2\)=4"):
        fold_windows(torch.randn(1, 3, 4), 10, 4, 2)
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        window_mask(torch.ones(1, 5), 2, 1)
    with pytest.raises(ValueError, match="row 1 is not left-aligned"):
        check_padding_mask(torch.tensor([[True, True], [False, True]]), (2, 2))
    with pytest.raises(ValueError, match="row 0 has no real step"):
        check_padding_mask(torch.tensor([[False, False]]), (1, 2))
    with pytest.raises(ValueError, match=r"shape \(B, T\) = \(1, 3\)"):
        check_padding_mask(torch.tensor([[True, False]]), (1, 3))


@given(length=st.integers(1, 40), window=st.integers(1, 9), data=st.data())
def test_fold_unfold_roundtrip_property(length, window, data):
    stride = data.draw(st.integers(1, window))
    x = torch.randn(1, length, 2, dtype=torch.float64)
    tokens = unfold_windows(x, window, stride)
    assert covered_length(length, window, stride) - length < stride + window
    torch.testing.assert_close(fold_windows(tokens, length, window, stride), x)
    real = data.draw(st.integers(1, length))
    mask = torch.arange(length)[None] < real
    tok = window_mask(mask, window, stride)
    assert int(tok.sum()) == num_windows(real, window, stride)


def test_gradcheck_unfold_fold_with_mask():
    x = torch.randn(2, 11, 2, dtype=torch.float64, requires_grad=True)
    mask = torch.arange(11)[None] < torch.tensor([11, 6])[:, None]
    tok = window_mask(mask, 4, 2)
    assert torch.autograd.gradcheck(
        lambda t: fold_windows(unfold_windows(t, 4, 2) ** 2, 11, 4, 2, tok), (x,))


def test_fold_averages_only_over_real_tokens():
    # Real tokens are non-zero, so dividing by every covering window (padding included)
    # would show: the steps 2-3 of [3, 3, 3, 3] and a padded [9, ...] must stay 3, not 1.5.
    tokens = torch.stack([torch.full((4,), 3.0), torch.full((4,), 9.0)])[None]
    out = fold_windows(tokens, 6, 4, 2, torch.tensor([[True, False]]))[0, :, 0]
    torch.testing.assert_close(out, torch.tensor([3.0, 3.0, 3.0, 3.0, 0.0, 0.0]))


@pytest.mark.parametrize(("length", "window", "stride"), [(20, 6, 2), (17, 5, 3), (9, 4, 4)])
def test_masked_fold_is_the_mean_of_the_real_windows(length, window, stride):
    g = torch.Generator().manual_seed(length)
    n = num_windows(length, window, stride)
    tokens = 1.0 + torch.rand(2, n, window * 3, generator=g)
    mask = torch.rand(2, n, generator=g) > 0.4
    mask[:, 0] = True
    out = fold_windows(tokens, length, window, stride, mask)
    expected = torch.zeros(2, length, 3)
    for b in range(2):
        for step in range(length):
            covering = [tokens[b, j].view(window, 3)[step - j * stride] for j in range(n)
                        if mask[b, j] and 0 <= step - j * stride < window]
            if covering:
                expected[b, step] = torch.stack(covering).mean(0)
    torch.testing.assert_close(out, expected)
