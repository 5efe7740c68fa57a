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


def _tiny_speech_corpus(root: Path) -> None:
    import torch

    soundfile = pytest.importorskip("soundfile")
    g = torch.Generator().manual_seed(0)

    def utterance(seconds: float) -> torch.Tensor:
        t = torch.arange(int(16000 * seconds)) / 16000
        f0 = 100 + 200 * torch.rand(1, generator=g)
        return 0.3 * torch.sin(2 * torch.pi * f0 * t) * torch.sin(2 * torch.pi * 2 * t).abs()

    manifest: dict = {"sample_rate": 16000, "train": [], "babble": [], "test": []}
    for pool, n in (("train", 3), ("babble", 2)):
        for i in range(n):
            (root / pool).mkdir(parents=True, exist_ok=True)
            soundfile.write(str(root / pool / f"{i}.wav"), utterance(1.0).numpy(), 16000)
            manifest[pool].append({"file": f"{pool}/{i}.wav"})
    for kind in ("white", "pink", "babble"):
        (root / "test" / kind).mkdir(parents=True)
        clean = utterance(0.6)
        noisy = clean + 0.05 * torch.randn(clean.shape, generator=g)
        soundfile.write(str(root / "test" / kind / "0_clean.wav"), clean.numpy(), 16000)
        soundfile.write(str(root / "test" / kind / "0_noisy.wav"), noisy.numpy(), 16000)
        manifest["test"].append({"file": f"test/{kind}/0", "noise": kind, "snr_db": 5.0})
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_audio_experiment_tiny_run_writes_renderable_results(tmp_path):
    pytest.importorskip("matplotlib")
    corpus, results = tmp_path / "corpus", tmp_path / "results"
    _tiny_speech_corpus(corpus)
    done = _run(["examples/audio_denoising.py", str(corpus), str(results), "--steps", "2",
                 "--batch", "2", "--segment", "0.5", "--wiener-mixtures", "4"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [m for m in FRAME_MARKS if m in done.stdout], done.stdout[:500]
    assert "train:" in done.stderr
    payload = json.loads((results / "results.json").read_text())
    assert {"commit", "machine"} <= set(payload["meta"])
    methods = [r["method"] for r in payload["rows"]]
    assert methods[0] == "input SI-SDR (dB)" and len(methods) == 5
    assert set(payload["rows"][0]) == {"method", "white", "pink", "babble", "all"}
    assert "si_sdr_i" in payload and "paired_vs_local" in payload
    # one item per noise type: the standard error is null, never NaN
    json.loads((results / "results.json").read_text(),
               parse_constant=lambda c: pytest.fail(f"{c} in results.json"))
