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
    with pytest.raises(ValueError, match=r"labels must be a bool tensor of shape \(1, 3\)"):
        precision_recall_f1(torch.ones(1, 3), torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"src and dst must have shape \(4, 2\)"):
        homography_from_points(torch.zeros(3, 2), torch.zeros(3, 2))
