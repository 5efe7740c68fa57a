import pytest
import torch

from n3seq.sets import (
    apply_homography,
    average_precision,
    homography_from_points,
    make_correspondences,
    mean_average_precision,
    precision_recall_f1,
    random_homography,
)


def test_homography_maps_the_four_points():
    src = torch.tensor([[0.0, 0.0], [4.0, 0.0], [4.0, 3.0], [0.0, 3.0]])
    dst = torch.tensor([[1.0, 1.0], [5.0, 0.5], [6.0, 4.0], [0.0, 3.5]])
    torch.testing.assert_close(apply_homography(homography_from_points(src, dst), src), dst)


def test_correspondences_follow_the_homography():
    gen = torch.Generator().manual_seed(0)
    data = make_correspondences(6, min_points=40, max_points=80, noise_px=0.5, generator=gen)
    assert data["x"].shape == (6, 80, 4) and data["mask"].shape == (6, 80)
    counts = data["mask"].sum(1)
    assert bool(((counts >= 40) & (counts <= 80)).all())
    assert bool((data["labels"] <= data["mask"]).all())
    assert bool((data["x"][~data["mask"]] == 0).all())
    ratio = 1 - data["labels"].sum(1) / counts
    assert bool(((ratio > 0.45) & (ratio < 0.92)).all())
    for b in range(6):
        pix, lab = data["pixels"][b], data["labels"][b]
        err = (apply_homography(data["homography"][b], pix[:, :2]) - pix[:, 2:]).norm(dim=1)
        assert float(err[lab].max()) < 5 * 0.5 * 3
        assert float(err[data["mask"][b] & ~lab].median()) > 20


def test_random_homography_is_invertible():
    h = random_homography(generator=torch.Generator().manual_seed(3))
    assert abs(float(torch.linalg.det(h))) > 1e-6


def test_precision_recall_f1():
    logits = torch.tensor([[3.0, 2.0, -1.0, -2.0, 5.0]])
    labels = torch.tensor([[True, False, True, False, True]])
    out = precision_recall_f1(logits, labels)
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(2 / 3)
    mask = torch.tensor([[True, False, False, True, True]])
    assert precision_recall_f1(logits, labels, mask) == {"precision": 1.0, "recall": 1.0,
                                                         "f1": 1.0}


def test_average_precision_closed_form():
    labels = torch.tensor([True, False, True, False])
    assert average_precision(torch.tensor([4.0, 3.0, 2.0, 1.0]), labels) == \
        pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(torch.tensor([4.0, 1.0, 3.0, 0.0]), labels) == 1.0
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    both = torch.stack([labels, labels])
    expected = ((1 + 2 / 3) / 2 + (1 / 2 + 2 / 4) / 2) / 2
    assert mean_average_precision(logits, both) == pytest.approx(expected)


def test_errors():
    with pytest.raises(ValueError, match="min_points <= max_points"):
        make_correspondences(1, min_points=50, max_points=20)
    with pytest.raises(ValueError, match="outlier_ratio"):
        make_correspondences(1, outlier_ratio=(0.5, 1.0))
    with pytest.raises(ValueError, match="no positive"):
        average_precision(torch.ones(3), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"labels must be a bool tensor, got torch.float32"):
        precision_recall_f1(torch.ones(1, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"labels must have shape \(1, 3\)"):
        precision_recall_f1(torch.ones(1, 3), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"src must have shape \(4, 2\)"):
        homography_from_points(torch.zeros(3, 2), torch.zeros(3, 2))


# --- Bad and unusual inputs (issue 9) -------------------------------------------------------

_NAN = float("nan")

DATA_CASES = [
    (lambda: make_correspondences(2.5, min_points=10, max_points=20), TypeError,
     "num_sets must be an int, got float"),
    (lambda: make_correspondences(-1, min_points=10, max_points=20), ValueError,
     "num_sets must be >= 0"),
    (lambda: make_correspondences(1, min_points=10.5, max_points=20), TypeError,
     "min_points must be an int"),
    (lambda: make_correspondences(1, min_points=7, max_points=20), ValueError,
     "min_points must be >= 8"),
    (lambda: make_correspondences(1, min_points=10, max_points=True), TypeError,
     "max_points must be an int, got bool"),
    (lambda: make_correspondences(1, outlier_ratio=0.5), TypeError,
     "outlier_ratio must be a pair"),
    (lambda: make_correspondences(1, outlier_ratio=(_NAN, 0.5)), ValueError,
     r"outlier_ratio\[0\] must be finite"),
    (lambda: make_correspondences(1, noise_px=_NAN), ValueError, "noise_px must be finite"),
    (lambda: make_correspondences(1, noise_px=-1), ValueError, "noise_px must be >= 0"),
    (lambda: make_correspondences(1, min_points=10, max_points=20, noise_px=1e9), ValueError,
     "could not place .* inliers inside image 2"),
    (lambda: make_correspondences(1, size=(0, 480)), ValueError, r"size\[0\] must be >= 1"),
    (lambda: make_correspondences(1, size=(640.5, 480)), TypeError, r"size\[0\] must be an int"),
    (lambda: make_correspondences(1, generator=0), TypeError, "generator must be a torch"),
    (lambda: random_homography((640,)), TypeError, "size must be a pair"),
    (lambda: random_homography(scale=(0, 0)), ValueError, "scale must be a range"),
    (lambda: random_homography(max_angle=float("inf")), ValueError, "max_angle must be finite"),
    (lambda: random_homography(perturb=-0.1), ValueError, "perturb must be >= 0"),
    (lambda: homography_from_points(torch.zeros(4, 2), torch.rand(4, 2)), ValueError,
     "the points are degenerate"),
    (lambda: homography_from_points(torch.full((4, 2), _NAN), torch.rand(4, 2)), ValueError,
     r"src contains 8 non-finite \(NaN/Inf\) value\(s\)"),
    (lambda: homography_from_points(torch.zeros(4, 2, dtype=torch.long), torch.rand(4, 2)),
     TypeError, "src must be a floating-point tensor"),
    (lambda: apply_homography(torch.eye(3), torch.rand(5, 3)), ValueError,
     r"points must have shape \(N, 2\)"),
    (lambda: apply_homography(torch.rand(2, 2), torch.rand(5, 2)), ValueError,
     r"h must have shape \(3, 3\)"),
    (lambda: apply_homography(torch.full((3, 3), _NAN), torch.rand(5, 2)), ValueError,
     "h contains 9 non-finite"),
]


@pytest.mark.parametrize(("call", "exc", "match"), DATA_CASES)
def test_data_exception_table(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_zero_sets_give_an_empty_batch():
    batch = make_correspondences(0, min_points=10, max_points=20)
    assert batch["x"].shape == (0, 20, 4) and batch["homography"].shape == (0, 3, 3)
    assert batch["outlier_ratio"].shape == (0,)


_L = torch.tensor([[True, False, True, False]])
_M = torch.tensor([[True, True, True, False]])

METRIC_CASES = [
    (lambda: precision_recall_f1(torch.tensor([[1.0, _NAN, 0.0, 0.0]]), _L), ValueError,
     r"logits contains 1 non-finite \(NaN/Inf\) value\(s\) at real points \(first at index "
     r"\(0, 1\), value nan\)"),
    (lambda: precision_recall_f1(torch.zeros(1, 4), _L, threshold="a"), TypeError,
     "threshold must be a real number"),
    (lambda: precision_recall_f1(torch.zeros(1, 4, dtype=torch.long), _L), TypeError,
     "logits must be a floating-point tensor"),
    (lambda: precision_recall_f1(torch.zeros(4), _L[0]), ValueError,
     r"logits must have shape \(B, N\)"),
    (lambda: precision_recall_f1(torch.zeros(1, 4), [[True] * 4]), TypeError,
     "labels must be a bool tensor, got list"),
    (lambda: precision_recall_f1(torch.zeros(1, 4), _L, _M.float()), TypeError,
     "mask must be a bool tensor"),
    (lambda: average_precision(torch.tensor([_NAN, 1.0]), torch.tensor([True, False])),
     ValueError, r"scores contains 1 non-finite .* value nan"),
    (lambda: average_precision(torch.tensor([[1.0]]), torch.tensor([[True]])), ValueError,
     r"scores must have shape \(N,\)"),
    (lambda: mean_average_precision(torch.zeros(0, 5), torch.zeros(0, 5, dtype=torch.bool)),
     ValueError, "needs at least one set"),
    (lambda: mean_average_precision(torch.zeros(1, 4), _L, ~_L), ValueError,
     "set 0 has no inlier among its real points"),
    (lambda: mean_average_precision(torch.tensor([[1.0, 0.0, -float("inf"), 0.0]]), _L),
     ValueError, r"value -inf\)"),
]


@pytest.mark.parametrize(("call", "exc", "match"), METRIC_CASES)
def test_metric_exception_table(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_metrics_ignore_padding_content():
    logits = torch.tensor([[2.0, -1.0, 3.0, 0.0]])
    dirty = torch.tensor([[2.0, -1.0, 3.0, _NAN]])
    assert precision_recall_f1(dirty, _L, _M) == precision_recall_f1(logits, _L, _M)
    assert mean_average_precision(dirty, _L, _M) == mean_average_precision(logits, _L, _M)
