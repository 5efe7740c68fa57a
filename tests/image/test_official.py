"""Loading the authors' released N3Net checkpoints, tested with synthetic state dicts.

The real files may not be redistributed; ``data/official_n3net_sigma25_state_dict_keys.txt``
lists their key names and shapes (copied from ``shared/reference``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from n3seq_image import N3Net
from n3seq_image.official import convert_official_state_dict, official_key

SCHEMA = Path(__file__).parent / "data" / "official_n3net_sigma25_state_dict_keys.txt"

# Their names for our parameters, written out independently of n3seq_image.official.
THEIRS = [
    (r"^stages\.(\d+)\.head\.", r"blocks.\1.conv1."),
    (r"^stages\.(\d+)\.body\.", r"blocks.\1.layer1."),
    (r"^stages\.(\d+)\.tail\.", r"blocks.\1.conv2."),
    (r"^n3blocks\.(\d+)\.embedding\.", r"nls.\1.embedcnn."),
    (r"^n3blocks\.(\d+)\.temperature_net\.", r"nls.\1.tempcnn."),
    (r"^n3blocks\.(\d+)\.score_norm\.", r"nls.\1.n3aggregation.aggregation.nnn.bn."),
]


def schema() -> dict[str, tuple[int, ...]]:
    out = {}
    for line in SCHEMA.read_text().splitlines():
        key, shape = line.split(" ", 1)
        out[key] = tuple(int(v) for v in re.findall(r"\d+", shape))
    return out


def to_theirs(model: N3Net) -> dict[str, torch.Tensor]:
    """A checkpoint in their naming, from ``model``'s state (plus their unused ``bn1``)."""
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue  # absent from their files
        for pattern, repl in THEIRS:
            if re.match(pattern, key):
                state[re.sub(pattern, repl, key)] = value.clone()
                break
        else:
            raise AssertionError(f"no rule for {key}")
    for i in range(3):
        for name in ("weight", "bias", "running_mean", "running_var"):
            state[f"blocks.{i}.bn1.{name}"] = torch.rand(64)
    return state


def randomised(seed: int = 0) -> N3Net:
    torch.manual_seed(seed)
    model = N3Net()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def test_our_names_map_onto_their_schema():
    theirs = to_theirs(N3Net())
    assert {k: tuple(v.shape) for k, v in theirs.items()} == schema()


def test_every_schema_key_is_consumed():
    state = {k: torch.randn(shape) for k, shape in schema().items()}
    for key in state:
        official_key(key)  # no KeyError
    ours = convert_official_state_dict(state)
    assert set(ours) == set(N3Net().state_dict())


def test_round_trip_gives_the_same_model(tmp_path):
    source = randomised()
    path = tmp_path / "net.pth"
    torch.save({"net": to_theirs(source), "epoch": 51}, path)
    loaded = N3Net.from_official_checkpoint(path)
    assert not loaded.training
    assert all(b.placement == "official" for b in loaded.n3blocks)
    x = torch.rand(1, 1, 80, 84)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x))


def test_bare_state_dict_accepted(tmp_path):
    path = tmp_path / "bare.pth"
    torch.save(to_theirs(N3Net()), path)
    assert isinstance(N3Net.from_official_checkpoint(path), N3Net)


def test_subnormals_are_flushed(tmp_path):
    state = to_theirs(N3Net())
    weight = state["blocks.0.layer1.0.weight"]
    weight.view(-1)[:100] = 1e-39
    weight.view(-1)[100] = 1e-30  # small but normal: kept
    path = tmp_path / "net.pth"
    torch.save({"net": state, "epoch": 1}, path)
    loaded = N3Net.from_official_checkpoint(path)
    w = loaded.stages[0].body[0].weight.view(-1)
    assert torch.count_nonzero(w[:100]) == 0 and w[100].item() == pytest.approx(1e-30)
    for p in loaded.state_dict().values():
        if p.is_floating_point():
            assert not ((p != 0) & (p.abs() < torch.finfo(p.dtype).tiny)).any()


def test_missing_key_named():
    state = to_theirs(N3Net())
    del state["nls.1.tempcnn.6.bias"]
    with pytest.raises(ValueError, match=r"missing 1 key.*n3blocks\.1\.temperature_net\.6\.bias"):
        convert_official_state_dict(state)


def test_unexpected_key_named():
    state = to_theirs(N3Net())
    state["nls.2.embedcnn.0.weight"] = torch.zeros(64, 8, 3, 3)  # a third N³ block
    state["decoder.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected 2 key.*decoder\.weight.*nls\.2\.embedcnn"):
        convert_official_state_dict(state)


def test_shape_mismatch_named():
    state = to_theirs(N3Net())
    state["blocks.2.conv2.weight"] = torch.zeros(3, 64, 3, 3)  # a colour model
    with pytest.raises(ValueError, match=r"blocks\.2\.conv2\.weight: \(3, 64, 3, 3\) \(expected "
                                         r"\(1, 64, 3, 3\)\)"):
        convert_official_state_dict(state)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        N3Net.from_official_checkpoint(tmp_path / "absent.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        N3Net.from_official_checkpoint(junk)
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    with pytest.raises(ValueError, match="holds no state dict"):
        N3Net.from_official_checkpoint(listing)


class _Arbitrary:
    """A class a checkpoint must not make us unpickle."""


@pytest.mark.parametrize("content", ["object", "text", "truncated"])
def test_errors_never_suggest_unsafe_loading(tmp_path, content):
    path = tmp_path / "bad.pth"
    if content == "object":
        torch.save({"net": _Arbitrary()}, path)
    elif content == "text":
        path.write_text("hello, I am not a checkpoint")
    else:
        torch.save({"net": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="not a readable torch checkpoint") as exc:
        N3Net.from_official_checkpoint(path)
    message = str(exc.value)
    assert "weights_only" not in message and "False" not in message
    assert "safe_globals" not in message and "\n" not in message
    if content == "object":
        assert "_Arbitrary" in message and "can run code" in message
    if content == "truncated":
        assert "truncated or corrupted" in message


def test_non_string_keys_are_named_not_crashed():
    with pytest.raises(ValueError, match=r"unexpected 1 key\(s\): \['1'\]"):
        convert_official_state_dict({1: torch.zeros(1)})
