"""Exception tables (kornia style): every bad argument of every public core function.

Each row is (argument, bad value, expected exception, message fragment). A row passes only if
the call raises exactly that exception type with a message naming the argument and the
problem; a bad value that is silently accepted fails the row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from n3seq import (
    ContinuousKNN,
    KNNAggregate,
    N3Block,
    continuous_knn,
    hard_knn,
    knn_aggregate,
    n3_output,
    window_candidates,
)
from n3seq.ablation import DenseResidual, N3Residual, matching_width
from n3seq.approximate import approx_knn_aggregate, preselect_candidates, tail_bound
from n3seq.block import mlp

NAN, INF = math.nan, math.inf


def _x(b=2, n=8, e=3, seed=0):
    return torch.randn(b, n, e, generator=torch.Generator().manual_seed(seed))


def _with(t: torch.Tensor, index: tuple[int, ...], value: float) -> torch.Tensor:
    t = t.clone()
    t[index] = value
    return t


def _check(fn: Callable[..., Any], kwargs: dict, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as info:
        fn(**kwargs)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert re.search(fragment, str(info.value)), f"{fragment!r} not in {str(info.value)!r}"


# --- continuous_knn / hard_knn / ContinuousKNN -------------------------------------------------

SCORES = torch.randn(2, 5)
SCORE_ROWS = [
    ("scores", [1.0, 2.0], TypeError, "scores must be a torch.Tensor, got list"),
    ("scores", torch.arange(5), TypeError, "scores must be a floating-point tensor"),
    ("scores", torch.tensor(1.0), ValueError, "0-d tensor"),
    ("scores", _with(SCORES, (1, 3), NAN), ValueError,
     r"scores contains 1 non-finite .* \(first at index \(1, 3\), value nan\)"),
    ("scores", _with(SCORES, (0, 2), INF), ValueError, r"first at index \(0, 2\), value inf\)"),
    ("scores", _with(SCORES, (0, 4), -INF), ValueError, r"value -inf\)"),
    ("k", 0, ValueError, "k must be >= 1, got 0"),
    ("k", -3, ValueError, "k must be >= 1, got -3"),
    ("k", 6, ValueError, "k=6 is larger than the number of candidates O=5"),
    ("k", 2.0, TypeError, "k must be an int, got float 2.0"),
    ("k", 2.5, TypeError, "k must be an int, got float 2.5"),
    ("k", True, TypeError, "k must be an int, got bool True"),
    ("k", "2", TypeError, "k must be an int, got str '2'"),
    ("k", torch.tensor(2), TypeError, "k must be an int, got Tensor"),
    ("k", None, TypeError, "k must be an int, got NoneType"),
    ("mask", torch.ones(2, 5), TypeError, "mask must be a bool tensor"),
    ("mask", torch.ones(3, 5, dtype=torch.bool), ValueError, "mask must be broadcastable"),
    ("mask", torch.zeros(2, 5, dtype=torch.bool), ValueError, "has no valid candidate"),
    ("mask", torch.tensor([[1, 1, 0, 0, 0], [0, 1, 0, 0, 0]]).bool(), ValueError,
     r"k=2 is larger than the number of valid candidates: mask row \(1,\) has only 1"),
]
TEMPERATURE_ROWS = [
    ("temperature", 0.0, ValueError, "temperature must be positive and finite, got 0.0"),
    ("temperature", -1.0, ValueError, "temperature must be positive and finite, got -1.0"),
    ("temperature", NAN, ValueError, "temperature must be positive and finite, got nan"),
    ("temperature", INF, ValueError, "temperature must be positive and finite, got inf"),
    ("temperature", -0.0, ValueError, "temperature must be positive and finite"),
    ("temperature", "1", TypeError, "temperature must be a float or a tensor, got str"),
    ("temperature", True, TypeError, "temperature must be a float or a tensor, got bool"),
    ("temperature", None, TypeError, "temperature must be a float or a tensor, got NoneType"),
    ("temperature", torch.tensor(1), TypeError, "temperature must be a float or floating"),
    ("temperature", torch.tensor([[1.0], [-2.0]]), ValueError, "got -2.0"),
    ("temperature", torch.tensor([[1.0], [NAN]]), ValueError, "got nan"),
    ("temperature", torch.tensor([[INF], [1.0]]), ValueError, "got inf"),
    ("temperature", torch.tensor([[0.0], [1.0]]), ValueError, "got 0.0"),
]


@pytest.mark.parametrize(("arg", "value", "error", "fragment"),
                         [*SCORE_ROWS, *TEMPERATURE_ROWS,
                          ("temperature", torch.ones(3, 1), ValueError,
                           r"temperature must be broadcastable to \(2, 1\)")])
def test_continuous_knn(arg, value, error, fragment):
    _check(continuous_knn, {"scores": SCORES, "k": 2} | {arg: value}, error, fragment)


@pytest.mark.parametrize(("arg", "value", "error", "fragment"), SCORE_ROWS)
def test_hard_knn(arg, value, error, fragment):
    _check(hard_knn, {"scores": SCORES, "k": 2} | {arg: value}, error, fragment)


@pytest.mark.parametrize(("arg", "value", "error", "fragment"), [
    ("k", 0, ValueError, "k must be >= 1"),
    ("k", 1.0, TypeError, "k must be an int"),
    ("k", False, TypeError, "k must be an int, got bool"),
    ("temperature", -0.1, ValueError, "temperature must be positive"),
    ("temperature", NAN, ValueError, "temperature must be positive and finite"),
    ("temperature", "hot", TypeError, "temperature must be a float or a tensor"),
])
def test_continuous_knn_module(arg, value, error, fragment):
    _check(ContinuousKNN, {"k": 2} | {arg: value}, error, fragment)


# --- knn_aggregate / KNNAggregate ------------------------------------------------------------

X = _x(2, 6, 3)
V = torch.randn(2, 6, 4)
AGG_ROWS = [
    ("query", X[0], ValueError, r"query must have shape \(B, N, E\), got \(6, 3\)"),
    ("query", X.long(), TypeError, "query must be a floating-point tensor, got dtype torch.int64"),
    ("query", X.numpy(), TypeError, "query must be a torch.Tensor, got ndarray"),
    ("keys", torch.randn(3, 6, 3), ValueError, r"batch sizes differ: query \(2, 6, 3\)"),
    ("keys", torch.randn(2, 6, 5), ValueError, "must share the embedding dim E"),
    ("values", torch.randn(2, 5, 4), ValueError, "same number of tokens M"),
    ("values", V.bool(), TypeError, "values must be a floating-point tensor"),
    ("query", _with(X, (1, 2, 0), NAN), ValueError,
     r"query contains 1 non-finite .*\(first at index \(1, 2, 0\), value nan\)"),
    ("query", _with(X, (0, 5, 2), -INF), ValueError, r"query .*index \(0, 5, 2\), value -inf"),
    ("values", _with(V, (1, 2, 3), INF), ValueError,
     r"values contains 1 non-finite .*at valid keys|values contains 1 non-finite"),
    ("k", 0, ValueError, "k must be >= 1, got 0"),
    ("k", 7, ValueError, "k=7 is larger than the number of candidates M=6"),
    ("k", 2.0, TypeError, "k must be an int, got float 2.0"),
    ("k", True, TypeError, "k must be an int, got bool"),
    ("exclude_self", "no", TypeError, "exclude_self must be a bool .*got str 'no'"),
    ("exclude_self", 1, TypeError, "exclude_self must be a bool .*got int 1"),
    ("exclude_self", None, TypeError, "exclude_self must be a bool"),
    ("chunk_size", 0, ValueError, "chunk_size must be >= 1, got 0"),
    ("chunk_size", -1, ValueError, "chunk_size must be >= 1, got -1"),
    ("chunk_size", -100, ValueError, "chunk_size must be >= 1, got -100"),
    ("chunk_size", 2.5, TypeError, "chunk_size must be an int, got float 2.5"),
    ("chunk_size", True, TypeError, "chunk_size must be an int, got bool"),
    ("chunk_size", "4", TypeError, "chunk_size must be an int, got str"),
    ("mask", torch.ones(2, 6), TypeError, "mask must be a bool tensor"),
    ("mask", torch.ones(2, 5, dtype=torch.bool), ValueError, r"mask must be broadcastable to \(B, M\)"),
    ("mask", torch.tensor([[1] * 6, [0] * 6]).bool(), ValueError, r"row \(1, 0\) has no valid"),
    ("candidates", torch.zeros(1, 6, 3), TypeError, "candidates must be an int64/int32 tensor"),
    ("candidates", [[0, 1]], TypeError, "candidates must be an int64/int32 tensor, got list"),
    ("candidates", torch.zeros(1, 5, 3, dtype=torch.long), ValueError,
     r"candidates must have shape \(B or 1, N, O\)"),
    ("candidates", torch.full((1, 6, 3), 6), ValueError, r"candidates must index keys in \[0, 6\)"),
    ("candidates", torch.full((1, 6, 3), -1), ValueError, r"got values in \[-1, -1\]"),
    ("candidates", torch.zeros(1, 6, 1, dtype=torch.long), ValueError,
     "larger than the number of candidates O=1"),
    ("candidates", torch.tensor([[[0, 0, 1]] * 6]), ValueError,
     r"candidates must not list a key twice for one query: row \(0, 0\) lists key 0"),
    ("candidates", torch.tensor([[[3, 1, 3]] * 6]), ValueError, "lists key 3 more than once"),
]


@pytest.mark.parametrize(("arg", "value", "error", "fragment"), [
    *AGG_ROWS,
    ("temperature", 0.0, ValueError, "temperature must be positive and finite, got 0.0"),
    ("temperature", NAN, ValueError, "temperature must be positive and finite, got nan"),
    ("temperature", -INF, ValueError, "temperature must be positive and finite, got -inf"),
    ("temperature", torch.ones(3), ValueError, r"temperature must be broadcastable to \(2, 6\)"),
    ("temperature", torch.full((2, 6), -1.0), ValueError, "got -1.0"),
    ("temperature", [0.5], TypeError, "temperature must be a float or a tensor, got list"),
])
def test_knn_aggregate(arg, value, error, fragment):
    kwargs = {"query": X, "keys": X, "values": V, "k": 2} | {arg: value}
    _check(knn_aggregate, kwargs, error, fragment)


def test_knn_aggregate_exclude_self_needs_same_set():
    _check(knn_aggregate, {"query": _x(1, 4, 2), "keys": _x(1, 5, 2), "values": _x(1, 5, 2),
                           "k": 1, "exclude_self": True}, ValueError, r"\(N == M\), got N=4, M=5")


def test_knn_aggregate_invalid_keys_named():
    keys = _with(X, (1, 4, 1), INF)
    _check(knn_aggregate, {"query": X, "keys": keys, "values": V, "k": 2}, ValueError,
           r"keys contains 1 non-finite .*\(first at index \(1, 4, 1\), value inf\)")
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 0] = False
    _check(knn_aggregate, {"query": X, "keys": keys, "values": V, "k": 2, "mask": mask},
           ValueError, r"keys contains 1 non-finite .* at valid keys .*index \(1, 4, 1\)")


@pytest.mark.parametrize(("arg", "value", "error", "fragment"), [
    ("k", 0, ValueError, "k must be >= 1"),
    ("k", 3.0, TypeError, "k must be an int"),
    ("exclude_self", "yes", TypeError, "exclude_self must be a bool"),
])
def test_knn_aggregate_module(arg, value, error, fragment):
    _check(KNNAggregate, {"k": 2} | {arg: value}, error, fragment)


# --- window_candidates -----------------------------------------------------------------------

@pytest.mark.parametrize(("arg", "value", "error", "fragment"), [
    ("num_tokens", 10.0, TypeError, "num_tokens must be an int, got float 10.0"),
    ("num_tokens", True, TypeError, "num_tokens must be an int, got bool"),
    ("num_tokens", "10", TypeError, "num_tokens must be an int, got str"),
    ("num_tokens", 0, ValueError, "num_tokens must be >= 1, got 0"),
    ("num_tokens", 4, ValueError, r"num_tokens=4 is smaller than the window 2\*radius\+1=5"),
    ("radius", 2.5, TypeError, "radius must be an int, got float 2.5"),
    ("radius", True, TypeError, "radius must be an int, got bool True"),
    ("radius", None, TypeError, "radius must be an int, got NoneType"),
    ("radius", -1, ValueError, "radius must be >= 0, got -1"),
    ("lengths", torch.tensor([10.0, 6.0]), TypeError, "lengths must be an integer tensor, got dtype torch.float32"),
    ("lengths", torch.tensor([True, True]), TypeError, "lengths must be an integer tensor, got dtype torch.bool"),
    ("lengths", [10, 6], TypeError, "lengths must be an integer tensor"),
    ("lengths", torch.tensor([[10, 6]]), ValueError, r"lengths must have shape \(B,\)"),
    ("lengths", torch.tensor([10, 4]), ValueError, r"lengths must lie in .* = \[5, 10\], got \[10, 4\]"),
    ("lengths", torch.tensor([11]), ValueError, r"got \[11\]"),
])
def test_window_candidates(arg, value, error, fragment):
    _check(window_candidates, {"num_tokens": 10, "radius": 2} | {arg: value}, error, fragment)


def test_window_candidates_accepts_numpy_integers():
    got = window_candidates(np.int64(10), np.int32(2), torch.tensor([10, 6], dtype=torch.int32))
    assert got.dtype == torch.long
    assert torch.equal(got, window_candidates(10, 2, torch.tensor([10, 6])))


# --- N3Block, n3_output, mlp ---------------------------------------------------------------

@pytest.mark.parametrize(("arg", "value", "error", "fragment"), [
    ("dim", 0, ValueError, "dim must be >= 1, got 0"),
    ("dim", 4.0, TypeError, "dim must be an int, got float 4.0"),
    ("dim", True, TypeError, "dim must be an int, got bool"),
    ("k", 0, ValueError, "k must be >= 1"),
    ("k", 2.5, TypeError, "k must be an int"),
    ("embed_dim", 0, ValueError, "embed_dim must be >= 1, got 0"),
    ("embed_dim", 8.0, TypeError, "embed_dim must be an int"),
    ("hidden", -1, ValueError, "hidden must be >= 1, got -1"),
    ("hidden", "16", TypeError, "hidden must be an int"),
    ("temperature_bias", 0.0, ValueError, "temperature_bias must be positive, got 0.0"),
    ("temperature_bias", -0.1, ValueError, "temperature_bias must be positive"),
    ("temperature_bias", NAN, ValueError, "temperature_bias must be finite, got nan"),
    ("temperature_bias", INF, ValueError, "temperature_bias must be finite, got inf"),
    ("temperature_bias", "0.1", TypeError, "temperature_bias must be a real number, got str"),
    ("temperature_bias", torch.tensor(0.1), TypeError, "temperature_bias must be a real number"),
    ("radius", 0, ValueError, "radius must be >= 1, got 0"),
    ("radius", 1, ValueError, r"radius must be >= 1 and give 2\*radius >= k=3"),
    ("radius", 2.0, TypeError, "radius must be an int, got float 2.0"),
    ("radius", True, TypeError, "radius must be an int, got bool"),
    ("differences", "yes", TypeError, "differences must be a bool"),
    ("differences", 0, TypeError, "differences must be a bool"),
    ("embedding", lambda x: x, TypeError, "embedding must be an nn.Module or None, got function"),
    ("temperature_net", "mlp", TypeError, "temperature_net must be an nn.Module, None, True or False"),
])
def test_n3block_config(arg, value, error, fragment):
    _check(N3Block, {"dim": 4, "k": 3} | {arg: value}, error, fragment)


BLOCK = N3Block(4, k=2)
BLOCK_R = N3Block(4, k=2, radius=2)
XB = torch.randn(2, 10, 4)
PAD = torch.ones(2, 10, dtype=torch.bool)
PAD[1, 7:] = False
HOLE = PAD.clone()
HOLE[0, 3] = False  # not a right-padded prefix


@pytest.mark.parametrize(("block", "arg", "value", "error", "fragment"), [
    (BLOCK, "x", XB[0], ValueError, r"x must have shape \(B, T, D\), got \(10, 4\)"),
    (BLOCK, "x", torch.randn(1, 10, 5), ValueError, r"x must have D=4 features, got shape \(1, 10, 5\)"),
    (BLOCK, "x", XB.long(), TypeError, "x must be a floating-point tensor"),
    (BLOCK, "x", XB.tolist(), TypeError, "x must be a torch.Tensor, got list"),
    (BLOCK, "x", torch.randn(1, 2, 4), ValueError, r"x has T=2 tokens, fewer than k\+1=3"),
    (BLOCK, "x", _with(XB, (1, 3, 2), NAN), ValueError,
     r"x contains 1 non-finite .*\(first at index \(1, 3, 2\), value nan\)"),
    (BLOCK, "x", _with(XB, (0, 9, 0), INF), ValueError, r"x contains .*value inf\)"),
    (BLOCK, "x", _with(XB, (0, 0, 0), 3e38), OverflowError,
     "x reaches .* the differences x̂ − x of the output can overflow torch.float32"),
    (BLOCK, "mask", PAD.float(), TypeError, "mask must be a bool tensor"),
    (BLOCK, "mask", torch.ones(2, 9, dtype=torch.bool), ValueError, r"mask must be broadcastable to \(B, T\)"),
    (BLOCK, "mask", torch.tensor([[True] * 10, [True, True] + [False] * 8]), ValueError,
     r"mask row 1 has 2 real token\(s\), fewer than k\+1=3"),
    (BLOCK_R, "mask", HOLE, ValueError, "mask row 0 is not right-padded: with radius"),
    (BLOCK_R, "mask", torch.tensor([[True] * 10, [True] * 4 + [False] * 6]), ValueError,
     r"mask row 1 has 4 real token\(s\), fewer than the window 2\*radius\+1=5"),
    (BLOCK_R, "x", torch.randn(1, 4, 4), ValueError, r"x has T=4 tokens, fewer than the window"),
])
def test_n3block_forward(block, arg, value, error, fragment):
    _check(block, {"x": XB} | {arg: value}, error, fragment)


def test_n3block_temperature_net_shape_is_checked():
    block = N3Block(4, k=2, temperature_net=nn.Linear(4, 2))
    _check(block, {"x": XB}, ValueError,
           r"temperature_net must map \(B, T, D\) to \(B, T, 1\), got \(2, 10, 2\)")


def test_numpy_scalars_are_accepted():
    out = knn_aggregate(X, X, V, np.int64(2), np.float32(0.5), exclude_self=np.bool_(True),
                        chunk_size=np.int32(2))
    torch.testing.assert_close(out, knn_aggregate(X, X, V, 2, 0.5, exclude_self=True))


def test_n3block_embedding_overflow_is_named():
    block = N3Block(4, k=2, embedding=nn.Linear(4, 4), temperature_net=False)
    with torch.no_grad():
        block.embedding.weight.fill_(1e30)
    _check(block, {"x": XB * 1e10}, ValueError, "the embedding of x contains .* non-finite")


@pytest.mark.parametrize(("arg", "value", "error", "fragment"), [
    ("x", torch.randn(2, 5), ValueError, r"x must have shape \(B, T, D\)"),
    ("neighbours", torch.randn(2, 5, 3), ValueError, r"neighbours must have shape \(B, T, k, D\)"),
    ("neighbours", torch.randn(2, 5, 3, 2), ValueError, r"neighbours must have shape .* = \(2, 5, k, 4\)"),
    ("neighbours", torch.zeros(2, 5, 3, 4, dtype=torch.long), TypeError, "neighbours must be a floating"),
    ("differences", "yes", TypeError, "differences must be a bool"),
])
def test_n3_output(arg, value, error, fragment):
    _check(n3_output, {"x": torch.randn(2, 5, 4), "neighbours": torch.randn(2, 5, 3, 4)}
           | {arg: value}, error, fragment)


@pytest.mark.parametrize(("arg", "value", "error", "fragment"), [
    ("in_dim", 0, ValueError, "in_dim must be >= 1"),
    ("hidden", 2.0, TypeError, "hidden must be an int"),
    ("out_dim", True, TypeError, "out_dim must be an int"),
])
def test_mlp(arg, value, error, fragment):
    _check(mlp, {"in_dim": 3, "hidden": 4, "out_dim": 2} | {arg: value}, error, fragment)


# --- approximate -----------------------------------------------------------------------------

XA = _x(2, 12, 3)
APPROX_ROWS = [
    ("query", XA[0], ValueError, r"query must have shape \(B, N, E\)"),
    ("query", XA.int(), TypeError, "query must be a floating-point tensor"),
    ("keys", torch.randn(2, 12, 4), ValueError, "must share B and E"),
    ("query", _with(XA, (0, 1, 2), NAN), ValueError, r"query contains 1 non-finite .*index \(0, 1, 2\), value nan"),
    ("num_candidates", 0, ValueError, "num_candidates must be >= 1, got 0"),
    ("num_candidates", 4.0, TypeError, "num_candidates must be an int, got float 4.0"),
    ("num_candidates", True, TypeError, "num_candidates must be an int, got bool"),
    ("num_candidates", 12, ValueError, r"num_candidates=12 is larger than the number of valid candidates \(11"),
    ("exclude_self", "no", TypeError, "exclude_self must be a bool"),
    ("chunk_size", -1, ValueError, "chunk_size must be >= 1, got -1"),
    ("chunk_size", 1.5, TypeError, "chunk_size must be an int"),
    ("mask", torch.ones(2, 12), TypeError, "mask must be a bool tensor"),
    ("mask", torch.tensor([[True] * 12, [True] * 5 + [False] * 7]), ValueError,
     r"valid candidates \(4, after mask/exclude_self"),
]


@pytest.mark.parametrize(("arg", "value", "error", "fragment"), [
    *APPROX_ROWS,
    ("search", "annoy", ValueError, "search must be one of 'torch', 'faiss', got 'annoy'"),
    ("search", None, ValueError, "search must be one of"),
])
def test_preselect_candidates(arg, value, error, fragment):
    kwargs = {"query": XA, "keys": XA, "num_candidates": 6, "exclude_self": True} | {arg: value}
    _check(preselect_candidates, kwargs, error, fragment)


@pytest.mark.parametrize(("arg", "value", "error", "fragment"), [
    *APPROX_ROWS,
    ("k", 0, ValueError, "k must be >= 1"),
    ("k", 7, ValueError, "k=7 must be <= num_candidates=6"),
    ("k", 2.0, TypeError, "k must be an int"),
    ("temperature", 0.0, ValueError, "temperature must be positive and finite"),
    ("values", torch.randn(2, 11, 2), ValueError, "same number of tokens M"),
    ("search", "annoy", ValueError, "search must be one of"),
])
def test_approx_knn_aggregate(arg, value, error, fragment):
    kwargs = {"query": XA, "keys": XA, "values": XA, "k": 2, "num_candidates": 6,
              "exclude_self": True} | {arg: value}
    _check(approx_knn_aggregate, kwargs, error, fragment)


@pytest.mark.parametrize(("arg", "value", "error", "fragment"), [
    *APPROX_ROWS,
    ("k", 0, ValueError, "k must be >= 1, got 0"),
    ("k", 2.5, TypeError, "k must be an int, got float 2.5"),
    ("k", 7, ValueError, "k=7 must be <= num_candidates=6"),
    ("temperature", -1.0, ValueError, "temperature must be positive and finite"),
])
def test_tail_bound(arg, value, error, fragment):
    kwargs = {"query": XA, "keys": XA, "num_candidates": 6, "k": 2, "exclude_self": True} | {arg: value}
    _check(tail_bound, kwargs, error, fragment)


# --- ablation --------------------------------------------------------------------------------

@pytest.mark.parametrize(("fn", "kwargs", "error", "fragment"), [
    (DenseResidual, {"dim": 0}, ValueError, "dim must be >= 1"),
    (DenseResidual, {"dim": 2.0}, TypeError, "dim must be an int"),
    (N3Residual, {"dim": 4, "k": 0}, ValueError, "k must be >= 1"),
    (N3Residual, {"dim": 4.5}, TypeError, "dim must be an int"),
    (N3Residual, {"dim": 4, "radius": 1.5}, TypeError, "radius must be an int"),
    (matching_width, {"target": 10.5, "build": DenseResidual}, TypeError, "target must be an int"),
    (matching_width, {"target": 10, "build": 3}, TypeError, "build must be callable"),
    (matching_width, {"target": 10, "build": DenseResidual, "widths": range(0)}, ValueError,
     "widths must be a non-empty range"),
    (matching_width, {"target": 10, "build": lambda w: 3}, TypeError,
     r"build\(4\) must return an nn.Module, got int"),
])
def test_ablation(fn, kwargs, error, fragment):
    _check(fn, kwargs, error, fragment)


# --- second round of bad inputs (issue 9 re-test) ----------------------------------------------

META = torch.device("meta")


@pytest.mark.parametrize(("fn", "expected"), [
    (lambda x, v: knn_aggregate(x, x, v, 2), (2, 8, 2, 4)),
    (lambda x, v: knn_aggregate(x, x, v, 2, mask=torch.ones(2, 8, dtype=torch.bool,
                                                               device=META)), (2, 8, 2, 4)),
    (lambda x, v: knn_aggregate(x, x, v, 2, candidates=window_candidates(8, 1, device=META)),
     (2, 8, 2, 4)),
    (lambda x, v: continuous_knn(x[..., 0], 2, 0.5), (2, 2, 8)),
    (lambda x, v: hard_knn(x[..., 0], 2), (2, 2, 8)),
    (lambda x, v: approx_knn_aggregate(x, x, v, 2, num_candidates=4), (2, 8, 2, 4)),
    (lambda x, v: tail_bound(x, x, 4, 2), (2, 8, 2)),
    (lambda x, v: N3Block(3, k=2).to(META)(x), (2, 8, 9)),
])
def test_meta_tensors_give_meta_results_of_the_right_shape(fn, expected):
    """Meta tensors (no values) skip the value checks instead of failing inside them."""
    out = fn(torch.empty(2, 8, 3, device=META), torch.empty(2, 8, 4, device=META))
    assert out.is_meta and tuple(out.shape) == expected


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"keys": X.to(META)}, "keys is on device meta but query is on cpu"),
    ({"values": V.to(META)}, "values is on device meta but query is on cpu"),
    ({"mask": torch.ones(2, 6, dtype=torch.bool, device=META)}, "mask is on device meta"),
    ({"candidates": window_candidates(6, 1, device=META)}, "candidates is on device meta"),
    ({"temperature": torch.ones(2, 6, device=META)}, "temperature is on device meta"),
])
def test_knn_aggregate_mixed_devices_are_named(kwargs, fragment):
    _check(knn_aggregate, {"query": X, "keys": X, "values": V, "k": 2} | kwargs, ValueError,
           fragment)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_n3block_input_dtype_must_match_its_parameters(dtype):
    block = N3Block(3, k=2)
    _check(block, {"x": _x().to(dtype)}, TypeError,
           f"x has dtype {dtype} but N3Block's parameters are torch.float32")


def test_n3block_input_device_must_match_its_parameters():
    _check(N3Block(3, k=2), {"x": _x().to(META)}, ValueError,
           "x is on device meta but N3Block's parameters are on cpu")


def test_n3block_other_dtype_is_fine_under_autocast():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert N3Block(3, k=2)(_x().bfloat16()).shape == (2, 8, 9)


def test_window_candidates_bad_device_is_named():
    _check(window_candidates, {"num_tokens": 5, "radius": 1, "device": "bogus"}, ValueError,
           "device must be a device such as 'cpu'.*got 'bogus'")


@pytest.mark.parametrize("search", ["bogus", None])
def test_approx_search_is_checked_before_the_candidate_count(search):
    # num_candidates defaults to 64 > M = 8: the unknown search is still the error reported
    _check(approx_knn_aggregate, {"query": X, "keys": X, "values": V, "k": 2,
                                  "search": search}, ValueError, "search must be one of")


def test_reference_refuses_a_temperature_it_would_turn_into_nan():
    from n3seq.reference import continuous_knn_reference
    _check(continuous_knn_reference, {"scores": SCORES, "k": 2, "temperature": 0.0}, ValueError,
           "temperature must be positive and finite, got 0.0")


def test_count_parameters_names_its_argument():
    from n3seq.ablation import count_parameters
    _check(count_parameters, {"module": "net"}, TypeError, "module must be an nn.Module, got str")
