"""Examples and benchmarks: results on stdout, progress bars on stderr."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAME_MARKS = ("\r", "it/s]", "s/it]", "%|")


def _run(args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300, check=False)


def test_sets_experiment_tiny_run_keeps_progress_off_stdout(tmp_path):
    pytest.importorskip("tqdm")
    out = tmp_path / "sets"
    done = _run(["examples/sets_experiment.py", "--steps", "6", "--batch", "2",
                 "--test-sets", "3", "--seed", "0", "1", "--no-plot", "--out", str(out)])
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [m for m in FRAME_MARKS if m in done.stdout], done.stdout[:500]
    assert "train sets:" in done.stderr  # the bars exist, on stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("| method | seed |") and lines[-1].startswith("done in")
    payload = json.loads((out / "results.json").read_text())
    assert {"commit", "machine", "wall_s"} <= set(payload["meta"])
    assert {r["seed"] for r in payload["rows"]} == {0, 1}
    summary = {(s["method"], s["outliers"]): s for s in payload["summary"]}
    with_all = [r["f1"] for r in payload["rows"]
                if r["method"] == "with N³" and r["outliers"] == "all"]
    assert summary[("with N³", "all")]["seeds"] == 2
    assert summary[("with N³", "all")]["f1_mean"] == pytest.approx(sum(with_all) / 2)


def test_progress_range_writes_its_bar_to_stderr(capsys):
    pytest.importorskip("tqdm")
    from n3seq._train_utils import progress_range

    assert list(progress_range(3, True, "bar test")) == [0, 1, 2]
    captured = capsys.readouterr()
    assert "bar test" in captured.err
    assert "bar test" not in captured.out
