"""The benchmark harness runs at tiny sizes and writes valid JSON (no timing assertions)."""

import json
import re

import pytest
import torch

from benchmarks.cases import CASES
from benchmarks.measure import peak_memory
from benchmarks.run import main, parse_args


@pytest.fixture
def keep_threads():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_sets_and_windows_suites_write_json(tmp_path, capsys, keep_threads):
    out = tmp_path / "bench.json"
    main(["--suites", "sets,windows,cuda", "--sizes", "64", "--window-sizes", "100",
          "--repeats", "1", "--budget", "0.001", "--no-memory", "--out", str(out)])
    payload = json.loads(out.read_text())
    rows = payload["results"]
    assert {r["suite"] for r in rows} == {"sets", "windows"}
    for row in rows:
        assert row["result"]["median_s"] > 0, row
        assert row["result"]["ratio"] > 0, row
    assert all(r["result"]["ratio"] == 1.0 for r in rows if r["baseline"])
    assert payload["meta"]["threads"] == 2
    captured = capsys.readouterr()
    printed = captured.out
    assert "hard kNN [baseline]" in printed
    progress = re.compile(r"^\[\d+/\d+\] ", flags=re.M)  # "[3/13] sets N=64: ..."
    assert progress.search(captured.err) and not progress.search(printed)  # stderr only
    assert not list(tmp_path.glob("*.tmp"))  # written atomically

    from benchmarks.report import main as report

    report([str(out)])
    markdown = capsys.readouterr().out
    assert "| sets N=64 | hard kNN (baseline) |" in markdown
    assert "1.00×" in markdown
    assert "PSNR" not in markdown and "s/MP" not in markdown  # denoise columns only for it
    assert {"commit", "machine"} <= set(payload["meta"])

    docs = tmp_path / "docs.json"
    assert report([str(out), "--suites", "windows", "--docs-json", str(docs)]) == 0
    written = json.loads(docs.read_text())
    assert written["meta"]["commit"] == payload["meta"]["commit"]
    assert {r["suite"] for r in written["rows"]} == {"windows"}
    assert all(r["ratio"].endswith("×") and r["median_s"] > 0 for r in written["rows"])
    assert "| sets N=64" not in capsys.readouterr().out  # --suites filters the table too


def test_denoise_suite_rows_carry_psnr_dtype_and_seconds_per_megapixel(tmp_path, capsys,
                                                                       keep_threads):
    pytest.importorskip("n3seq_image")
    from n3seq_image.precision import bf16_supported

    out = tmp_path / "bench.json"
    # One thread: two-thread barriers of small convolutions crawl on a loaded machine.
    main(["--suites", "denoise", "--quick", "--repeats", "1", "--budget", "0.001",
          "--no-memory", "--threads", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["results"]
    groups: dict = {}
    for row in rows:
        groups.setdefault(row["group"], {})[row["params"]["precision"]] = row
    assert set(groups) == {"denoise 128x128", "denoise 160x160"}
    compared, alone = groups["denoise 128x128"], groups["denoise 160x160"]
    assert set(compared) == {"float32", "auto", "bfloat16"} and set(alone) == {"auto"}
    assert [p for p, r in compared.items() if r["baseline"]] == ["float32"]
    auto_dtype = "bfloat16" if bf16_supported("cpu") else "float32"
    expected = {"float32": "float32", "auto": auto_dtype, "bfloat16": "bfloat16"}
    base = compared["float32"]["result"]
    for precision, row in [*compared.items(), ("auto", alone["auto"])]:
        r = row["result"]
        assert r["dtype"] == expected[precision], row
        side = row["params"]["height"]
        assert r["megapixels"] == side * side / 1e6 and r["tiles"] == 1
        assert r["s_per_mp"] == pytest.approx(r["median_s"] / r["megapixels"])
        assert r["psnr_db"] > r["psnr_noisy_db"] + 3, row  # the shipped model denoises
    for r in (row["result"] for row in compared.values()):
        assert r["psnr_delta_db"] == pytest.approx(r["psnr_db"] - base["psnr_db"])
        assert abs(r["psnr_delta_db"]) < 0.1  # bf16 convolutions, float32 N³ matching
    assert "ratio" not in alone["auto"]["result"]  # no float32 beside it by default
    assert "psnr_delta_db" not in alone["auto"]["result"]
    assert "PSNR dB" in capsys.readouterr().out

    from benchmarks.report import main as report

    docs = tmp_path / "docs.json"
    assert report([str(out), "--docs-json", str(docs)]) == 0
    markdown = capsys.readouterr().out
    assert "| s/MP | dtype | PSNR (dB) | Δ PSNR vs float32 (dB) |" in markdown
    line = next(x for x in markdown.splitlines() if "| denoise 128x128 | precision auto" in x)
    assert f"| {auto_dtype} |" in line
    assert f"| {compared['auto']['result']['psnr_db']:.2f} |" in line
    baseline_line = next(x for x in markdown.splitlines() if "float32 (baseline)" in x)
    assert baseline_line.endswith("| +0.000 |")
    written = json.loads(docs.read_text())["rows"]
    assert len(written) == 4
    for row in written:
        assert {"per_mp", "dtype", "psnr", "psnr_delta", "s_per_mp", "psnr_db"} <= set(row)
        assert float(row["psnr"]) == pytest.approx(row["psnr_db"], abs=0.005)
    assert sum("psnr_delta_db" in row for row in written) == 3


def test_denoise_suite_sizes_and_float32_beside_the_default():
    from benchmarks.run import build_jobs

    def groups(*argv):
        jobs, _ = build_jobs(parse_args(["--suites", "denoise", *argv]))
        out: dict = {}
        for job in jobs:
            out.setdefault(job.group, []).append((job.label, job.baseline))
        return out

    default = groups()
    assert set(default) == {"denoise 1024x1024", "denoise 2000x2000"}
    assert len(default["denoise 1024x1024"]) == 3
    assert default["denoise 2000x2000"] == [("precision auto (default)", False)]
    beside = groups("--denoise-baseline")["denoise 2000x2000"]
    assert beside == [("precision float32", True), ("precision auto (default)", False)]
    assert set(groups("--denoise-auto-sizes", "")) == {"denoise 1024x1024"}
    # a size in both lists is compared once, with all three precisions
    assert groups("--denoise-sizes", "96x96", "--denoise-auto-sizes", "96x96,100x80") == {
        "denoise 96x96": default["denoise 1024x1024"],
        "denoise 100x80": [("precision auto (default)", False)]}


def test_photo_mosaic_is_a_deterministic_natural_image():
    pytest.importorskip("skimage")
    import numpy as np

    from benchmarks.cases import photo_mosaic

    image = photo_mosaic(300, 517)
    assert image.shape == (300, 517) and image.dtype == np.float32
    np.testing.assert_array_equal(image, photo_mosaic(300, 517))
    assert not np.array_equal(image, photo_mosaic(300, 517, seed=1))
    np.testing.assert_allclose(image * 255, np.round(image * 255), atol=1e-4)  # 8-bit levels
    assert 0 <= image.min() and image.max() <= 1
    cells = [image[:256, :256], image[:256, 256:512], image[256:, :256]]
    assert all(c.std() > 0.05 for c in cells)  # photo content, not flat
    assert not np.array_equal(cells[0][:44], cells[1][:44, :256])
    with pytest.raises(ValueError, match="cell must be <= 300"):
        photo_mosaic(64, 64, cell=400)
    with pytest.raises(ValueError, match="height"):
        photo_mosaic(0, 64)


def test_report_help_and_a_missing_file(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "benchmarks.report", "--help"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m benchmarks.report")
    assert "--docs-json" in done.stdout

    from benchmarks.report import main as report

    missing = tmp_path / "nope.json"
    with pytest.raises(SystemExit):
        report(["--no-such-option"])
    assert report([str(missing)]) == 2
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert report([str(tmp_path / "bad.json")]) == 2


def test_cuda_suite_skips_cleanly_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the cuda suite runs instead of skipping")
    args = parse_args(["--suites", "cuda", "--out", str(tmp_path / "b.json")])
    from benchmarks.run import build_jobs

    jobs, skipped = build_jobs(args)
    assert jobs == []
    assert "no CUDA" in skipped["cuda"]


def test_peak_memory_in_a_fresh_process():
    result = peak_memory("sets_n3", {"n": 32, "e": 4, "f": 4, "k": 2}, threads=1)
    assert result["peak_mib"] >= result["before_mib"] > 0
    assert result["call_mib"] >= 0


def test_every_case_builds_at_tiny_size():
    tiny = {
        "sets_hard": {"n": 16, "e": 4, "f": 4, "k": 2},
        "sets_n3": {"n": 16, "e": 4, "f": 4, "k": 2, "grad": True},
        "sets_naive": {"n": 16, "e": 4, "f": 4, "k": 2, "grad": True},
        "sets_approx": {"n": 40, "e": 4, "f": 4, "k": 2, "num_candidates": 8},
        "windows_hard": {"n": 30, "radius": 2, "e": 4, "f": 4, "k": 2},
        "windows_n3": {"n": 30, "radius": 2, "e": 4, "f": 4, "k": 2, "grad": True},
        "sets_floor": {"n": 16, "e": 4, "f": 4, "k": 2, "exps": True},
    }
    for name, params in tiny.items():
        CASES[name](**params)()


def test_image_and_train_cases_build_in_both_memory_formats():
    pytest.importorskip("n3seq_image")
    for cl in (False, True):
        CASES["image_n3net"](80, 80, channels_last=cl)()
        CASES["image_n3net"](80, 80, without_n3=True, block_cnns=True, channels_last=cl)()
        CASES["train_step"]("n3net-cnns", batch=1, size=80, channels_last=cl)()


def test_floor_network_has_the_n3net_output_shape():
    pytest.importorskip("n3seq_image")
    from benchmarks.cases import WithoutN3, _n3net

    net = _n3net(depth=2, features=4, embed_features=4).eval()
    x = torch.rand(1, 1, 80, 80)
    with torch.no_grad():
        for floor in (WithoutN3(net), WithoutN3(net, block_cnns=True)):
            assert floor(x).shape == net(x).shape


def test_bad_suite_name():
    with pytest.raises(SystemExit):
        parse_args(["--suites", "sets,gpu"])

