"""One mechanism chooses an implementation: n3seq._dispatch.choose_backend and its users."""

import pytest
import torch

import n3seq.relaxation as relaxation
from n3seq import continuous_knn, knn_aggregate, window_candidates
from n3seq._dispatch import choose_backend
from n3seq.relaxation import can_run_fused, choose_relaxation, relax_scores


def test_choose_backend_runs_the_requested_one_where_it_can():
    assert choose_backend("backend", "a", {"a": True, "b": True}) == "a"
    assert choose_backend("backend", "b", {"a": True, "b": True}) == "b"


def test_choose_backend_falls_back_to_the_first_that_can():
    assert choose_backend("backend", "a", {"a": False, "b": False, "c": True}) == "c"


def test_choose_backend_names_the_argument_and_the_choices():
    with pytest.raises(ValueError, match=r"impl must be one of 'a', 'b', got 'z'"):
        choose_backend("impl", "z", {"a": True, "b": True})


def test_fused_runs_eagerly_and_falls_back_inside_vmap():
    assert can_run_fused()
    assert choose_relaxation() == "fused"
    seen = []

    def fn(s):
        seen.append((can_run_fused(), choose_relaxation("fused")))
        return s

    torch.func.vmap(fn)(torch.zeros(2, 3))
    assert seen == [(False, "straightforward")]


def _fused_forbidden(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the fused relaxation ran")

    monkeypatch.setattr(relaxation, "fused_continuous_knn", boom)


@pytest.mark.parametrize("call", ["continuous_knn", "global", "windows", "relax_scores"])
def test_backend_argument_selects_the_implementation(monkeypatch, call):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 12, 3, generator=g, dtype=torch.float64)
    runs = {
        "continuous_knn": lambda b: continuous_knn(x[0], 2, 0.5, backend=b),
        "global": lambda b: knn_aggregate(x, x, x, 2, 0.5, backend=b),
        "windows": lambda b: knn_aggregate(x, x, x, 2, 0.5, backend=b, chunk_size=5,
                                           candidates=window_candidates(12, 2)),
        "relax_scores": lambda b: relax_scores(x[0], 2, torch.tensor(0.5), backend=b),
    }
    fused = runs[call]("fused")
    _fused_forbidden(monkeypatch)
    straightforward = runs[call]("straightforward")
    torch.testing.assert_close(straightforward, fused, rtol=1e-12, atol=1e-12)
    if call != "global":  # the global no-grad path runs fused_knn_sums instead
        with pytest.raises(AssertionError, match="fused relaxation ran"):
            runs[call]("fused")


@pytest.mark.parametrize("fn", ["continuous_knn", "knn_aggregate"])
def test_unknown_backend_is_named(fn):
    x = torch.randn(1, 6, 2)
    call = {"continuous_knn": lambda: continuous_knn(x[0], 2, backend="slow"),
            "knn_aggregate": lambda: knn_aggregate(x, x, x, 2, backend="slow")}[fn]
    with pytest.raises(ValueError, match=r"backend must be one of 'fused', 'straightforward', "
                                         r"got 'slow'"):
        call()


def test_relax_scores_placements_and_transform():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(4, 9, generator=g, dtype=torch.float64)
    t = torch.rand(4, 1, generator=g, dtype=torch.float64) + 0.2
    torch.testing.assert_close(relax_scores(s, 3, t), continuous_knn(s, 3, t))
    torch.testing.assert_close(relax_scores(s, 3, t, placement="official"),
                               continuous_knn(s / t, 3))
    torch.testing.assert_close(relax_scores(s, 3, t, score_transform=lambda z: 2 * z),
                               continuous_knn(2 * s, 3, t))
    valid = torch.rand(4, 9, generator=g) > 0.3
    valid[:, :3] = True
    torch.testing.assert_close(relax_scores(s, 3, t, valid), continuous_knn(s, 3, t, valid))


def test_relax_scores_runs_in_float32_under_autocast():
    s = torch.randn(3, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = relax_scores(s, 2, torch.tensor(0.5))
    assert w.dtype == torch.bfloat16
    torch.testing.assert_close(w.float(), continuous_knn(s.float(), 2, 0.5).bfloat16().float())
