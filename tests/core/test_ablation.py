"""Equal-budget ablation helpers: parameter counting and width matching."""

import torch
from torch import nn

from n3seq.ablation import DenseResidual, N3Residual, count_parameters, matching_width


def test_count_parameters_counts_trainable_only():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[1].weight.requires_grad_(False)
    assert count_parameters(model) == (3 * 4 + 4) + 2


def test_matching_width_is_the_closest_width():
    target = count_parameters(nn.Sequential(nn.Linear(8, 16), N3Residual(16, k=4)))

    def build(w):
        return nn.Sequential(nn.Linear(8, w), DenseResidual(w))

    width = matching_width(target, build, widths=range(4, 200))
    best = min(range(4, 200), key=lambda w: abs(count_parameters(build(w)) - target))
    assert abs(count_parameters(build(width)) - target) == abs(count_parameters(build(best)) - target)


def test_residual_stages_keep_shape_and_respect_masks():
    torch.manual_seed(0)
    h = torch.randn(2, 20, 6)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 15:] = False
    for stage in (N3Residual(6, k=3), N3Residual(6, k=3, radius=3), DenseResidual(6)):
        out = stage(h, mask)
        assert out.shape == h.shape
        torch.testing.assert_close(stage(h[1:, :15]), out[1:, :15])
