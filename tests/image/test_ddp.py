"""Distributed data parallel on CPU: 2 gloo processes equal 1 process on the combined batch.

BatchNorm in training mode normalises with per-process batch statistics, so a BN network's
2-process gradients legitimately differ from the 1-process ones (SyncBatchNorm, GPU only,
would fix that). The equivalence is therefore checked on a DnCNN without BatchNorm; the
sharding, DDP's gradient averaging and the training loop are what is under test.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from n3seq_image import DnCNN
from n3seq_image.data import RandomCropDataset, shard_indices
from n3seq_image.train import TrainConfig, train
from tests.image._helpers import smooth_image, write_folder

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="torch.distributed's gloo backend is not built into this torch",
)

WORLD = 2
BATCH = 4
CONFIG = {"depth": 3, "features": 8, "batch_norm": False}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return DnCNN(1, 1, **CONFIG)


def dataset() -> RandomCropDataset:
    return RandomCropDataset([smooth_image(40, i) for i in range(3)], crop=24, sigma=25, seed=1)


def worker(rank: int, port: int, out_dir: str, cfg: TrainConfig) -> None:
    os.environ.update({
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
        "WORLD_SIZE": str(WORLD), "LOCAL_RANK": str(rank),
    })
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        # 1) one DDP step's gradients on this rank's shard of global batch 0
        net = DistributedDataParallel(make_model())
        noisy, clean = dataset().batch(shard_indices(0, BATCH, rank, WORLD))
        nn.functional.mse_loss(net(noisy), clean).backward()
        if rank == 0:
            grads = {n: p.grad.contiguous() for n, p in net.module.named_parameters()}
            save_file(grads, os.path.join(out_dir, "ddp_grads.safetensors"))
        # 2) the full training loop under DDP (init_distributed reuses the group)
        train(cfg)
    finally:
        dist.destroy_process_group()


def ddp_config(tmp_path) -> TrainConfig:
    """4 steps of a small DnCNN on 3 images, written to ``tmp_path/ddp``."""
    data = write_folder(tmp_path / "data", count=3, size=40)
    return TrainConfig(
        data=str(data), out=str(tmp_path / "ddp"), model="dncnn", model_config=CONFIG,
        sigma="25", steps=4, batch_size=BATCH, crop=24, val_every=2, checkpoint_every=4,
        progress=False,
        # float32: bf16 autocast rounds each rank's half-batch activations differently from
        # the combined batch's, which the 1e-6 comparisons would see
        precision="float32",
    )


def test_two_processes_match_one(tmp_path):
    cfg = ddp_config(tmp_path)
    mp.spawn(worker, args=(free_port(), str(tmp_path), cfg), nprocs=WORLD, join=True)

    # gradients: 1 process on the combined batch
    model = make_model()
    noisy, clean = dataset().batch(shard_indices(0, BATCH))
    nn.functional.mse_loss(model(noisy), clean).backward()
    ddp_grads = load_file(str(tmp_path / "ddp_grads.safetensors"))
    for name, p in model.named_parameters():
        torch.testing.assert_close(ddp_grads[name], p.grad, rtol=1e-5, atol=1e-7)

    # training: 4 steps in 1 process reach the same weights as 4 DDP steps on 2 processes
    train(replace(cfg, out=str(tmp_path / "single")))
    from n3seq_image.checkpoint import load_model

    a = load_model(tmp_path / "ddp" / "model.safetensors").state_dict()
    b = load_model(tmp_path / "single" / "model.safetensors").state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6)


def nan_worker(rank: int, port: int, out_dir: str, cfg: TrainConfig) -> None:
    """Trains under DDP with a NaN in rank 1's shard of global step 2 only; each rank saves
    its own weights and step losses after every step."""
    from datetime import timedelta

    import n3seq_image.train as trainer

    os.environ.update({
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
        "WORLD_SIZE": str(WORLD), "LOCAL_RANK": str(rank),
    })
    torch.set_num_threads(1)
    # a short timeout: a rank that skipped the gradient all-reduce would hang the other
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
    batch, step = RandomCropDataset.batch, trainer.optimizer_step
    losses: list[float] = []

    def poisoned(self, indices):
        noisy, clean = batch(self, indices)
        if rank == 1 and indices.start == shard_indices(1, BATCH, 1, WORLD).start:
            clean = clean * float("nan")
        return noisy, clean

    def recorded(loss, model, *args):
        losses.append(step(loss, model, *args))
        weights = {n: p.detach().contiguous() for n, p in model.named_parameters()}
        weights["losses"] = torch.tensor(losses)
        save_file(weights, os.path.join(out_dir, f"rank{rank}.safetensors"))
        return losses[-1]

    RandomCropDataset.batch, trainer.optimizer_step = poisoned, recorded
    try:
        train(cfg)
    finally:
        RandomCropDataset.batch, trainer.optimizer_step = batch, step
        dist.destroy_process_group()


def test_a_non_finite_loss_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    cfg = ddp_config(tmp_path)
    mp.spawn(nan_worker, args=(free_port(), str(tmp_path), cfg), nprocs=WORLD, join=True)

    log = json.loads((tmp_path / "ddp" / "log.json").read_text())
    assert [row["skipped"] for row in log] == [1, 1]  # step 2 skipped, once
    a = load_file(str(tmp_path / "rank0.safetensors"))
    b = load_file(str(tmp_path / "rank1.safetensors"))
    for losses in (a.pop("losses"), b.pop("losses")):  # rank 0's own loss was finite
        assert len(losses) == 4 and losses[1].isnan() and losses[[0, 2, 3]].isfinite().all()
    for key in a:
        assert torch.isfinite(a[key]).all(), key
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)  # the ranks stay in step
