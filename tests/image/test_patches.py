"""Patch extraction / folding and 2-D search windows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from n3seq_image import (
    ExtractPatches,
    FoldPatches,
    extract_patches,
    fold_patches,
    patch_grid,
    patch_padding,
    window_candidates_2d,
)


@st.composite
def image_and_patches(draw):
    p = draw(st.integers(1, 7))
    s = draw(st.integers(1, p))
    h = draw(st.integers(p, 23))
    w = draw(st.integers(p, 23))
    c = draw(st.integers(1, 3))
    return c, h, w, p, s


class TestExtractFold:
    @given(image_and_patches(), st.integers(0, 2**31 - 1))
    def test_fold_of_extract_is_identity(self, args, seed):
        c, h, w, p, s = args
        x = torch.rand(2, c, h, w, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(seed))
        tokens = extract_patches(x, p, s)
        assert tokens.shape == (2, patch_grid((h, w), p, s)[0] * patch_grid((h, w), p, s)[1],
                                c * p * p)
        torch.testing.assert_close(fold_patches(tokens, (h, w), p, s), x)

    def test_padding_follows_the_authors_convention(self):
        # Issue 3: 256 px → 2 and 2 (51 patches), 512 px → 1 and 2, smaller half first.
        assert patch_padding(256, 10, 5) == (2, 2)
        assert patch_grid((256, 256), 10, 5) == (51, 51)
        assert patch_padding(512, 10, 5) == (1, 2)
        assert patch_padding(80, 10, 5) == (0, 0)

    def test_tokens_are_the_padded_patches_row_major(self):
        x = torch.rand(1, 2, 13, 17)
        p, s = 4, 3
        (top, bottom), (left, right) = patch_padding(13, p, s), patch_padding(17, p, s)
        padded = F.pad(x, (left, right, top, bottom))
        n1, n2 = patch_grid((13, 17), p, s)
        tokens = extract_patches(x, p, s)
        for i in range(n1):
            for j in range(n2):
                patch = padded[0, :, i * s : i * s + p, j * s : j * s + p].reshape(-1)
                torch.testing.assert_close(tokens[0, i * n2 + j], patch)

    def test_fold_averages_overlaps(self):
        # Two 2×2 patches at stride 1 filled with 0 and 1: the shared column gets 0.5.
        tokens = torch.tensor([[[0.0] * 4, [1.0] * 4]])
        out = fold_patches(tokens, (2, 3), 2, 1)
        torch.testing.assert_close(out, torch.tensor([[[[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]]]]))

    def test_modules_equal_functions(self):
        x = torch.rand(2, 3, 30, 41)
        t = ExtractPatches(10, 5)(x)
        torch.testing.assert_close(t, extract_patches(x, 10, 5))
        torch.testing.assert_close(FoldPatches(10, 5)(t, (30, 41)), fold_patches(t, (30, 41),
                                                                                  10, 5))

    def test_gradient_flows(self):
        x = torch.rand(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda a: fold_patches(extract_patches(a, 4, 3) ** 2, (12, 12), 4, 3), (x,),
            fast_mode=True)

    @pytest.mark.parametrize(
        ("call", "match"),
        [
            (lambda: extract_patches(torch.rand(1, 1, 5, 20), 10, 5), "smaller than patch_size"),
            (lambda: extract_patches(torch.rand(1, 20, 20), 4, 2), r"\(B, C, H, W\)"),
            (lambda: extract_patches(torch.rand(1, 1, 20, 20), 4, 5), "stride=5 > patch_size=4"),
            (lambda: extract_patches(torch.rand(1, 1, 20, 20), 0, 1), "patch_size must be >= 1"),
            (lambda: fold_patches(torch.rand(1, 7, 100), (20, 20), 10, 5),
             r"expected \(B, 9, C·10²\)"),
        ],
    )
    def test_errors(self, call, match):
        with pytest.raises(ValueError, match=match):
            call()

    def test_integer_input_rejected(self):
        with pytest.raises(TypeError, match="floating-point"):
            extract_patches(torch.zeros(1, 1, 10, 10, dtype=torch.long), 2, 2)


def brute_force_windows(n1: int, n2: int, window: int) -> list[list[int]]:
    out = []
    for i in range(n1):
        for j in range(n2):
            r0 = min(max(i - window // 2, 0), n1 - window)
            c0 = min(max(j - window // 2, 0), n2 - window)
            out.append([r * n2 + c for r in range(r0, r0 + window)
                        for c in range(c0, c0 + window) if (r, c) != (i, j)])
    return out


class TestWindows:
    def test_counts_and_no_self(self):
        cand = window_candidates_2d((19, 23), 15)
        assert cand.shape == (1, 19 * 23, 224)
        own = torch.arange(19 * 23)[:, None]
        assert not (cand[0] == own).any()
        assert all(len(set(row)) == 224 for row in cand[0].tolist())

    @pytest.mark.parametrize(("n1", "n2", "window"), [(15, 15, 15), (17, 22, 15), (6, 5, 3),
                                                       (8, 9, 4)])
    def test_equals_brute_force(self, n1, n2, window):
        assert window_candidates_2d((n1, n2), window)[0].tolist() == brute_force_windows(
            n1, n2, window)

    def test_border_windows_shift_inward(self):
        n1, n2 = 30, 20
        cand = window_candidates_2d((n1, n2), 15, exclude_self=False)[0]
        rows, cols = cand // n2, cand % n2
        # Top-left corner: rows and columns 0..14.
        assert rows[0].min() == 0 and rows[0].max() == 14 and cols[0].max() == 14
        # Bottom-right corner: the last 15 rows and columns.
        assert rows[-1].min() == n1 - 15 and cols[-1].min() == n2 - 15
        # Interior query (12, 10): centred.
        q = 12 * n2 + 10
        assert rows[q].min() == 5 and rows[q].max() == 19 and cols[q].min() == 3
        assert cand.shape[1] == 225

    def test_grid_smaller_than_window_rejected(self):
        with pytest.raises(ValueError, match="smaller than the window"):
            window_candidates_2d((14, 30), 15)


# --- Bad and unusual inputs (issue 9) -------------------------------------------------------

from n3seq_image.memory_format import is_channels_last, preferred_memory_format  # noqa: E402
from n3seq_image.windows import window_starts  # noqa: E402

PATCH_CASES = [
    (lambda: extract_patches(torch.rand(1, 1, 20, 20), 10.0, 5), TypeError,
     "patch_size must be an int, got float"),
    (lambda: extract_patches(torch.rand(1, 1, 20, 20), 10, True), TypeError,
     "stride must be an int, got bool"),
    (lambda: extract_patches(torch.rand(1, 1, 20, 20), 0, 1), ValueError,
     "patch_size must be >= 1"),
    (lambda: extract_patches(torch.rand(1, 1, 20, 20), 5, 10), ValueError,
     "stride=10 > patch_size=5"),
    (lambda: extract_patches(torch.ones(1, 1, 20, 20, dtype=torch.long), 10, 5), TypeError,
     "x must be a floating-point tensor"),
    (lambda: extract_patches(torch.rand(20, 20), 10, 5), ValueError,
     r"x must have shape \(B, C, H, W\)"),
    (lambda: extract_patches(torch.rand(1, 1, 5, 20), 10, 5), ValueError,
     "smaller than patch_size=10"),
    (lambda: fold_patches(torch.rand(1, 9, 100), (20.0, 20), 10, 5), TypeError,
     "size\\[0\\] must be an int, got float"),
    (lambda: fold_patches(torch.rand(1, 9, 100), 20, 10, 5), TypeError,
     r"size must be a pair \(H, W\)"),
    (lambda: fold_patches(torch.ones(1, 9, 100, dtype=torch.long), (20, 20), 10, 5),
     TypeError, "tokens must be a floating-point tensor"),
    (lambda: fold_patches(torch.rand(1, 8, 100), (20, 20), 10, 5), ValueError,
     r"expected \(B, 9, C·10²\)"),
    (lambda: fold_patches(torch.rand(9, 100), (20, 20), 10, 5), ValueError,
     r"tokens must have shape \(B, N, C·p·p\)"),
    (lambda: patch_grid((-3, 20), 10, 5), ValueError, r"size\[0\] must be >= 1"),
    (lambda: patch_grid((20, 20, 3), 10, 5), TypeError, "size must be a pair"),
    (lambda: patch_padding(25.5, 10, 5), TypeError, "length must be an int, got float"),
    (lambda: patch_padding(5, 10, 5), ValueError, "shorter than patch_size=10"),
    (lambda: window_candidates_2d((20, 30), 2.5), TypeError, "window must be an int, got float"),
    (lambda: window_candidates_2d((20, 30), 0), ValueError, "window must be >= 1"),
    (lambda: window_candidates_2d((20, 30), 3, exclude_self="no"), TypeError,
     "exclude_self must be a bool \\(True or False\\), got str"),
    (lambda: window_candidates_2d(20, 3), TypeError, r"grid must be a pair \(n1, n2\)"),
    (lambda: window_candidates_2d((20.0, 30), 3), TypeError, r"grid\[0\] must be an int"),
    (lambda: window_candidates_2d((4, 30), 5), ValueError, "smaller than the window 5×5"),
    (lambda: window_starts(6, True), TypeError, "window must be an int, got bool"),
    (lambda: window_starts(6.0, 3), TypeError, "length must be an int, got float"),
    (lambda: window_starts(2, 3), ValueError, "smaller than the window 3"),
    (lambda: preferred_memory_format("bogus"), ValueError, "device must be a torch device"),
    (lambda: is_channels_last([1, 2]), TypeError, "x must be a torch.Tensor, got list"),
]


@pytest.mark.parametrize(("call", "exc", "match"), PATCH_CASES)
def test_patch_and_window_exception_table(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_numpy_integers_accepted():
    np = pytest.importorskip("numpy")
    x = torch.rand(1, 1, 20, 20)
    torch.testing.assert_close(extract_patches(x, np.int64(10), np.int32(5)),
                               extract_patches(x, 10, 5))
    assert window_candidates_2d((np.int64(20), 30), np.int64(15)).shape == (1, 600, 224)


def test_empty_batch_round_trips():
    tokens = extract_patches(torch.rand(0, 2, 20, 23), 10, 5)
    assert tokens.shape == (0, 12, 200)
    assert fold_patches(tokens, (20, 23), 10, 5).shape == (0, 2, 20, 23)
