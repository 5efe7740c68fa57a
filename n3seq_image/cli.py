"""The ``n3seq-image`` command: ``train``, ``evaluate``, ``denoise``, ``upscale`` and ``demo``.

Exit codes: 0 on success, 2 for invalid arguments (bad σ, unknown option, an output that is
the input or a folder, an unknown device…), 1 when the work fails (missing or unreadable file,
incompatible weights, a full disk…); errors are printed to stderr as one line
``n3seq-image: error: …``, never a traceback (set ``N3SEQ_DEBUG=1`` to see one). Outputs are
written atomically and folders made for a failed run are removed: a failed run leaves no file.

Arguments are parsed before torch is imported, so ``--help`` and usage errors are instant.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path

from n3seq._cli import ArgumentParser, HelpFormatter, describe_error
from n3seq._files import check_output_path, missing_folders, remove_empty_folders
from n3seq_image._sigma import parse_sigma

PROG = "n3seq-image"
MAX_THREADS = 4096
#: ``--precision`` choices (:data:`n3seq_image.precision.PRECISIONS`; torch is not imported here).
PRECISION_CHOICES = ("auto", "float32", "bfloat16")
#: ``evaluate --noise`` choices (:data:`n3seq_image.evaluate.NOISE_KINDS`).
NOISE_CHOICES = ("gaussian", "clipped")


class UsageError(ValueError):
    """An invalid argument found after parsing (exit code 2, like argparse's own errors)."""


# --------------------------------------------------------------------------- argparse types


def sigma_value(text: str) -> float:
    """argparse type: one noise level in (0, 255]."""
    try:
        value = float(text)
    except ValueError:
        try:
            parse_sigma(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        raise argparse.ArgumentTypeError(
            f"takes one noise level here, not a range, got {text!r}"
        ) from None
    if not (math.isfinite(value) and 0 < value <= 255):
        raise argparse.ArgumentTypeError(
            f"must be a noise level in (0, 255] (0-255 scale), got {text!r}"
        )
    return value


def sigma_range(text: str) -> str:
    """argparse type: a fixed σ or a range ``low-high`` for training."""
    try:
        parse_sigma(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = "" if maximum is None else f" and <= {maximum}"
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}{upper}, "
                                             f"got {value}")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)
thread_count = _int_at_least(0, MAX_THREADS)
tile_size = _int_at_least(80)
scale_factor = _int_at_least(2)


def model_spec(text: str) -> str:
    """argparse type: a model name, ``official:PATH`` or a weights file (not empty)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a model name or a weights file, got ''")
    return text


def finite_float(text: str) -> float:
    """argparse type: a finite number (the range is checked by the command)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


# --------------------------------------------------------------------------- commands


def _usage(check: Callable[[], object]) -> object:
    """Runs an argument check; its ``ValueError``/``OSError`` becomes a :class:`UsageError`."""
    try:
        return check()
    except (ValueError, OSError) as exc:
        raise UsageError(_describe(exc)) from None


def _set_threads(n: int) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _check_outputs(paths: Iterable[str | None], inputs: tuple[str, ...] = ()) -> None:
    for path in paths:
        if path:
            _usage(lambda p=path: check_output_path(p, inputs=inputs))


def _check_device_and_tiling(args: argparse.Namespace) -> None:
    from n3seq_image.denoise import check_tiling, resolve_device

    _usage(lambda: check_tiling(args.tile, args.overlap))
    _usage(lambda: resolve_device(args.device))


def cmd_train(args: argparse.Namespace) -> int:
    """``n3seq-image train``."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} is a file, not a folder")
    _check_outputs([str(out / "model.safetensors")])
    try:
        model_config = json.loads(args.model_config) if args.model_config else {}
    except json.JSONDecodeError as exc:
        raise UsageError(f"--model-config is not valid JSON: {exc}") from None
    if not isinstance(model_config, dict):
        raise UsageError(
            "--model-config must be a JSON object of constructor arguments, e.g. "
            f"'{{\"depth\": 17}}', got {type(model_config).__name__} {args.model_config!r}"
        )
    from n3seq_image.train import TrainConfig, train

    cfg = TrainConfig(
        data=args.data, out=args.out, model=args.model, model_config=model_config,
        sigma=args.sigma, steps=args.steps, batch_size=args.batch_size, crop=args.crop,
        lr=args.lr, schedule=args.schedule, warmup_steps=args.warmup_steps,
        min_lr_ratio=args.min_lr_ratio, lr_decay=args.lr_decay,
        lr_decay_steps=args.lr_decay_steps, precision=args.precision,
        quantized_share=args.quantized_share, stop_after=args.stop_after,
        clip_grad_norm=args.clip_grad_norm,
        weight_decay=args.weight_decay, decoupled_weight_decay=args.decoupled_weight_decay,
        seed=args.seed, val_data=args.val_data,
        val_images=args.val_images, val_crop=args.val_crop, val_every=args.val_every,
        bn_batches=args.bn_batches, checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        max_minutes=args.max_minutes, threads=args.threads, init=args.init, sync_bn=args.sync_bn,
        init_weights=args.init_weights,
        progress=not args.no_progress, task=args.task, scales=args.scales,
    )
    from n3seq_image.data import list_images

    folders = args.data.split(",") if args.task == "sr" else [args.data]
    for folder in (*folders, args.val_data):
        if folder:
            list_images(folder)  # missing or without images: a failure (exit 1), nothing made
    try:
        cfg.validate()
    except ValueError as exc:
        raise UsageError(_option_names(str(exc), TrainConfig)) from None
    summary = train(cfg, resume=args.resume)
    if summary is not None:
        print(json.dumps(summary))
        if not summary["finished"]:
            print(f"stopped at step {summary['step']} of {cfg.steps}: {summary['weights']} "
                  "is not final; run again with --resume to continue", file=sys.stderr)
    return 0


def _option_names(message: str, config: type) -> str:
    """``"val_crop must be …"`` → ``"--val-crop must be …"``: a config field named as its option."""
    head, sep, tail = message.partition(" ")
    name = head.rstrip(":")
    if sep and name in {f.name for f in fields(config)}:
        return f"--{name.replace('_', '-')}{head[len(name):]} {tail}"
    return message


def _check_evaluate_files(args: argparse.Namespace) -> None:
    """``--csv``/``--json`` are writable, distinct and none of the inputs; device and tiles."""
    if args.csv and args.json and Path(args.csv).resolve() == Path(args.json).resolve():
        raise UsageError(f"--csv and --json name the same file {args.csv!r}")
    inputs = [m.split(":", 1)[-1] for m in args.model or []]
    if Path(args.data).is_dir():
        inputs += [str(p) for p in Path(args.data).iterdir()]
    _check_outputs([args.csv, args.json], inputs=tuple(inputs))
    _check_device_and_tiling(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``n3seq-image evaluate``."""
    if args.task == "sr":
        return cmd_evaluate_sr(args)
    if args.sigma is None:
        raise UsageError("--sigma is required for --task denoise")
    if args.scale is not None:
        raise UsageError(f"--scale {args.scale} applies to --task sr only (add --task sr)")
    baselines = [b for b in (args.baselines or "").split(",") if b]
    unknown = set(baselines) - {"dncnn", "nlmeans", "bm3d"}
    if unknown:
        raise UsageError(f"--baselines: unknown {sorted(unknown)}; choose from dncnn,nlmeans,bm3d")
    _check_evaluate_files(args)
    from n3seq._provenance import run_metadata
    from n3seq_image.evaluate import build_methods, evaluate, format_table, write_results

    _set_threads(args.threads)
    from n3seq_image.precision import autocast_dtype

    methods = build_methods(
        args.model or ["n3net"], args.sigma, baselines, tile=args.tile, overlap=args.overlap,
        device=args.device, precision=args.precision,
    )
    started, t0 = run_metadata(), time.monotonic()
    result = evaluate(methods, args.data, args.sigma, seed=args.seed, limit=args.limit,
                      progress=not args.no_progress, skip=args.skip, noise=args.noise)
    started["wall_s"] = round(time.monotonic() - t0, 1)
    used = autocast_dtype(args.precision, args.device)
    result["precision"] = args.precision
    result["autocast"] = "bfloat16" if used is not None else "float32"
    print(f"{args.data}: sigma={args.sigma:g}, noise={args.noise}, seed={args.seed}, "
          f"{len(result['images'])} images, networks in {result['autocast']}")
    print(format_table(result))
    write_results(result, args.csv, args.json, meta=started)
    return 0


def cmd_evaluate_sr(args: argparse.Namespace) -> int:
    """``n3seq-image evaluate --task sr`` (see :mod:`n3seq_image.sr_evaluate`)."""
    if args.scale is None:
        raise UsageError("--scale is required for --task sr")
    for option, value, default in (("--sigma", args.sigma, None),
                                   ("--noise", args.noise, "gaussian"),
                                   ("--precision", args.precision, "auto")):
        if value != default:
            raise UsageError(f"{option} {value} applies to --task denoise only, not --task sr")
    baselines = [b for b in (args.baselines or "").split(",") if b]
    unknown = set(baselines) - {"vdsr", "bicubic", "n3net"}
    if unknown:
        raise UsageError(f"--baselines: unknown {sorted(unknown)} for --task sr; choose from "
                         "vdsr,bicubic,n3net")
    _check_evaluate_files(args)
    from n3seq._provenance import run_metadata
    from n3seq_image.evaluate import format_table, write_results
    from n3seq_image.sr_evaluate import build_sr_methods, evaluate_sr

    _set_threads(args.threads)
    methods = build_sr_methods(args.model or ["n3net"], baselines, tile=args.tile,
                               overlap=args.overlap, device=args.device, scale=args.scale)
    started, t0 = run_metadata(), time.monotonic()
    result = evaluate_sr(methods, args.data, args.scale, limit=args.limit,
                         progress=not args.no_progress, skip=args.skip)
    started["wall_s"] = round(time.monotonic() - t0, 1)
    print(f"{args.data}: x{args.scale}, {len(result['images'])} images (Y channel, "
          f"{args.scale} px shaved)")
    print(format_table(result))
    write_results(result, args.csv, args.json, meta=started)
    return 0


def cmd_upscale(args: argparse.Namespace) -> int:
    """``n3seq-image upscale`` (see :mod:`n3seq_image.upscale`)."""
    _check_outputs([args.output], inputs=(args.input,))
    from n3seq_image.data import check_image_output

    _usage(lambda: check_image_output(args.output))
    _check_device_and_tiling(args)
    from n3seq_image.upscale import upscale_file

    _set_threads(args.threads)
    upscale_file(args.input, args.output, args.scale, model=args.model, tile=args.tile,
                 overlap=args.overlap, device=args.device, progress=not args.no_progress)
    print(f"wrote {args.output}")
    return 0


def cmd_denoise(args: argparse.Namespace) -> int:
    """``n3seq-image denoise``."""
    if args.add_noise is not None and args.sigma is None:
        raise UsageError("--add-noise needs --sigma (the noise level to add)")
    if args.save_noisy is not None and args.add_noise is None:
        raise UsageError("--save-noisy writes the noisy image --add-noise makes; give "
                         "--add-noise SEED (and --sigma)")
    _check_outputs([args.output], inputs=(args.input,))
    if args.save_noisy is not None:
        _check_outputs([args.save_noisy], inputs=(args.input, args.output))
        if Path(args.save_noisy).resolve() == Path(args.output).resolve():
            raise UsageError(f"--save-noisy and the output name the same file {args.output!r}")
    from n3seq_image.data import check_image_output

    _usage(lambda: check_image_output(args.output))
    if args.save_noisy is not None:
        _usage(lambda: check_image_output(args.save_noisy))
    _check_device_and_tiling(args)
    from n3seq_image.denoise import denoise_file_report

    _set_threads(args.threads)
    result = denoise_file_report(
        args.input, args.output, args.sigma, model=args.model, add_noise_seed=args.add_noise,
        tile=args.tile, overlap=args.overlap, device=args.device, precision=args.precision,
        progress=not args.no_progress, save_noisy=args.save_noisy,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    if result.psnr_noisy is not None:
        print(f"noisy    PSNR {result.psnr_noisy:6.2f} dB (sigma={result.sigma:g}, seed "
              f"{args.add_noise})")
        print(f"denoised PSNR {result.psnr_denoised:6.2f} dB ({result.model})")
    for path in result.outputs:
        print(f"wrote {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``n3seq-image demo``."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} is a file, not a folder")
    _check_outputs([str(out / "noisy.png")])
    print("loading torch and the image libraries", file=sys.stderr, flush=True)
    from n3seq_image.demo import report, run_demo

    print(report(run_demo(args.out, args.sigma, args.seed, args.model)))
    return 0


# --------------------------------------------------------------------------- parser


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The argument parser of ``n3seq-image`` (imports nothing heavy)."""
    parser = ArgumentParser(prog=prog,
                            description="N³ image denoising and super-resolution toolkit.",
                            formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text,
                              formatter_class=HelpFormatter)

    p = command("train", "train a denoiser or an SR model on random crops (torchrun for DDP)")
    p.add_argument("--data", required=True,
                   help="folder of training images (--task sr: comma-separated folders)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, weights)")
    p.add_argument("--task", choices=["denoise", "sr"], default="denoise",
                   help="sr: super-resolution (models n3net, vdsr) on bicubic pairs")
    p.add_argument("--scales", default="2,3,4",
                   help="--task sr: scale factors mixed in training and validation")
    p.add_argument("--model", choices=["n3net", "dncnn", "vdsr"], default="n3net",
                   help="architecture (denoise: n3net, dncnn; sr: n3net, vdsr)")
    p.add_argument("--model-config", default="",
                   help='JSON object of constructor overrides, e.g. \'{"depth": 17}\'')
    p.add_argument("--sigma", type=sigma_range, default="25",
                   help="noise level on the 0-255 scale: 25, or a range 0-55 (blind)")
    p.add_argument("--steps", type=positive_int, default=1000,
                   help="optimisation steps of the whole run (the schedule spans them)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="global batch")
    p.add_argument("--crop", type=positive_int, default=80, help="training crop size (px)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak Adam learning rate")
    p.add_argument("--lr-decay", type=float, default=0.1,
                   help="exponential schedule: lr factor per --lr-decay-steps, in (0, 1]")
    p.add_argument("--lr-decay-steps", type=positive_int, default=50_000,
                   help="exponential schedule: see --lr-decay")
    p.add_argument("--schedule", choices=["cosine", "exponential"], default="cosine",
                   help="cosine: warm-up then cosine decay over --steps; exponential: "
                   "--lr-decay per --lr-decay-steps")
    p.add_argument("--warmup-steps", type=int, default=200,
                   help="linear warm-up steps of the cosine schedule")
    p.add_argument("--min-lr-ratio", type=float, default=0.01,
                   help="final learning rate of the cosine schedule, as a share of --lr")
    p.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="auto: bfloat16 autocast for the convolutions where the CPU/GPU "
                   "supports it natively")
    p.add_argument("--quantized-share", type=float, default=0.25,
                   help="share of noisy samples clipped and quantised to 8 bits")
    p.add_argument("--clip-grad-norm", type=float, default=0.0,
                   help="clip the gradient to this global L2 norm (0: no clipping); steps "
                   "with a non-finite loss or gradient are skipped either way")
    p.add_argument("--stop-after", type=int, default=0,
                   help="stop (checkpointed) at this step, keeping the schedule of --steps")
    p.add_argument("--weight-decay", type=float, default=1e-4,
                   help="L2 weight decay on convolution weights (use 0 for networks without "
                   "batch-norm such as VDSR and N3Net-SR: see docs/sr.md)")
    p.add_argument("--decoupled-weight-decay", action="store_true",
                   help="apply --weight-decay AdamW-style (w -= lr * decay * w each step), "
                   "not as Adam's L2 term")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the initialisation and the data stream")
    p.add_argument("--val-data", default=None, help="folder of validation images")
    p.add_argument("--val-images", type=positive_int, default=4,
                   help="validation images used (first N, sorted)")
    p.add_argument("--val-crop", type=int, default=128,
                   help="centre crop of the validation images (0 = whole images)")
    p.add_argument("--val-every", type=positive_int, default=100,
                   help="validation interval in steps")
    p.add_argument("--bn-batches", type=int, default=32,
                   help="recompute the batch-norm statistics from this many fixed training "
                        "batches before each validation and the final save (0 = keep the "
                        "running averages)")
    p.add_argument("--checkpoint-every", type=positive_int, default=100,
                   help="checkpoint interval in steps")
    p.add_argument("--keep-checkpoints", type=int, default=2,
                   help="most recent checkpoints kept (0 keeps all)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="wall-time cap in minutes (0 = none)")
    p.add_argument("--threads", type=thread_count, default=0,
                   help="torch CPU threads (0 = torch's default)")
    p.add_argument("--init-weights", default=None, metavar="PATH",
                   help="start from this weights file of the same model and config "
                        "(fine-tuning); the optimiser and schedule start afresh")
    p.add_argument("--init", choices=["zero-tail", "default"], default="zero-tail",
                   help="zero-tail: residual stages start as the identity")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP (GPU)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    def common(q: argparse.ArgumentParser, sigma: bool = True) -> None:
        if sigma:
            q.add_argument("--sigma", type=sigma_value, required=True,
                           help="noise level of the input on the 0-255 scale, in (0, 255]")
        q.add_argument("--tile", type=tile_size, default=512,
                       help="largest tile side (px, >= 80): networks run on tiles to bound memory")
        q.add_argument("--overlap", type=non_negative_int, default=48,
                       help="overlap of neighbouring tiles (px, < tile/2); blended linearly")
        q.add_argument("--device", default="cpu",
                       help="torch device for networks: cpu, cuda, cuda:N or mps")
        q.add_argument("--threads", type=thread_count, default=0,
                       help="torch CPU threads (0 = torch's default)")

    def precision(q: argparse.ArgumentParser) -> None:
        q.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                       help="arithmetic of the networks' convolutions; auto: bfloat16 autocast "
                       "where the CPU/GPU supports it natively, float32 otherwise (outputs "
                       "are float32)")

    p = command("evaluate", "PSNR/SSIM of denoisers (or SR models) on a folder of clean images")
    p.add_argument("--task", choices=["denoise", "sr"], default="denoise",
                   help="sr: super-resolution benchmark on the Y channel (needs --scale)")
    p.add_argument("--model", action="append", type=model_spec,
                   help="n3net | dncnn | n3net-blind (shipped) | weights.safetensors | "
                   "official:PATH; --task sr: n3net | vdsr | bicubic | weights.safetensors; "
                   "repeatable (default: n3net)")
    p.add_argument("--data", required=True, help="folder of clean test images")
    p.add_argument("--sigma", type=sigma_value, default=None,
                   help="--task denoise (required): noise level on the 0-255 scale, in (0, 255]")
    p.add_argument("--scale", type=scale_factor, default=None,
                   help="--task sr (required): scale factor, an integer >= 2")
    p.add_argument("--baselines", default="",
                   help="comma list of dncnn,nlmeans,bm3d (--task sr: vdsr,bicubic)")
    p.add_argument("--noise", choices=NOISE_CHOICES, default="gaussian",
                   help="--task denoise: gaussian (not clipped, the usual protocol) or clipped "
                   "(the same noise clipped to [0, 1] and quantised to 8 bits, as in a noisy "
                   "PNG)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="noise seed")
    p.add_argument("--limit", type=positive_int, default=None, help="at most N images")
    p.add_argument("--skip", type=non_negative_int, default=0,
                   help="skip the first N images (sorted)")
    p.add_argument("--csv", default=None, help="write per-image rows as CSV")
    p.add_argument("--json", default=None, help="write the full result as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    precision(p)
    common(p, sigma=False)
    p.set_defaults(func=cmd_evaluate)

    p = command("denoise", "denoise one image (grey, colour per channel; alpha kept)")
    p.add_argument("input", help="noisy image (PNG, TIFF, JPEG, BMP; 8/16-bit or float)")
    p.add_argument("output", help="output image (.png, .tif, .jpg, .bmp); never the input")
    p.add_argument("--model", default="n3net", type=model_spec,
                   help="n3net | n3net-sigma25 | dncnn | n3net-blind | nlmeans | bm3d | "
                   "weights.safetensors | official:PATH (n3net: the sigma-25 N3Net for --sigma "
                   "24-26, the blind N3Net for any other or an estimated sigma)")
    p.add_argument("--sigma", type=sigma_value, default=None,
                   help="noise level of the input on the 0-255 scale, in (0, 255]; omitted: "
                   "estimated from the image (printed on stderr) and used")
    p.add_argument("--add-noise", type=non_negative_int, default=None, metavar="SEED",
                   help="first add noise of --sigma with this seed (input is clean); prints the "
                   "noisy and the denoised PSNR")
    p.add_argument("--save-noisy", default=None, metavar="PATH",
                   help="with --add-noise: also write the noisy input (clipped, 8-bit)")
    p.add_argument("--no-progress", action="store_true",
                   help="no per-tile progress bar (shown for images larger than --tile)")
    precision(p)
    common(p, sigma=False)
    p.set_defaults(func=cmd_denoise)

    p = command("upscale", "super-resolve one image (grey, or colour through YCbCr)")
    p.add_argument("input", help="low-resolution image (PNG, TIFF, JPEG, BMP)")
    p.add_argument("output", help="output image (.png, .tif, .jpg, .bmp); never the input")
    p.add_argument("--scale", type=scale_factor, required=True,
                   help="scale factor, an integer >= 2 (the models are trained for 2, 3, 4)")
    p.add_argument("--model", default="n3net", type=model_spec,
                   help="n3net | vdsr (shipped) | bicubic | weights.safetensors")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    common(p, sigma=False)
    p.set_defaults(func=cmd_upscale)

    p = command("demo", "denoise scikit-image's camera with the shipped N3Net")
    p.add_argument("--out", default="results/demo", help="output folder")
    p.add_argument("--sigma", type=sigma_value, default=25.0, help="noise level, 0-255 scale")
    p.add_argument("--seed", type=non_negative_int, default=0, help="noise seed")
    p.add_argument("--model", default="n3net", type=model_spec,
                   help="n3net, dncnn, nlmeans, bm3d or a weights file")
    p.set_defaults(func=cmd_demo)
    return parser


# --------------------------------------------------------------------------- errors


def _describe(exc: BaseException) -> str:
    """One line saying what went wrong, without a traceback."""
    return describe_error(exc, "; try a smaller --tile or --batch-size")


#: Exceptions that report a problem with the input, the environment or the files: one line.
#: Anything else is a bug: one line too, naming the exception type, and N3SEQ_DEBUG=1 shows it.
_REPORTED = (
    OSError, ValueError, ImportError, MemoryError, RuntimeError, FloatingPointError, OverflowError,
)


def _outputs(args: argparse.Namespace) -> list[str]:
    """The files a command writes (for a folder: a file inside it)."""
    if args.command in ("train", "demo"):
        return [str(Path(args.out) / "x")]
    if args.command == "evaluate":
        return [p for p in (args.csv, args.json) if p]
    if args.command == "denoise" and args.save_noisy:
        return [args.output, args.save_noisy]
    return [args.output]


def run(args: argparse.Namespace, prog: str = PROG) -> int:
    """Runs a parsed command and turns every failure into one line on stderr and an exit code.

    Folders the command created are removed again if it fails and they are still empty.
    """
    func: Callable[[argparse.Namespace], int] = args.func
    created = [folder for path in _outputs(args) for folder in missing_folders(path)]
    try:
        from n3seq_image.denormals import denormals_flushed

        with denormals_flushed():  # torch's worker threads start inside and inherit it
            return func(args)
    except UsageError as exc:
        code, message = 2, str(exc)
    except KeyboardInterrupt:
        code, message = 130, "interrupted"
    except _REPORTED as exc:
        if os.environ.get("N3SEQ_DEBUG"):
            raise
        code, message = 1, _describe(exc)
    except Exception as exc:
        if os.environ.get("N3SEQ_DEBUG"):
            raise
        code = 1
        message = (f"unexpected {type(exc).__name__}: {_describe(exc)} "
                   "(set N3SEQ_DEBUG=1 for the traceback)")
    remove_empty_folders(created)  # only empty ones: never what a run wrote
    print(f"{prog}: {'interrupted' if code == 130 else 'error: ' + message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``n3seq-image`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
