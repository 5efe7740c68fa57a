"""Training data, checkpoints (atomic, resumable) and a tiny training run."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
from dataclasses import replace

import numpy as np
import pytest
import torch

import n3seq_image.checkpoint as ckpt_mod
from n3seq_image import DnCNN
from n3seq_image.checkpoint import (
    atomic_write,
    latest_checkpoint,
    load_checkpoint,
    load_model,
    read_weights,
    save_checkpoint,
    save_weights,
)
from n3seq_image.data import RandomCropDataset, load_image, parse_sigma, shard_indices
from n3seq_image.train import TrainConfig, learning_rate, parameter_groups, train
from tests.image._helpers import smooth_image, write_folder

TINY = {"depth": 3, "features": 8}


def tiny_config(tmp_path, **kw) -> TrainConfig:
    data = write_folder(tmp_path / "data", count=3, size=40)
    base = TrainConfig(
        data=str(data), out=str(tmp_path / "run"), model="dncnn", model_config=TINY,
        sigma="25", steps=6, batch_size=4, crop=24, lr=1e-3, val_data=str(data),
        val_images=2, val_crop=32, val_every=2, checkpoint_every=3, progress=False,
    )
    return replace(base, **kw)


class TestSigma:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [("25", (25, 25)), (15, (15, 15)), ("0-55", (0, 55)), ((10, 20), (10, 20))],
    )
    def test_parse(self, text, expected):
        assert parse_sigma(text) == expected

    @pytest.mark.parametrize("bad", ["abc", "-5", "300", "50-10", "1-2-3"])
    def test_rejects(self, bad):
        with pytest.raises(ValueError, match="sigma"):
            parse_sigma(bad)

    @pytest.mark.parametrize(("text", "expected"), [
        ("1e-3", (1e-3, 1e-3)), ("2.5E+1", (25, 25)), ("1e-3-5", (1e-3, 5)), ("0:55", (0, 55)),
        (" 7 ", (7, 7)),
    ])
    def test_exponents_are_numbers_not_ranges(self, text, expected):
        assert parse_sigma(text) == pytest.approx(expected)

    @pytest.mark.parametrize(("bad", "message"), [
        ("-5", "noise level in [0, 255]"), ("nan", "noise level in [0, 255]"),
        ("inf", "noise level in [0, 255]"), (True, "must be a number"),
        ("50-10", "range must have 0 <= low <= high"), ("abc", "a number or a range"),
    ])
    def test_messages(self, bad, message):
        with pytest.raises(ValueError, match=re.escape(message)) as exc:
            parse_sigma(bad)
        if bad in ("-5", "nan", "inf"):  # one value: the message does not talk about ranges
            assert "range" not in str(exc.value)


class TestRandomCrops:
    def test_shapes_and_determinism(self):
        images = [smooth_image(50, 0), smooth_image(60, 1)]
        a = RandomCropDataset(images, crop=32, sigma=25, seed=7)
        b = RandomCropDataset(images, crop=32, sigma=25, seed=7)
        noisy, clean = a.batch(range(5, 9))
        assert noisy.shape == clean.shape == (4, 1, 32, 32)
        assert torch.equal(noisy, b.batch(range(5, 9))[0])
        assert not torch.equal(noisy, RandomCropDataset(images, 32, 25, seed=8).batch(range(5, 9))[0])

    def test_noise_level_and_no_clipping(self):
        ds = RandomCropDataset([np.zeros((80, 80), np.float32)], crop=80, sigma=25)
        noisy, clean = ds.batch(range(8))
        assert (noisy - clean).std().item() == pytest.approx(25 / 255, rel=0.02)
        assert noisy.min() < 0  # noise is not clipped

    def test_sigma_range(self):
        ds = RandomCropDataset([np.zeros((40, 40), np.float32)], crop=40, sigma="0-50")
        stds = [float(np.std(ds.sample(i)[0])) * 255 for i in range(40)]
        assert 0 <= min(stds) < 20 and 30 < max(stds) <= 52

    def test_crops_come_from_the_image_with_flips_and_rotations(self):
        img = np.arange(36, dtype=np.float32).reshape(6, 6) / 36
        ds = RandomCropDataset([img], crop=6, sigma=0)
        variants = {ds.sample(i)[1].tobytes() for i in range(64)}
        assert len(variants) == 8  # the dihedral group of the square
        assert all(
            np.array_equal(np.sort(np.frombuffer(v, np.float32)), np.sort(img.ravel()))
            for v in variants
        )

    def test_quantized_share(self):
        img = smooth_image(40, 0)
        plain = RandomCropDataset([img], crop=40, sigma=25, seed=3)
        mixed = RandomCropDataset([img], crop=40, sigma=25, seed=3, quantized_share=0.5)
        quantized = 0
        for i in range(40):
            (a, clean_a), (b, clean_b) = plain.sample(i), mixed.sample(i)
            assert np.array_equal(clean_a, clean_b)
            if np.array_equal(a, b):
                continue
            # the same noisy sample, clipped and rounded to 8 bits
            assert np.array_equal(b, np.round(np.clip(a, 0, 1) * 255) / 255)
            assert b.min() >= 0 and b.max() <= 1
            quantized += 1
        assert 10 <= quantized <= 30
        with pytest.raises(ValueError, match="quantized_share"):
            RandomCropDataset([img], crop=40, quantized_share=2.0)

    def test_crop_larger_than_image(self):
        with pytest.raises(ValueError, match="crop=80"):
            RandomCropDataset([np.zeros((50, 90), np.float32)], crop=80)

    def test_shards_union_is_the_global_batch(self):
        shards = [list(shard_indices(3, 8, r, 2)) for r in range(2)]
        assert shards[0] + shards[1] == list(shard_indices(3, 8))
        with pytest.raises(ValueError, match="multiple of the world size"):
            shard_indices(0, 7, 0, 2)

    def test_train400(self, shared_data):
        folder = shared_data / "train400"
        if not folder.is_dir():
            pytest.skip(f"{folder} absent")
        assert load_image(sorted(folder.glob("*.png"))[0]).shape == (180, 180)
        noisy, clean = RandomCropDataset(folder, crop=80, sigma=25).batch(range(2))
        assert noisy.shape == (2, 1, 80, 80) and 0 <= clean.min() and clean.max() <= 1


class TestOptimiser:
    def test_no_weight_decay_on_biases(self):
        model = DnCNN(1, 1, depth=3, features=4)
        decay, no_decay = parameter_groups(model, 1e-4)
        assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0
        assert all(p.dim() == 4 for p in decay["params"])
        bias_ids = {id(m.bias) for m in model.modules() if getattr(m, "bias", None) is not None}
        assert bias_ids <= {id(p) for p in no_decay["params"]}

    def test_exponential_decay(self):
        cfg = TrainConfig(data="x", out="y", lr=1e-3, lr_decay=0.1, lr_decay_steps=100,
                          schedule="exponential")
        assert learning_rate(cfg, 0) == pytest.approx(1e-3)
        assert learning_rate(cfg, 100) == pytest.approx(1e-4)
        assert learning_rate(cfg, 50) == pytest.approx(1e-3 * 0.1**0.5)

    def test_warmup_then_cosine(self):
        cfg = TrainConfig(data="x", out="y", lr=1e-3, steps=1100, warmup_steps=100,
                          min_lr_ratio=0.01)
        assert learning_rate(cfg, 0) == pytest.approx(1e-5)
        assert learning_rate(cfg, 50) == pytest.approx(1e-5 + 0.99e-3 * 0.5)
        assert learning_rate(cfg, 100) == pytest.approx(1e-3)
        # halfway through the decay: the mean of peak and floor
        assert learning_rate(cfg, 600) == pytest.approx((1e-3 + 1e-5) / 2)
        assert learning_rate(cfg, 1100) == pytest.approx(1e-5)
        rates = [learning_rate(cfg, s) for s in range(100, 1101)]
        assert all(a >= b for a, b in itertools.pairwise(rates))

    @pytest.mark.parametrize("field, value", [
        ("schedule", "linear"), ("warmup_steps", -1), ("min_lr_ratio", 1.5),
        ("quantized_share", -0.1), ("precision", "fp16"),
    ])
    def test_recipe_fields_are_checked(self, field, value):
        cfg = TrainConfig(data="x", out="y", **{field: value})
        with pytest.raises(ValueError, match=field if field != "precision" else "precision"):
            cfg.validate()


class TestAtomicWrites:
    def test_failed_write_leaves_nothing(self, tmp_path):
        target = tmp_path / "out.bin"

        def broken(p):
            p.write_bytes(b"partial")
            raise RuntimeError("disk full")

        with pytest.raises(RuntimeError, match="disk full"):
            atomic_write(target, broken)
        assert list(tmp_path.iterdir()) == []

    def test_written_file_has_the_usual_mode(self, tmp_path):
        import stat

        ckpt_mod.atomic_write_json(tmp_path / "a.json", {"x": 1})
        mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
        assert mode == ckpt_mod.default_mode()  # not mkstemp's private 0600
        assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}

    def test_failed_write_keeps_previous_file(self, tmp_path):
        target = tmp_path / "w.safetensors"
        save_weights(target, DnCNN(1, 1, depth=3, features=4))
        before = target.read_bytes()

        def broken(*args, **kwargs):
            raise OSError("no space left")

        import safetensors.torch

        orig = safetensors.torch.save_file
        safetensors.torch.save_file = broken
        try:
            with pytest.raises(OSError, match="no space"):
                save_weights(target, DnCNN(1, 1, depth=3, features=4))
        finally:
            safetensors.torch.save_file = orig
        assert target.read_bytes() == before
        assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]

    def test_crash_during_checkpoint_keeps_latest(self, tmp_path, monkeypatch):
        model = DnCNN(1, 1, depth=3, features=4)
        opt = torch.optim.Adam(model.parameters())
        save_checkpoint(tmp_path, model, opt, step=1)

        def crash(*args, **kwargs):
            raise RuntimeError("killed")

        monkeypatch.setattr(ckpt_mod, "save_weights", crash)
        with pytest.raises(RuntimeError, match="killed"):
            save_checkpoint(tmp_path, model, opt, step=2)
        assert latest_checkpoint(tmp_path).name == "step_0000001"
        assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_0000001"]


class TestWeights:
    def test_roundtrip(self, tmp_path):
        torch.manual_seed(0)
        model = DnCNN(1, 1, depth=3, features=4).eval()
        save_weights(tmp_path / "m.safetensors", model, extra={"sigma": "25"})
        loaded = load_model(tmp_path / "m.safetensors")
        x = torch.rand(1, 1, 16, 16)
        assert torch.equal(model(x), loaded(x))
        assert not loaded.training
        assert read_weights(tmp_path / "m.safetensors")[1]["extra"] == {"sigma": "25"}

    def test_rejects_non_safetensors(self, tmp_path):
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(b"\x80\x02pickle")
        with pytest.raises(ValueError, match="not a readable safetensors"):
            read_weights(bad)
        with pytest.raises(FileNotFoundError, match="not found"):
            read_weights(tmp_path / "missing.safetensors")

    def test_checkpoint_restores_optimizer_and_rng(self, tmp_path):
        model = DnCNN(1, 1, depth=3, features=4)
        opt = torch.optim.Adam(model.parameters(), lr=3e-4)
        model(torch.rand(2, 1, 8, 8)).sum().backward()
        opt.step()
        torch.manual_seed(123)
        save_checkpoint(tmp_path, model, opt, step=5, state={"note": "x"})
        expected_draw = torch.rand(3)
        model2 = DnCNN(1, 1, depth=3, features=4)
        opt2 = torch.optim.Adam(model2.parameters(), lr=1.0)
        doc = load_checkpoint(latest_checkpoint(tmp_path), model2, opt2)
        assert doc["step"] == 5 and doc["state"] == {"note": "x"}
        assert torch.equal(torch.rand(3), expected_draw)
        assert opt2.param_groups[0]["lr"] == 3e-4
        s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
        assert all(torch.equal(s1[i]["exp_avg"], s2[i]["exp_avg"]) for i in s1)


class TestTraining:
    def test_loss_falls(self, tmp_path):
        cfg = tiny_config(tmp_path, steps=40, val_every=5, checkpoint_every=40, lr=3e-3)
        summary = train(cfg)
        log = json.loads((tmp_path / "run" / "log.json").read_text())
        assert summary["step"] == 40 and len(log) == 8
        assert log[-1]["loss"] < 0.5 * log[0]["loss"]
        assert (tmp_path / "run" / "model.safetensors").is_file()
        assert (tmp_path / "run" / "log.csv").read_text().startswith("step,lr,loss,val_psnr")

    @pytest.mark.parametrize("schedule", ["cosine", "exponential"])
    def test_resume_gives_identical_continuation(self, tmp_path, schedule):
        straight = tiny_config(tmp_path, out=str(tmp_path / "a"), val_every=3,
                               schedule=schedule, warmup_steps=2)
        train(straight)
        if schedule == "cosine":  # the schedule spans `steps`: stop early instead
            first_half = replace(straight, out=str(tmp_path / "b"), stop_after=3)
            assert train(first_half)["step"] == 3
            train(replace(first_half, stop_after=0), resume=True)
        else:  # independent of `steps`: a run can be extended
            first_half = replace(straight, out=str(tmp_path / "b"), steps=3)
            train(first_half)
            train(replace(first_half, steps=6), resume=True)
        a = load_model(tmp_path / "a" / "model.safetensors").state_dict()
        b = load_model(tmp_path / "b" / "model.safetensors").state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
        log_a = json.loads((tmp_path / "a" / "log.json").read_text())
        log_b = json.loads((tmp_path / "b" / "log.json").read_text())
        assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]

    def test_stop_signal_checkpoints_the_finished_step(self, tmp_path, monkeypatch):
        straight = tiny_config(tmp_path, out=str(tmp_path / "a"), checkpoint_every=100)
        train(straight)
        batch = RandomCropDataset.batch

        def interrupted_batch(self, indices):
            if indices.start == 2 * straight.batch_size:  # during step 3
                os.kill(os.getpid(), signal.SIGTERM)
            return batch(self, indices)

        before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        monkeypatch.setattr(RandomCropDataset, "batch", interrupted_batch)
        piece = replace(straight, out=str(tmp_path / "b"))
        summary = train(piece)
        assert summary["step"] == 3 and summary["interrupted"] and not summary["finished"]
        assert read_weights(tmp_path / "b" / "model.safetensors")[1]["extra"]["finished"] is False
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
        monkeypatch.setattr(RandomCropDataset, "batch", batch)
        resumed = train(piece, resume=True)
        assert not resumed["interrupted"] and resumed["finished"]
        assert read_weights(tmp_path / "b" / "model.safetensors")[1]["extra"]["finished"] is True
        a = load_model(tmp_path / "a" / "model.safetensors").state_dict()
        b = load_model(tmp_path / "b" / "model.safetensors").state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)

    def test_ignored_signals_stay_ignored(self, monkeypatch):
        from n3seq_image.train import StopRequest

        monkeypatch.setattr(signal, "getsignal", lambda sig: signal.SIG_IGN)
        installed = []
        monkeypatch.setattr(signal, "signal", lambda sig, h: installed.append(sig))
        StopRequest.install().uninstall()
        assert installed == []

    def test_non_finite_steps_are_skipped(self, tmp_path, monkeypatch):
        batch = RandomCropDataset.batch
        bad_steps = {2, 4}

        def sometimes_nan(self, indices):
            noisy, clean = batch(self, indices)
            if indices.start // 4 + 1 in bad_steps:
                clean[0, 0, 0, 0] = float("nan")  # a NaN loss and gradient
            return noisy, clean

        monkeypatch.setattr(RandomCropDataset, "batch", sometimes_nan)
        cfg = tiny_config(tmp_path, steps=6, val_every=3)
        summary = train(cfg)
        log = json.loads((tmp_path / "run" / "log.json").read_text())
        assert summary["step"] == 6 and [r["skipped"] for r in log] == [1, 2]
        weights = load_model(tmp_path / "run" / "model.safetensors").state_dict()
        assert all(torch.isfinite(v).all() for v in weights.values())

        def always_nan(self, indices):
            noisy, clean = batch(self, indices)
            return noisy, clean * float("nan")

        monkeypatch.setattr(RandomCropDataset, "batch", always_nan)
        with pytest.raises(FloatingPointError, match="not finite in 10 steps in a row"):
            train(tiny_config(tmp_path, out=str(tmp_path / "nan"), steps=20))

    @pytest.mark.parametrize("decoupled", [False, True])
    def test_weight_decay_mode_reaches_adam(self, tmp_path, monkeypatch, decoupled):
        made = []

        class SpyAdam(torch.optim.Adam):
            def __init__(self, *args, **kwargs):
                made.append(kwargs)
                super().__init__(*args, **kwargs)

        monkeypatch.setattr("n3seq_image.train.torch.optim.Adam", SpyAdam)
        train(tiny_config(tmp_path, steps=1, decoupled_weight_decay=decoupled))
        assert [kw["decoupled_weight_decay"] for kw in made] == [decoupled]

    def test_resume_compares_settings_a_checkpoint_predates_with_their_default(self, tmp_path):
        cfg = tiny_config(tmp_path, steps=3)
        train(replace(cfg, stop_after=3, steps=6))
        state_file = tmp_path / "run" / "checkpoints" / "step_0000003" / "state.json"
        state = json.loads(state_file.read_text())
        del state["state"]["config"]["decoupled_weight_decay"]  # as written before the setting existed
        state_file.write_text(json.dumps(state))
        with pytest.raises(ValueError, match="decoupled_weight_decay"):
            train(replace(cfg, steps=6, decoupled_weight_decay=True), resume=True)
        assert train(replace(cfg, steps=6), resume=True)["step"] == 6

    def test_resume_errors(self, tmp_path):
        cfg = tiny_config(tmp_path, steps=3)
        with pytest.raises(FileNotFoundError, match="no checkpoint"):
            train(cfg, resume=True)
        train(cfg)
        with pytest.raises(ValueError, match="differs"):
            train(replace(cfg, steps=6, lr=0.5), resume=True)

    def test_bad_config(self, tmp_path):
        with pytest.raises(ValueError, match="model must be"):
            train(tiny_config(tmp_path, model="unet"))
        with pytest.raises(ValueError, match="batch_size"):
            train(tiny_config(tmp_path, batch_size=0))

    @pytest.mark.parametrize(("field", "value", "message"), [
        ("lr", float("inf"), "lr must be a finite number > 0"),
        ("lr", float("nan"), "lr must be a finite number > 0"),
        ("lr", -1e-3, "lr must be a finite number > 0"),
        ("lr_decay", -1.0, "lr_decay must be a finite number > 0 and <= 1"),
        ("lr_decay", 0.0, "lr_decay must be"),
        ("lr_decay", 1.5, "lr_decay must be"),
        ("weight_decay", float("inf"), "weight_decay must be a finite number >= 0"),
        ("decoupled_weight_decay", "yes", "decoupled_weight_decay must be True or False, got 'yes'"),
        ("sync_bn", 1, "sync_bn must be True or False, got 1"),
        ("max_minutes", float("nan"), "max_minutes must be"),
        ("val_crop", -5, "val_crop must be an integer >= 0"),
        ("val_images", 0, "val_images must be an integer >= 1"),
        ("seed", -1, "seed must be an integer >= 0"),
        ("steps", 2.5, "steps must be an integer >= 1"),
        ("steps", True, "steps must be an integer >= 1"),
        ("keep_checkpoints", -1, "keep_checkpoints must be an integer >= 0"),
        ("lr_decay_steps", 0, "lr_decay_steps must be an integer >= 1"),
        ("model_config", [1], "model_config must be a dict"),
        ("model_config", {"depth": 10**9}, "out of range"),
        ("model_config", {"nope": 1}, "unknown dncnn config key(s) ['nope']"),
    ])
    def test_every_field_checked_before_anything_is_made(self, tmp_path, field, value,
                                                         message):
        cfg = tiny_config(tmp_path, **{field: value})
        with pytest.raises(ValueError, match=re.escape(message)):
            train(cfg)
        assert not (tmp_path / "run").exists()

    @pytest.mark.parametrize("folder", ["missing", "empty"])
    def test_missing_or_empty_data_creates_nothing(self, tmp_path, folder):
        (tmp_path / "empty").mkdir()
        cfg = tiny_config(tmp_path, data=str(tmp_path / folder), val_data=None)
        with pytest.raises((FileNotFoundError, ValueError), match="image folder not found|no images"):
            train(cfg)
        assert not (tmp_path / "run").exists()
