"""Second round of bad and unusual inputs (issue 9 re-test): each is refused naming the argument,
or handled correctly. Every row failed (silently accepted, NaN, or a raw error) before."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from n3seq_image import DnCNN, N3Block2d, N3Net
from n3seq_image.color import rgb_to_y
from n3seq_image.data import (
    ImageReadError,
    add_noise,
    check_image_output,
    image_size,
    load_folder,
    load_image,
    quantize_8bit,
    shard_indices,
)
from n3seq_image.denoise import (
    denoise_array,
    denoise_file,
    denoise_tensor,
    get_denoiser,
    nlmeans_denoiser,
)
from n3seq_image.imresize import imresize, output_size
from n3seq_image.metrics import batch_psnr, psnr, ssim
from n3seq_image.noise_level import estimate_sigma
from n3seq_image.sr import bicubic
from n3seq_image.upscale import upscale_array

IMG = np.random.default_rng(0).random((40, 40)).astype(np.float32)
NAN_IMG = np.where(IMG > 0.9, np.nan, IMG)


def _check(fn, error, fragment):
    with pytest.raises(error) as info:
        fn()
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert re.search(fragment, str(info.value)), f"{fragment!r} not in {str(info.value)!r}"


@pytest.mark.parametrize(("fn", "error", "fragment"), [
    (lambda: psnr(NAN_IMG, IMG), ValueError, r"estimate contains NaN/inf \(first at index"),
    (lambda: psnr(IMG[:0], IMG[:0]), ValueError, "estimate is empty"),
    (lambda: psnr(IMG, IMG * 0.9, data_range=0), ValueError, "data_range must be positive"),
    (lambda: psnr(IMG, IMG * 0.9, data_range=math.nan), ValueError, "data_range must be finite"),
    (lambda: psnr(IMG > 0.5, IMG), TypeError, "estimate must be a real-valued image array"),
    (lambda: ssim(np.full((20, 20), np.nan), np.zeros((20, 20))), ValueError,
     "estimate contains NaN/inf"),
    (lambda: batch_psnr(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4))), TypeError,
     "estimate must be a floating-point tensor"),
    (lambda: add_noise(IMG, -1, 0), ValueError, "sigma must be >= 0"),
    (lambda: add_noise(IMG, math.nan, 0), ValueError, "sigma must be finite"),
    (lambda: add_noise(IMG, 25, -1), ValueError, "seed must be >= 0"),
    (lambda: add_noise(IMG, 25, 1.5), TypeError, "seed must be an int"),
    (lambda: add_noise(torch.from_numpy(IMG), 25, 0), TypeError, "image must be a float NumPy"),
    (lambda: quantize_8bit(np.array([np.nan, 0.5])), ValueError, "image contains NaN"),
    (lambda: shard_indices(0, 8, 0, 0), ValueError, "world_size must be >= 1"),
    (lambda: shard_indices(0, 8, 2, 2), ValueError, "rank must be <= 1"),
    (lambda: shard_indices(0, 0), ValueError, "batch_size must be >= 1"),
    (lambda: estimate_sigma(IMG > 0.5), TypeError, "image must be a real-valued image array"),
    (lambda: estimate_sigma(IMG, patch=0), ValueError, "patch must be >= 2"),
    (lambda: estimate_sigma(IMG, patch=7.0), TypeError, "patch must be an int"),
    (lambda: estimate_sigma(torch.zeros(40, 40, device="meta")), ValueError, "meta tensor"),
    (lambda: imresize(torch.rand(1, 8, 8), 0.5, antialias="x"), TypeError,
     "antialias must be a bool"),
    (lambda: output_size(0, 2), ValueError, "in_size must be >= 1"),
    (lambda: output_size(10, 0), ValueError, "scale must be positive"),
    (lambda: rgb_to_y(np.zeros((4, 3, 4)), axis=1.0), TypeError, "axis must be an int"),
    (lambda: load_image(__file__, grayscale="no"), TypeError, "grayscale must be a bool"),
    (lambda: load_folder(".", limit=-1), ValueError, "limit must be >= 0"),
    (lambda: load_folder(".", limit=1.5), TypeError, "limit must be an int"),
    (lambda: check_image_output("."), IsADirectoryError, "is a folder, not a file"),
    (lambda: denoise_tensor(DnCNN(depth=3, features=8), NAN_IMG), ValueError,
     r"image contains \d+ NaN/inf pixel value\(s\) \(first at \(y, x\)"),
    (lambda: denoise_tensor(DnCNN(depth=3, features=8), IMG[:0, :5]), ValueError,
     "image is empty"),
    (lambda: denoise_tensor(lambda x: x, IMG), TypeError, "model must be an nn.Module"),
    (lambda: denoise_tensor(DnCNN(depth=3, features=8), IMG, device="meta"), ValueError,
     "device 'meta' is not supported"),
    (lambda: get_denoiser(None, 25), TypeError, "model must be a name or a path"),
    (lambda: nlmeans_denoiser(math.inf), ValueError, "sigma must be finite"),
    (lambda: denoise_array(nlmeans_denoiser(25), NAN_IMG), ValueError, "image contains"),
    (lambda: denoise_array(5, IMG), TypeError, "denoiser must be callable"),
    (lambda: upscale_array(bicubic, NAN_IMG, 2), ValueError, "image contains"),
])
def test_refused_naming_the_argument(fn, error, fragment):
    _check(fn, error, fragment)


@pytest.mark.parametrize(("module", "shape"), [
    (lambda: DnCNN(depth=3, features=8), (1, 1, 80, 80)),
    (lambda: N3Net(stages=2, depth=2, features=8), (1, 1, 80, 80)),
    (lambda: N3Block2d(8, k=2), (1, 8, 80, 80)),
])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_image_models_name_a_dtype_mismatch(module, shape, dtype):
    net = module().eval()
    with torch.no_grad():
        _check(lambda: net(torch.rand(shape, dtype=dtype)), TypeError,
               f"x has dtype {dtype} but {type(net).__name__}'s parameters are torch.float32")


def test_image_models_name_a_device_mismatch():
    net = DnCNN(depth=3, features=8).eval()
    _check(lambda: net(torch.rand(1, 1, 20, 20, device="meta")), ValueError,
           "x is on device meta but DnCNN's parameters are on cpu")


def test_dncnn_image_without_pixels_gives_an_empty_output():
    net = DnCNN(depth=3, features=8).eval()
    assert net(torch.rand(1, 1, 20, 0)).shape == (1, 1, 20, 0)


def test_estimate_sigma_accepts_tensors_that_require_grad_and_bfloat16():
    x = torch.from_numpy(IMG)
    expected = estimate_sigma(IMG)
    assert estimate_sigma(x.clone().requires_grad_()) == pytest.approx(expected)
    assert estimate_sigma(x.bfloat16()) == pytest.approx(expected, abs=1.0)


def test_get_denoiser_accepts_sigma_as_text():
    out = get_denoiser("nlmeans", "25")(IMG)
    assert out.shape == IMG.shape and np.isfinite(out).all()


def test_denoise_file_one_pixel_image_with_nlmeans(tmp_path):
    src, dst = tmp_path / "one.png", tmp_path / "out.png"
    Image.fromarray(np.array([[128]], np.uint8)).save(src)
    out = denoise_file(src, dst, sigma=25, model="nlmeans")
    assert out.shape == (1, 1)
    assert Image.open(dst).size == (1, 1)


class TestImageSize:
    def test_height_and_width_from_the_header(self, tmp_path):
        path = tmp_path / "wide.png"
        Image.fromarray(np.zeros((3, 11), np.uint8)).save(path)
        assert image_size(path) == (3, 11)

    @pytest.mark.parametrize("content", [b"", b"not an image"])
    def test_unreadable_file_named(self, tmp_path, content):
        path = tmp_path / "broken.png"
        path.write_bytes(content)
        with pytest.raises(ImageReadError, match=r"cannot read image .*broken\.png"):
            image_size(path)

    def test_missing_file_and_folder(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="image file not found"):
            image_size(tmp_path / "nope.png")
        with pytest.raises(ImageReadError, match="not a file"):
            image_size(tmp_path)
