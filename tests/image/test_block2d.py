"""N3Block2d and n3_aggregate_2d against an independent brute-force patch implementation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from n3seq_image import N3Block2d, n3_aggregate_2d, n3_output_2d
from n3seq_image.block2d import LOG_TEMPERATURE_BOUND


def brute_force(y, emb, log_t, k, p, s, window, bias, bn, placement):
    """Loops over query patches on explicitly padded images; float64 throughout.

    ``bn`` is None or (mean, var, weight, bias, eps) applied to every score (−distance).
    """
    b, c, h, w = y.shape
    pads = []
    for length in (h, w):
        total = (-(length - p)) % s
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    pad = (left, right, top, bottom)
    yp, ep = F.pad(y, pad), F.pad(emb, pad)
    tp = F.pad(log_t, pad) if log_t is not None else None
    hp, wp = yp.shape[-2:]
    n1, n2 = (hp - p) // s + 1, (wp - p) // s + 1

    def patch(img, i, j):
        return img[:, :, i * s : i * s + p, j * s : j * s + p]

    queries, dists, cands = [], [], []
    for i in range(n1):
        for j in range(n2):
            r0 = min(max(i - window // 2, 0), n1 - window)
            c0 = min(max(j - window // 2, 0), n2 - window)
            cand = [(r, q) for r in range(r0, r0 + window) for q in range(c0, c0 + window)
                    if (r, q) != (i, j)]
            d = torch.stack([((patch(ep, i, j) - patch(ep, r, q)) ** 2).sum(dim=(1, 2, 3))
                             for r, q in cand], dim=-1)
            queries.append((i, j))
            dists.append(d)
            cands.append(cand)
    scores = -torch.stack(dists, dim=1)  # (B, N, O)
    if bn is not None:
        mean, var, weight, shift, eps = bn
        scores = (scores - mean) / (var + eps) ** 0.5 * weight + shift
    out_sum = torch.zeros(b, k, c, hp, wp, dtype=y.dtype)
    count = torch.zeros(hp, wp, dtype=y.dtype)
    for n, (i, j) in enumerate(queries):
        m = patch(tp, i, j).mean(dim=(1, 2, 3)) if tp is not None else torch.zeros(b, dtype=y.dtype)
        m = m.clamp(-LOG_TEMPERATURE_BOUND, LOG_TEMPERATURE_BOUND)
        t = (bias * m.exp())[:, None]
        a = scores[:, n] / t if placement == "official" else scores[:, n]
        t_round = torch.ones_like(t) if placement == "official" else t
        vals = torch.stack([patch(yp, r, q) for r, q in cands[n]], dim=1)  # (B, O, C, p, p)
        for jj in range(k):
            wgt = torch.softmax(a / t_round, dim=-1)
            out_sum[:, jj, :, i * s : i * s + p, j * s : j * s + p] += torch.einsum(
                "bo,bochw->bchw", wgt, vals)
            a = a + torch.log1p(-wgt)
        count[i * s : i * s + p, j * s : j * s + p] += 1
    return (out_sum / count)[..., top : top + h, left : left + w]


def make_inputs(h, w, seed=0, c=2, e=3, batch=2):
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(batch, c, h, w, dtype=torch.float64, generator=g)
    emb = torch.rand(batch, e, h, w, dtype=torch.float64, generator=g) + 2.0
    log_t = 0.5 * torch.randn(batch, 1, h, w, dtype=torch.float64, generator=g)
    return y, emb, log_t


def eval_bn(mean=-3.0, var=0.4, weight=1.3, shift=0.2):
    bn = nn.BatchNorm1d(1).double().eval()
    with torch.no_grad():
        bn.running_mean.fill_(mean)
        bn.running_var.fill_(var)
        bn.weight.fill_(weight)
        bn.bias.fill_(shift)
    return bn, (mean, var, weight, shift, 1e-5)


class TestAgainstBruteForce:
    @pytest.mark.parametrize("backend", ["fast", "reference"])
    @pytest.mark.parametrize("placement", ["official", "paper"])
    @pytest.mark.parametrize("use_bn", [False, True])
    def test_small_window_all_options(self, backend, placement, use_bn):
        # p = 4, s = 2, window = 5: a 13 × 15 image has a 6 × 7 grid with clamped borders.
        y, emb, log_t = make_inputs(13, 15)
        bn_mod, bn = eval_bn() if use_bn else (None, None)
        got = n3_aggregate_2d(y, emb, log_t, 3, patch_size=4, stride=2, window=5,
                              temperature_bias=0.7, score_norm=bn_mod, placement=placement,
                              backend=backend)
        want = brute_force(y, emb, log_t, 3, 4, 2, 5, 0.7, bn, placement)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("backend", ["fast", "reference"])
    @pytest.mark.parametrize("placement", ["official", "paper"])
    def test_n3net_geometry(self, backend, placement):
        # The paper's geometry (10 × 10 patches, stride 5, 15 × 15 windows) on an image just
        # above the minimum that needs padding and has clamped windows on every side.
        y, emb, log_t = make_inputs(86, 81, batch=1, c=1, e=1)
        bn_mod, bn = eval_bn(mean=-40.0, var=30.0)
        got = n3_aggregate_2d(y, emb, log_t, 2, score_norm=bn_mod, placement=placement,
                              backend=backend, temperature_bias=0.5)
        want = brute_force(y, emb, log_t, 2, 10, 5, 15, 0.5, bn, placement)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("backend", ["fast", "reference"])
    def test_extreme_log_temperature_matches_clamped_brute_force(self, backend):
        # A runaway temperature CNN (maps of ±100: exp overflows/underflows float32) gives the
        # brute force with the per-patch mean clamped, and finite gradients for every input.
        # (Paper placement: in the official one, rounds 2+ at tiny t are a ratio of numbers
        # the float64 brute force rounds to 1, so it is not a reference there.)
        y, emb, log_t = make_inputs(13, 15)
        log_t[0, :, :7] = 100.0
        log_t[1, :, 6:] = -100.0
        want = brute_force(y, emb, log_t, 3, 4, 2, 5, 0.7, None, "paper")
        inputs = [t.clone().requires_grad_() for t in (y, emb, log_t)]
        got = n3_aggregate_2d(*inputs, 3, patch_size=4, stride=2, window=5,
                              temperature_bias=0.7, placement="paper", backend=backend)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)
        got.square().sum().backward()
        for name, t in zip(("y", "embedding", "log_temperature"), inputs, strict=True):
            assert torch.isfinite(t.grad).all(), name

    @pytest.mark.parametrize("placement", ["official", "paper"])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_log_temperature_beyond_the_bound_acts_as_the_bound(self, placement, dtype):
        y, emb, _ = make_inputs(13, 15)
        y, emb = y.to(dtype), emb.to(dtype)
        sign = torch.tensor([1.0, -1.0], dtype=dtype)[:, None, None, None]

        def run(level: float) -> torch.Tensor:
            log_t = (sign * level).expand(2, 1, 13, 15).clone().requires_grad_()
            out = n3_aggregate_2d(y, emb, log_t, 3, patch_size=4, stride=2, window=5,
                                  temperature_bias=0.7, placement=placement)
            out.sum().backward()
            assert torch.isfinite(log_t.grad).all()
            return out.detach()

        # Even the padded border patches (mean ≥ 3/4 of the level here) are beyond the bound.
        beyond = run(4 * LOG_TEMPERATURE_BOUND)
        assert torch.isfinite(beyond).all()
        torch.testing.assert_close(beyond, run(1e4), rtol=0, atol=0)
        assert not torch.allclose(run(LOG_TEMPERATURE_BOUND - 10.0), beyond)

    def test_training_mode_batch_norm_uses_all_window_scores(self):
        y, emb, log_t = make_inputs(12, 11)
        bn_mod = nn.BatchNorm1d(1).double().train()
        got = n3_aggregate_2d(y, emb, log_t, 2, patch_size=3, stride=1, window=5,
                              score_norm=bn_mod)
        # Batch statistics of all (query, window candidate) distances: the brute force gets
        # them from its own distances by running once without BN.
        p, s, window = 3, 1, 5
        ep = emb
        n1, n2 = 12 - p + 1, 11 - p + 1
        d = []
        for i in range(n1):
            for j in range(n2):
                r0 = min(max(i - 2, 0), n1 - window)
                c0 = min(max(j - 2, 0), n2 - window)
                for r in range(r0, r0 + window):
                    for q in range(c0, c0 + window):
                        if (r, q) != (i, j):
                            d.append(((ep[..., i:i + p, j:j + p] - ep[..., r:r + p, q:q + p])
                                      ** 2).sum(dim=(1, 2, 3)))
        d = torch.stack(d)
        stats = (-d.mean(), d.var(unbiased=False), 1.0, 0.0, 1e-5)
        want = brute_force(y, emb, log_t, 2, p, s, window, 0.1, stats, "official")
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


class TestFastEqualsReference:
    @pytest.mark.parametrize(("h", "w", "batch"), [(80, 80, 2), (118, 80, 1)])
    def test_values_and_gradients(self, h, w, batch):
        y, emb, log_t = make_inputs(h, w, seed=h + w, c=2, e=3, batch=batch)
        inputs = [t.clone().requires_grad_() for t in (y, emb, log_t)]
        bn = nn.BatchNorm1d(1).double().train()
        outs, grads = [], []
        for backend in ("fast", "reference"):
            xs = [t.detach().clone().requires_grad_() for t in inputs]
            out = n3_aggregate_2d(*xs, 3, score_norm=bn, backend=backend,
                                  temperature_bias=0.05)
            outs.append(out)
            grads.append(torch.autograd.grad((out * torch.cos(out)).sum(), xs))
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-9, atol=1e-12)
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)

    @pytest.mark.parametrize("tile", [1, 2, 3])
    @pytest.mark.parametrize("grouped", [True, False])
    def test_many_small_tiles(self, tile, grouped, monkeypatch):
        # Tiles much smaller than the grid: clamped tiles at both ends of both axes; tile rows
        # processed all at once or one at a time.
        from n3seq_image import fast2d
        from n3seq_image.block2d import _patch_temperature, _weights
        from n3seq_image.fast2d import tile_layout, tiled_distances, tiled_fold

        if not grouped:
            monkeypatch.setattr(fast2d, "GROUP_ELEMENTS", 1)

        y, emb, log_t = make_inputs(23, 20)
        bn, _ = eval_bn()
        want = n3_aggregate_2d(y, emb, log_t, 3, patch_size=4, stride=2, window=5,
                               score_norm=bn, backend="reference")
        temp = _patch_temperature(log_t, 2, 11 * 9, 4, 2, 0.1, y)
        layout = tile_layout(y, 3, 4, 2, 5, tile=tile)
        weights = _weights(-tiled_distances(emb, layout), temp, 3, bn, "official")
        got = tiled_fold(y, weights, layout)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)

    def test_float32_close_to_float64(self):
        # The fast backend expands ‖q − c‖²; centring keeps float32 accurate even with a
        # large common offset in the embedding.
        y, emb, log_t = make_inputs(90, 90, c=2, e=8, batch=1)
        emb = emb + 50.0
        want = n3_aggregate_2d(y, emb, log_t, 3, backend="reference", temperature_bias=5.0)
        got = n3_aggregate_2d(y.float(), emb.float(), log_t.float(), 3, temperature_bias=5.0)
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


class TestGradcheck:
    @pytest.mark.parametrize("backend", ["fast", "reference"])
    @pytest.mark.parametrize("placement", ["official", "paper"])
    def test_gradcheck(self, backend, placement):
        g = torch.Generator().manual_seed(3)
        y = torch.rand(1, 1, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
        emb = torch.rand(1, 1, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
        log_t = torch.randn(1, 1, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)

        def fn(a, b, c):
            return n3_aggregate_2d(a, b, c, 2, patch_size=2, stride=1, window=3,
                                   temperature_bias=0.3, placement=placement, backend=backend)

        assert torch.autograd.gradcheck(fn, (y, emb, log_t), fast_mode=True)


class TestN3Block2d:
    def test_shapes_and_defaults(self):
        block = N3Block2d()
        assert block.out_channels == 64 and block.min_size == 80
        out = block.eval()(torch.rand(2, 8, 80, 85))
        assert out.shape == (2, 64, 80, 85)

    def test_output_starts_with_input_and_module_equals_function(self):
        torch.manual_seed(0)
        block = N3Block2d(2, k=3, embed_features=4, patch_size=4, stride=2, window=5).double()
        block.eval()
        with torch.no_grad():
            block.temperature_net[-1].weight.normal_()
        x = torch.rand(1, 2, 14, 16, dtype=torch.float64)
        out = block(x)
        torch.testing.assert_close(out[:, :2], x)
        z = n3_aggregate_2d(x, block.embedding(x), block.temperature_net(x), 3, patch_size=4,
                            stride=2, window=5, score_norm=block.score_norm)
        torch.testing.assert_close(out, n3_output_2d(x, z))
        torch.testing.assert_close(out[:, 2:4], z[:, 0] - x)

    def test_temperature_starts_at_bias(self):
        block = N3Block2d(2, k=2, embed_features=4)
        x = torch.rand(1, 2, 20, 20)
        assert torch.count_nonzero(block.temperature_net(x)) == 0

    def test_backward_reaches_all_parameters(self):
        torch.manual_seed(0)
        block = N3Block2d(2, k=2, embed_features=4, patch_size=4, stride=2, window=5)
        block(torch.rand(2, 2, 16, 16)).pow(2).sum().backward()
        missing = [n for n, p in block.named_parameters() if p.grad is None]
        assert not missing

    def test_small_image_rejected_with_shape(self):
        with pytest.raises(ValueError, match=r"at least 80×80 px.*\(1, 8, 79, 100\)"):
            N3Block2d()(torch.rand(1, 8, 79, 100))

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [({"placement": "both"}, "placement"), ({"backend": "gpu"}, "backend"),
         ({"k": 0}, "k must be"), ({"temperature_bias": 0.0}, "temperature_bias")],
    )
    def test_bad_arguments(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            N3Block2d(**kwargs)

    def test_wrong_channels_rejected(self):
        with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
            N3Block2d()(torch.rand(1, 3, 80, 80))

    def test_function_input_errors(self):
        y = torch.rand(1, 2, 80, 80)
        with pytest.raises(ValueError, match="embedding must have shape"):
            n3_aggregate_2d(y, torch.rand(1, 2, 80, 81), None, 3)
        with pytest.raises(ValueError, match="log_temperature must have shape"):
            n3_aggregate_2d(y, y, torch.rand(1, 2, 80, 80), 3)
        with pytest.raises(ValueError, match="exceeds the 224 candidates"):
            n3_aggregate_2d(y, y, None, 225)


# --- Bad and unusual inputs (issue 9) -------------------------------------------------------

BLOCK_CONSTRUCTOR_CASES = [
    ({"k": 0}, ValueError, "k must be >= 1"),
    ({"k": 225}, ValueError, "k must be <= 224"),
    ({"k": 2.5}, TypeError, "k must be an int, got float"),
    ({"k": True}, TypeError, "k must be an int, got bool"),
    ({"in_channels": 0}, ValueError, "in_channels must be >= 1"),
    ({"in_channels": 8.0}, TypeError, "in_channels must be an int"),
    ({"patch_size": "10"}, TypeError, "patch_size must be an int, got str"),
    ({"stride": 0}, ValueError, "stride must be >= 1"),
    ({"window": 2.5}, TypeError, "window must be an int, got float"),
    ({"window": 0}, ValueError, "window must be >= 1"),
    ({"embed_channels": 0}, ValueError, "embed_channels must be >= 1"),
    ({"embed_features": -1}, ValueError, "embed_features must be >= 1"),
    ({"embed_depth": 1.5}, TypeError, "embed_depth must be an int"),
    ({"embed_features": 10**5}, ValueError, "refusing to build it"),
    ({"temperature_bias": 0.0}, ValueError, "temperature_bias must be positive"),
    ({"temperature_bias": 1e-40}, ValueError, "smallest normal float32"),
    ({"temperature_bias": float("inf")}, ValueError, "temperature_bias must be finite"),
    ({"temperature_bias": None}, TypeError, "temperature_bias must be a real number"),
    ({"temperature_net": "yes"}, TypeError, r"temperature_net must be a bool \(True or False\)"),
    ({"score_norm": 0}, TypeError, r"score_norm must be a bool \(True or False\)"),
    ({"differences": None}, TypeError, r"differences must be a bool \(True or False\)"),
    ({"placement": "both"}, ValueError, "placement must be one of 'official', 'paper'"),
    ({"backend": "gpu"}, ValueError, "backend must be one of 'fast', 'reference'"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), BLOCK_CONSTRUCTOR_CASES)
def test_block_constructor_exception_table(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        N3Block2d(**kwargs)


def _image(shape, value=None, where=None):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    if value is not None:
        x[where] = value
    return x


BLOCK_FORWARD_CASES = [
    (3.0, TypeError, "x must be a torch.Tensor, got float"),
    (torch.ones(1, 2, 16, 16, dtype=torch.int32), TypeError, "floating-point tensor"),
    (torch.rand(1, 3, 16, 16), ValueError, r"x must have shape \(B, 2, H, W\)"),
    (torch.rand(1, 2, 11, 16), ValueError, r"at least 12×12 px"),
    (_image((2, 2, 16, 16), float("nan"), (1, 1, 3, 4)), ValueError,
     r"x contains 1 non-finite \(NaN/Inf\) value\(s\) at pixels \(b, c, y, x\) "
     r"\(first at index \(1, 1, 3, 4\), value nan\)"),
    (_image((1, 2, 16, 16), float("inf"), (0, 0, 15, 0)), ValueError,
     r"first at index \(0, 0, 15, 0\), value inf\)"),
    (torch.full((1, 2, 16, 16), 1e30) * _image((1, 2, 16, 16)), OverflowError,
     "overflow float32 inside N3Block2d"),
]


@pytest.mark.parametrize("method", ["forward", "neighbours"])
@pytest.mark.parametrize(("x", "exc", "match"), BLOCK_FORWARD_CASES)
def test_block_forward_exception_table(x, exc, match, method):
    torch.manual_seed(0)
    block = N3Block2d(2, k=2, embed_features=4, patch_size=4, stride=2, window=5).eval()
    with torch.no_grad(), pytest.raises(exc, match=match):
        getattr(block, method)(x)


def test_block_nan_message_names_the_input_not_the_scores():
    block = N3Block2d().eval()
    with pytest.raises(ValueError, match=r"^x contains 1 non-finite \(NaN/Inf\).*value inf\)$"):
        block(_image((1, 8, 80, 80), float("inf"), (0, 3, 5, 7)))


@pytest.mark.parametrize("backend", ["fast", "reference"])
@pytest.mark.parametrize("train", [False, True])
def test_block_empty_batch_gives_empty_output(backend, train):
    block = N3Block2d(2, k=3, embed_features=4, patch_size=4, stride=2, window=5,
                      backend=backend).train(train)
    x = torch.rand(0, 2, 16, 18, requires_grad=True)
    out = block(x)
    assert out.shape == (0, 8, 16, 18)
    out.sum().backward()
    assert block.neighbours(x).shape == (0, 3, 2, 16, 18)
    y = torch.rand(0, 2, 80, 80)
    assert n3_aggregate_2d(y, y, None, 3, backend=backend).shape == (0, 3, 2, 80, 80)


def test_block_forward_does_not_revalidate_through_public_continuous_knn(monkeypatch):
    import n3seq.relaxation

    def public_path(*args, **kwargs):
        raise AssertionError("the public continuous_knn validated internal scores")

    monkeypatch.setattr(n3seq.relaxation, "_validate_scores", public_path)
    block = N3Block2d(2, k=2, embed_features=4, patch_size=4, stride=2, window=5)
    assert block(torch.rand(1, 2, 16, 16)).shape == (1, 6, 16, 16)
    assert block(torch.rand(1, 2, 16, 16), validate=False).shape == (1, 6, 16, 16)


def _aggregate_call(**kwargs):
    y = _image((1, 2, 16, 16))
    args = {"y": y, "embedding": y.clone(), "log_temperature": None, "k": 3,
            "patch_size": 4, "stride": 2, "window": 5}
    args.update(kwargs)
    return n3_aggregate_2d(args.pop("y"), args.pop("embedding"), args.pop("log_temperature"),
                           args.pop("k"), **args)


AGGREGATE_CASES = [
    ({"y": _image((1, 2, 16, 16), float("nan"), (0, 1, 2, 3))}, ValueError,
     r"^y contains 1 non-finite \(NaN/Inf\) value\(s\) at pixels \(b, c, y, x\) "
     r"\(first at index \(0, 1, 2, 3\), value nan\)"),
    ({"embedding": _image((1, 3, 16, 16), -float("inf"), (0, 2, 9, 9))}, ValueError,
     r"^embedding contains .* \(first at index \(0, 2, 9, 9\), value -inf\)"),
    ({"log_temperature": _image((1, 1, 16, 16), float("nan"), (0, 0, 0, 1))}, ValueError,
     r"^log_temperature contains .* \(first at index \(0, 0, 0, 1\), value nan\)"),
    ({"embedding": _image((1, 3, 16, 16)) * 1e30}, OverflowError,
     "overflow float32 inside n3_aggregate_2d"),
    ({"y": torch.ones(1, 2, 16, 16, dtype=torch.long)}, TypeError, "y must be a floating"),
    ({"embedding": torch.rand(1, 2, 16, 17)}, ValueError, "embedding must have shape"),
    ({"k": 2.5}, TypeError, "k must be an int, got float"),
    ({"k": 0}, ValueError, "k must be >= 1"),
    ({"k": 25}, ValueError, "exceeds the 24 candidates"),
    ({"window": 5.0}, TypeError, "window must be an int, got float"),
    ({"patch_size": True}, TypeError, "patch_size must be an int, got bool"),
    ({"stride": 5}, ValueError, "stride=5 > patch_size=4"),
    ({"temperature_bias": 1e-45}, ValueError, "smallest normal float32"),
    ({"temperature_bias": -1.0}, ValueError, "temperature_bias must be positive"),
    ({"placement": "Official"}, ValueError, "placement must be one of 'official', 'paper'"),
    ({"backend": None}, ValueError, "backend must be one of 'fast', 'reference'"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), AGGREGATE_CASES)
def test_aggregate_exception_table(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _aggregate_call(**kwargs)


def test_fast_backend_layout_is_built_on_the_host():
    # The tiling indices are made on the CPU (cache keys read there), so a forward pass on an
    # accelerator never copies device memory back; under a default-device context too.
    from n3seq_image.fast2d import _axis_layout

    layout = _axis_layout(20, 5, 8, torch.device("cpu"))
    assert isinstance(layout["span"], int)
    assert all(t.device.type == "cpu" for t in layout["host"].values())
    with torch.device("meta"):
        host = _axis_layout(20, 5, 8, torch.device("meta"))["host"]
    assert all(t.device.type == "cpu" for t in host.values())


class TestBackendChoice:
    """The image backends are chosen by the core's mechanism (n3seq._dispatch.choose_backend)."""

    def test_fast_where_the_stride_divides_the_patch_size(self):
        from n3seq_image.block2d import choose_backend_2d

        assert choose_backend_2d("fast", 10, 5) == "fast"
        assert choose_backend_2d("reference", 10, 5) == "reference"
        assert choose_backend_2d("fast", 7, 3) == "reference"

    def test_unknown_backend_is_named(self):
        from n3seq_image.block2d import choose_backend_2d

        with pytest.raises(ValueError, match="backend must be one of 'fast', 'reference'"):
            choose_backend_2d("tiled", 10, 5)

    def test_fast_path_is_the_three_stages(self, monkeypatch):
        # tiled distances -> the core relaxation -> tiled fold, each called once, in order
        from n3seq_image import block2d

        calls = []
        for name in ("tiled_distances", "relax_scores", "tiled_fold"):
            real = getattr(block2d, name)

            def spy(*args, _real=real, _name=name, **kwargs):
                calls.append(_name)
                return _real(*args, **kwargs)

            monkeypatch.setattr(block2d, name, spy)
        y = torch.rand(1, 2, 80, 80, dtype=torch.float64)
        n3_aggregate_2d(y, y, None, 2)
        assert calls == ["tiled_distances", "relax_scores", "tiled_fold"]
        calls.clear()
        n3_aggregate_2d(y, y, None, 2, backend="reference")
        assert calls == ["relax_scores"]
