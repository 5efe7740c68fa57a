"""scripts/merge_results.py: evaluate JSON files pivoted into one docs table."""

import json
from pathlib import Path

import pytest

from tests._scripts import load_script

merge_results = load_script("merge_results")


def _meta(commit: str) -> dict:
    return {"commit": commit, "dirty": [], "machine": "Test CPU", "date": f"2026-01-0{commit[-1]}",
            "wall_s": 1.5, "command": "x"}


def _sr(path: Path, data: str, scale: int, method: str, psnr: float, commit: str = "c1") -> Path:
    doc = {"meta": _meta(commit), "task": "sr", "data": f"/some/where/{data}", "scale": scale,
           "summary": [{"method": "bicubic", "psnr": 30.0 - scale, "ssim": 0.8},
                       *([{"method": method, "psnr": psnr, "ssim": 0.9}] if method else [])]}
    path.write_text(json.dumps(doc))
    return path


def _denoise(path: Path, sigma: float, noise: str, psnr: float, noisy: float = 20.0) -> Path:
    doc = {"meta": _meta("c2"), "data": "set12", "sigma": sigma, "noise": noise,
           "summary": [{"method": "noisy", "psnr": noisy, "ssim": 0.4},
                       {"method": "bm3d", "psnr": psnr, "ssim": 0.85}]}
    path.write_text(json.dumps(doc))
    return path


def test_sr_files_pivot_to_one_row_per_set_and_method(tmp_path):
    files = [_sr(tmp_path / "a.json", "set5", 2, "vdsr", 37.1),
             _sr(tmp_path / "b.json", "set5", 4, "vdsr", 31.2),
             _sr(tmp_path / "c.json", "set14", 2, "vdsr", 33.0, commit="c3")]
    doc = merge_results.merge(files)
    rows = {(r["set"], r["method"]): r for r in doc["rows"]}
    assert list(rows) == [("set5", "bicubic"), ("set5", "vdsr"), ("set14", "bicubic"),
                          ("set14", "vdsr")]
    assert rows["set5", "vdsr"]["psnr_x2"] == 37.1 and rows["set5", "vdsr"]["psnr_x4"] == 31.2
    assert rows["set5", "bicubic"]["cell_x4"] == "26.00 / 0.8000"
    assert "psnr_x4" not in rows["set14", "vdsr"] and rows["set14", "vdsr"]["cell_x4"] == "–"
    assert doc["meta"]["commit"] == "c1, c3"
    assert doc["meta"]["wall_s"] == 4.5 and len(doc["meta"]["sources"]) == 3
    assert "command" not in doc["meta"]


def test_denoise_rows_are_keyed_by_noise_and_sigma(tmp_path):
    files = [_denoise(tmp_path / "a.json", 25, "gaussian", 29.9),
             _denoise(tmp_path / "b.json", 15, "gaussian", 32.1, noisy=24.6),
             _denoise(tmp_path / "c.json", 25, "clipped", 29.5, noisy=20.3)]
    rows = merge_results.merge(files)["rows"]
    bm3d = {r["noise"]: r for r in rows if r["method"] == "bm3d"}
    assert bm3d["gaussian"]["psnr_s25"] == 29.9 and bm3d["gaussian"]["psnr_s15"] == 32.1
    assert bm3d["clipped"]["psnr_s25"] == 29.5 and "psnr_s15" not in bm3d["clipped"]


def test_the_shared_noisy_row_is_kept_once_but_a_different_value_is_an_error(tmp_path):
    same = [_denoise(tmp_path / "a.json", 25, "gaussian", 29.9),
            _denoise(tmp_path / "b.json", 25, "gaussian", 29.9)]
    with pytest.raises(ValueError, match=r"b\.json: set12 / bm3d at s25 appears twice"):
        merge_results.merge([*same[:1], _denoise(tmp_path / "b.json", 25, "gaussian", 28.0)])
    other = _denoise(tmp_path / "c.json", 25, "gaussian", 29.9, noisy=20.5)
    with pytest.raises(ValueError, match=r"noisy at s25 .*20\.0000 and 20\.5000"):
        merge_results.merge([same[0], other])


def test_main_writes_atomically_and_reports_bad_input(tmp_path, capsys):
    good = _sr(tmp_path / "a.json", "set5", 3, "", 0.0)
    out = tmp_path / "out" / "sr.json"
    assert merge_results.main([str(good), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["rows"][0]["psnr_x3"] == 27.0
    assert not list(out.parent.glob("*.tmp*"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"meta": _meta("c1"), "rows": []}))
    before = out.read_text()
    assert merge_results.main([str(bad), "--out", str(out)]) == 2
    assert "bad.json: not an `n3seq-image evaluate --json` file" in capsys.readouterr().err
    assert out.read_text() == before
