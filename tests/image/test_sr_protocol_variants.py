"""scripts/sr_protocol_variants.py: the bicubic baseline under the protocol's rounding variants."""

from __future__ import annotations

import json

import numpy as np
import pytest

from n3seq_image.data import save_image
from n3seq_image.sr_evaluate import evaluate_sr
from tests._scripts import load_script

from ._helpers import smooth_image

variants_mod = load_script("sr_protocol_variants")


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    out = tmp_path / "hr"
    out.mkdir()
    for i, (h, w) in enumerate([(62, 63), (48, 50)]):
        rgb = np.stack([smooth_image(64, c + i) for c in range(3)], axis=-1)[:h, :w]
        save_image(out / f"im{i}.png", np.clip(rgb + 0.05 * rng.standard_normal(rgb.shape), 0, 1))
    save_image(out / "grey.png", smooth_image(40, 7)[:40, :39])
    return out


def test_protocol_row_is_the_evaluation(folder):
    rows = variants_mod.variants(folder, scales=(2, 3))
    protocol = [r for r in rows if r["protocol"]]
    assert len(rows) == 4 and len(protocol) == 1
    assert (protocol[0]["y"], protocol[0]["output"]) == ("8-bit", "8-bit")
    for s in (2, 3):
        expected = evaluate_sr({}, folder, s, progress=False)["mean"]["bicubic"]["psnr"]
        assert protocol[0][f"x{s}"] == pytest.approx(expected, abs=1e-9)


def test_variants_differ_and_stay_close(folder):
    rows = variants_mod.variants(folder, scales=(2,))
    values = [r["x2"] for r in rows]
    assert len({round(v, 9) for v in values}) == 4  # every rounding step changes the score
    assert max(values) - min(values) < 0.5


def test_cli_writes_a_renderable_json(folder, tmp_path):
    out = tmp_path / "variants.json"
    assert variants_mod.main([str(folder), "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert {"commit", "machine"} <= set(payload["meta"]) and len(payload["rows"]) == 4
    assert all({"x2", "x3", "x4"} <= set(r) for r in payload["rows"])
