"""Channels-last: the image networks compute the same function in either memory format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from n3seq_image import N3Block2d, N3Net, preferred_memory_format
from n3seq_image.denoise import denoise_tensor
from n3seq_image.memory_format import is_channels_last

CL = torch.channels_last


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=CL) and not x.is_contiguous()


def test_preferred_memory_format_by_device():
    assert preferred_memory_format("cpu") is CL
    assert preferred_memory_format(torch.device("cpu")) is CL
    assert preferred_memory_format("cuda") is torch.contiguous_format
    assert preferred_memory_format("meta") is torch.contiguous_format


def test_is_channels_last():
    x = torch.rand(2, 3, 5, 6)
    assert not is_channels_last(x)
    assert is_channels_last(x.contiguous(memory_format=CL))
    # One channel: both layouts at once, so it tells nothing about the network's format.
    assert not is_channels_last(torch.rand(2, 1, 5, 6).contiguous(memory_format=CL))
    assert not is_channels_last(torch.rand(3, 5, 6))


@pytest.mark.parametrize("backend", ["fast", "reference"])
def test_block_keeps_channels_last_and_its_values(backend):
    torch.manual_seed(0)
    block = N3Block2d(in_channels=3, k=2, embed_features=4, backend=backend).double().eval()
    x = torch.rand(1, 3, 80, 85, dtype=torch.float64)
    ref = block(x)
    out = block.to(memory_format=CL)(x.contiguous(memory_format=CL))
    assert _is_channels_last(out)
    assert not _is_channels_last(ref)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_n3net_channels_last_equals_contiguous_in_values_and_gradients():
    torch.manual_seed(0)
    net = N3Net(depth=2, features=6, embed_features=4, k=2).double().train()
    x = torch.rand(2, 1, 80, 80, dtype=torch.float64)
    ref = net(x)
    ref.square().sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    out = net.to(memory_format=CL)(x.contiguous(memory_format=CL))
    out.square().sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-10)
    for g_cl, g in zip((p.grad for p in net.parameters()), grads, strict=True):
        torch.testing.assert_close(g_cl, g, rtol=1e-8, atol=1e-10)


def test_denoise_tensor_runs_in_the_preferred_format_with_the_same_result():
    torch.manual_seed(0)
    net = N3Net(depth=2, features=6, embed_features=4, k=2).eval()
    img = np.random.default_rng(0).random((90, 100), dtype=np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(img)[None, None])[0, 0].numpy()
    out = denoise_tensor(net, img)
    assert _is_channels_last(net.stages[0].tail.weight)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
