"""Tests that small deliberate bugs used to survive (issue 10, "mutation testing found them").

- ``differences=False`` of :class:`N3Block2d` ignored;
- the temperature CNN's layers permuted by the loader of the authors' checkpoints: the
  round-trip test's temperature CNN ends in a zero-initialised convolution, so its earlier
  layers never reach the output. Here every tensor of their schema is non-zero and distinct,
  and the loaded model is compared with one filled by hand, layer by layer.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from einops import rearrange

from n3seq_image import N3Block2d, N3Net

SCHEMA = Path(__file__).parent / "data" / "official_n3net_sigma25_state_dict_keys.txt"


def _nonzero_temperature_net(block: N3Block2d, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        last = block.temperature_net[-1]
        last.weight.copy_(0.2 * torch.randn(last.weight.shape, generator=g))
        last.bias.copy_(0.2 * torch.randn(last.bias.shape, generator=g))


@pytest.mark.parametrize("placement", ["official", "paper"])
def test_block2d_differences_false_gives_the_raw_neighbours(placement):
    torch.manual_seed(0)
    kwargs = {"k": 2, "patch_size": 4, "stride": 2, "window": 3, "embed_features": 8,
              "placement": placement}
    block = N3Block2d(2, **kwargs).eval()
    _nonzero_temperature_net(block, 1)
    raw = N3Block2d(2, differences=False, **kwargs).eval()
    raw.load_state_dict(block.state_dict())  # the same block but for the output form
    x = torch.rand(2, 2, 12, 14)
    with torch.no_grad():
        diff, out, neighbours = block(x), raw(x), block.neighbours(x)
    torch.testing.assert_close(out[:, :2], x)
    torch.testing.assert_close(out[:, 2:], rearrange(neighbours, "b k c h w -> b (k c) h w"))
    torch.testing.assert_close(diff[:, 2:], out[:, 2:] - x.repeat(1, 2, 1, 1))
    assert not torch.allclose(out[:, 2:], diff[:, 2:])


# --------------------------------------------------------------------------- authors' loader


def _schema() -> dict[str, tuple[int, ...]]:
    out = {}
    for line in SCHEMA.read_text().splitlines():
        key, shape = line.split(" ", 1)
        out[key] = tuple(int(v) for v in re.findall(r"\d+", shape))
    return out


def _their_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Every tensor of their schema, non-zero and distinct, at scales a forward pass survives."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in _schema().items():
        u = torch.rand(shape, generator=g)
        if key.endswith("running_var"):
            value = 0.5 + u
        elif len(shape) == 4:  # a convolution: He-like scale
            fan_in = shape[1] * shape[2] * shape[3]
            value = torch.randn(shape, generator=g) / fan_in**0.5
        elif key.endswith("weight"):  # a batch-norm scale
            value = 0.5 + u
        else:  # biases, running means
            value = 0.2 * (u - 0.5)
        state[key] = value.masked_fill(value == 0, 1e-3)
    return state


#: conv_net layer index → the same index in their ``embedcnn`` / ``tempcnn`` (conv, bn, …).
CNN_LAYERS = (0, 1, 3, 4, 6)
BN_FIELDS = ("weight", "bias", "running_mean", "running_var")


def _filled_by_hand(state: dict[str, torch.Tensor]) -> N3Net:
    """``N3Net(placement="official")`` with their tensors copied in module by module."""
    model = N3Net(placement="official")

    def put(module: torch.nn.Module, prefix: str) -> None:
        fields = BN_FIELDS if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d) \
            else ("weight", "bias")
        for name in fields:
            target = getattr(module, name)
            if target is None:
                assert f"{prefix}.{name}" not in state
                continue
            target.copy_(state[f"{prefix}.{name}"])

    with torch.no_grad():
        for i, stage in enumerate(model.stages):
            put(stage.head, f"blocks.{i}.conv1")
            for j, layer in enumerate(stage.body):
                if isinstance(layer, torch.nn.Conv2d | torch.nn.BatchNorm2d):
                    put(layer, f"blocks.{i}.layer1.{j}")
            put(stage.tail, f"blocks.{i}.conv2")
        for i, block in enumerate(model.n3blocks):
            for j in CNN_LAYERS:
                put(block.embedding[j], f"nls.{i}.embedcnn.{j}")
                put(block.temperature_net[j], f"nls.{i}.tempcnn.{j}")
            put(block.score_norm, f"nls.{i}.n3aggregation.aggregation.nnn.bn")
    return model.eval()


def test_every_their_tensor_lands_in_its_layer(tmp_path):
    state = _their_state()
    path = tmp_path / "theirs.pth"
    torch.save({"net": state, "epoch": 51}, path)
    loaded = N3Net.from_official_checkpoint(path)
    hand = _filled_by_hand(state)
    ours, expected = loaded.state_dict(), hand.state_dict()
    assert ours.keys() == expected.keys()
    wrong = [key for key in ours if not torch.equal(ours[key], expected[key])]
    assert not wrong, f"tensors not where the authors' layers are: {wrong}"


def test_the_temperature_cnn_reaches_the_output(tmp_path):
    state = _their_state(1)
    path = tmp_path / "theirs.pth"
    torch.save(state, path)
    loaded = N3Net.from_official_checkpoint(path)
    hand = _filled_by_hand(state)
    x = torch.rand(1, 1, 80, 84, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = loaded(x)
        torch.testing.assert_close(out, hand(x))
        # The path is visible: the first temperature map varies, and swapping two of its
        # layers of the same shape (its batch-norms 1 and 4) changes the output.
        stage = loaded.stages[0](x)
        log_t = loaded.n3blocks[0].temperature_net(stage)
        assert log_t.std() > 1e-3
        swapped = {**state, **{f"nls.0.tempcnn.1.{f}": state[f"nls.0.tempcnn.4.{f}"]
                               for f in BN_FIELDS},
                   **{f"nls.0.tempcnn.4.{f}": state[f"nls.0.tempcnn.1.{f}"] for f in BN_FIELDS}}
        assert not torch.allclose(_filled_by_hand(swapped)(x), out)
