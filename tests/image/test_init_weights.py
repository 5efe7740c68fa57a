"""``TrainConfig.init_weights`` / ``n3seq-image train --init-weights``: fine-tuning a run."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from n3seq_image.checkpoint import load_model
from n3seq_image.train import train
from tests.image.test_train import tiny_config


@pytest.fixture
def first_run(tmp_path):
    cfg = tiny_config(tmp_path, out=str(tmp_path / "first"), steps=3, bn_batches=0)
    train(cfg)
    return cfg, tmp_path / "first" / "model.safetensors"


def test_starts_from_the_given_weights(tmp_path, first_run):
    cfg, weights = first_run
    # lr so small that one Adam step cannot move a weight measurably: the result is the start.
    tuned = replace(cfg, out=str(tmp_path / "tuned"), steps=1, lr=1e-20, warmup_steps=0,
                    seed=5, init_weights=str(weights))
    fresh = replace(tuned, out=str(tmp_path / "fresh"), init_weights=None)
    train(tuned)
    train(fresh)
    start = load_model(weights).state_dict()
    a = load_model(tmp_path / "tuned" / "model.safetensors").state_dict()
    b = load_model(tmp_path / "fresh" / "model.safetensors").state_dict()
    params = [k for k in start if "running" not in k and "num_batches" not in k]
    assert all(torch.allclose(a[k], start[k], atol=1e-12) for k in params)
    assert not all(torch.allclose(b[k], start[k], atol=1e-6) for k in params)


def test_other_architecture_refused_before_anything_is_made(tmp_path, first_run):
    cfg, weights = first_run
    wider = replace(cfg, out=str(tmp_path / "wider"), init_weights=str(weights),
                    model_config={"depth": 3, "features": 16})
    with pytest.raises(ValueError, match=r"init_weights: .*first.*does not fit a dncnn"):
        train(wider)
    assert not (tmp_path / "wider").exists()


def test_other_model_refused(tmp_path, first_run):
    cfg, weights = first_run
    other = replace(cfg, out=str(tmp_path / "n3"), model="n3net", model_config={},
                    init_weights=str(weights))
    with pytest.raises(ValueError, match="holds a 'dncnn' model, this run trains a 'n3net'"):
        other.validate()


def test_missing_file(tmp_path):
    cfg = tiny_config(tmp_path, init_weights=str(tmp_path / "nope.safetensors"))
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        cfg.validate()


def test_cli_names_the_option(tmp_path, first_run):
    cfg, weights = first_run
    cmd = [sys.executable, "-m", "n3seq_image.cli", "train", "--model", "dncnn",
           "--model-config", '{"depth": 4, "features": 8}', "--data", cfg.data,
           "--out", str(tmp_path / "cli"), "--steps", "1", "--crop", "24",
           "--init-weights", str(weights), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "--init-weights" in done.stderr and "does not fit" in done.stderr
    assert not (tmp_path / "cli").exists()
