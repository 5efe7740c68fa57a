"""N3Block: shapes, gradients, module equals functional composition, compile, autocast."""

import pytest
import torch
from einops import rearrange
from torch import nn

from n3seq import N3Block, knn_aggregate, window_candidates


def functional_n3(block: N3Block, x: torch.Tensor, mask=None) -> torch.Tensor:
    """The block written out by hand from the functional core."""
    emb = block.embedding(x)
    t = block.temperature_bias * block.temperature_net(x)[..., 0].exp()
    cands = None
    if block.radius is not None:
        lengths = None if mask is None else mask.sum(-1)
        cands = window_candidates(x.shape[1], block.radius, lengths)
    nb = knn_aggregate(emb, emb, x, block.k, t, candidates=cands, mask=mask, exclude_self=True)
    diffs = nb - x[:, :, None]
    return torch.cat([x, rearrange(diffs, "b t k d -> b t (k d)")], -1)


class TestN3Block:
    @pytest.mark.parametrize("radius", [None, 4])
    def test_shape(self, radius):
        block = N3Block(6, k=3, radius=radius)
        assert block(torch.randn(2, 20, 6)).shape == (2, 20, 24)
        assert block.out_dim == 24

    def test_first_slot_is_input_and_rest_are_differences(self):
        torch.manual_seed(0)
        x = torch.randn(1, 15, 4)
        block = N3Block(4, k=2)
        diff = block(x)
        raw = N3Block(4, k=2, differences=False)
        raw.load_state_dict(block.state_dict())  # the same weights: only the output differs
        torch.testing.assert_close(diff[..., :4], x)
        out = raw(x)
        torch.testing.assert_close(out[..., :4], x)
        torch.testing.assert_close(out[..., 4:], diff[..., 4:] + x.repeat(1, 1, 2))

    @pytest.mark.parametrize("radius", [None, 3])
    def test_module_equals_functional_composition(self, radius):
        torch.manual_seed(1)
        block = N3Block(5, k=3, radius=radius)
        nn.init.normal_(block.temperature_net[-1].weight, std=0.3)
        x = torch.randn(2, 17, 5)
        mask = torch.ones(2, 17, dtype=torch.bool)
        mask[1, 12:] = False
        # Padded tokens are zero tokens in the block: the composition sees them zeroed.
        zeroed = x * mask[..., None]
        torch.testing.assert_close(block(x, mask), functional_n3(block, zeroed, mask))

    def test_gradients_finite_for_all_parameters(self):
        torch.manual_seed(2)
        block = N3Block(4, k=5)
        x = torch.randn(3, 25, 4, requires_grad=True)
        block(x).square().mean().backward()
        assert torch.isfinite(x.grad).all()
        for name, p in block.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert block.temperature_net[-1].bias.grad.abs() > 0  # the temperature is learned

    def test_padding_mask_hides_padded_tokens(self):
        torch.manual_seed(3)
        block = N3Block(3, k=2)
        x = torch.randn(1, 12, 3)
        mask = torch.zeros(1, 12, dtype=torch.bool)
        mask[:, :8] = True
        y = block(x, mask)
        y_short = block(x[:, :8])
        torch.testing.assert_close(y[:, :8], y_short)
        x_changed = x.clone()
        x_changed[:, 8:] = 100.0
        torch.testing.assert_close(block(x_changed, mask)[:, :8], y_short)

    def test_custom_embedding_and_fixed_temperature(self):
        block = N3Block(4, k=2, embedding=nn.Identity(), temperature_net=False,
                        temperature_bias=0.5)
        x = torch.randn(1, 10, 4)
        expected = knn_aggregate(x, x, x, 2, 0.5, exclude_self=True) - x[:, :, None]
        torch.testing.assert_close(block(x)[..., 4:], rearrange(expected, "b t k d -> b t (k d)"))

    def test_bf16_autocast(self):
        block = N3Block(8, k=3)
        x = torch.randn(2, 30, 8)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = block(x)
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y.float(), block(x), atol=0.1, rtol=0.05)

    def test_torch_compile(self):
        torch.manual_seed(4)
        block = N3Block(4, k=2, radius=3)
        x = torch.randn(1, 16, 4)
        compiled = torch.compile(block, backend="aot_eager")
        torch.testing.assert_close(compiled(x), block(x))

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"k": 0}, "k must be >= 1"),
            ({"temperature_bias": 0.0}, "temperature_bias must be positive"),
            ({"radius": 1, "k": 3}, "radius must be >= 1 and give 2\\*radius >= k=3"),
        ],
    )
    def test_bad_config(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            N3Block(4, **kwargs)

    def test_bad_input(self):
        block = N3Block(4, k=2)
        with pytest.raises(ValueError, match=r"x must have shape \(B, T, D\), got \(10, 4\)"):
            block(torch.randn(10, 4))
        with pytest.raises(ValueError, match=r"x must have D=4 features, got shape \(1, 10, 5\)"):
            block(torch.randn(1, 10, 5))
        with pytest.raises(ValueError, match=r"x has T=2 tokens, fewer than k\+1=3"):
            block(torch.randn(1, 2, 4))
