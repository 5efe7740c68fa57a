"""The ``n3seq-image`` command: ``train``, ``evaluate``, ``denoise`` and ``demo``.

Exit codes: 0 on success, 2 for invalid arguments (bad σ, unknown option), 1 when the work
fails (missing or unreadable file, incompatible weights…); errors are printed to stderr as
``n3seq-image: error: …``. Outputs are written atomically: a failed run leaves no file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from n3seq_image.data import ImageReadError, parse_sigma

PROG = "n3seq-image"


def sigma_value(text: str) -> float:
    """argparse type: one noise level in (0, 255]."""
    try:
        low, high = parse_sigma(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if low != high or low <= 0:
        raise argparse.ArgumentTypeError(
            f"sigma must be a single value in (0, 255] (0-255 scale), got {text!r}"
        )
    return low


def sigma_range(text: str) -> str:
    """argparse type: a fixed σ or a range ``low-high`` for training."""
    try:
        parse_sigma(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _set_threads(n: int) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def cmd_train(args: argparse.Namespace) -> int:
    from n3seq_image.train import TrainConfig, train

    try:
        model_config = json.loads(args.model_config) if args.model_config else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"--model-config is not valid JSON: {exc}") from None
    cfg = TrainConfig(
        data=args.data, out=args.out, model=args.model, model_config=model_config,
        sigma=args.sigma, steps=args.steps, batch_size=args.batch_size, crop=args.crop,
        lr=args.lr, schedule=args.schedule, warmup_steps=args.warmup_steps,
        min_lr_ratio=args.min_lr_ratio, lr_decay=args.lr_decay,
        lr_decay_steps=args.lr_decay_steps, precision=args.precision,
        quantized_share=args.quantized_share, stop_after=args.stop_after,
        weight_decay=args.weight_decay, seed=args.seed, val_data=args.val_data,
        val_images=args.val_images, val_crop=args.val_crop, val_every=args.val_every,
        checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints,
        max_minutes=args.max_minutes, threads=args.threads, init=args.init, sync_bn=args.sync_bn,
        progress=not args.no_progress,
    )
    summary = train(cfg, resume=args.resume)
    if summary is not None:
        print(json.dumps(summary))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from n3seq_image.evaluate import build_methods, evaluate, format_table, write_results

    _set_threads(args.threads)
    baselines = [b for b in (args.baselines or "").split(",") if b]
    unknown = set(baselines) - {"dncnn", "nlmeans", "bm3d"}
    if unknown:
        raise ValueError(f"--baselines: unknown {sorted(unknown)}; choose from dncnn,nlmeans,bm3d")
    methods = build_methods(
        args.model or ["n3net"], args.sigma, baselines, tile=args.tile, overlap=args.overlap,
        device=args.device,
    )
    result = evaluate(methods, args.data, args.sigma, seed=args.seed, limit=args.limit,
                      progress=not args.no_progress, skip=args.skip)
    print(f"{args.data}: sigma={args.sigma:g}, seed={args.seed}, {len(result['images'])} images")
    print(format_table(result))
    write_results(result, args.csv, args.json)
    return 0


def cmd_denoise(args: argparse.Namespace) -> int:
    from n3seq_image.denoise import denoise_file

    _set_threads(args.threads)
    denoise_file(
        args.input, args.output, args.sigma, model=args.model, add_noise_seed=args.add_noise,
        tile=args.tile, overlap=args.overlap, device=args.device,
    )
    print(f"wrote {args.output}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from n3seq_image.demo import report, run_demo

    print(report(run_demo(args.out, args.sigma, args.seed, args.model)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="N³ image denoising toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a denoiser on random crops (torchrun for DDP)")
    p.add_argument("--data", required=True, help="folder of training images")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, weights)")
    p.add_argument("--model", choices=["n3net", "dncnn"], default="n3net")
    p.add_argument("--model-config", default="",
                   help='JSON constructor overrides, e.g. \'{"depth": 17}\'')
    p.add_argument("--sigma", type=sigma_range, default="25", help="25, or a range 0-55 (blind)")
    p.add_argument("--steps", type=positive_int, default=1000)
    p.add_argument("--batch-size", type=positive_int, default=32, help="global batch")
    p.add_argument("--crop", type=positive_int, default=80)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-decay", type=float, default=0.1,
                   help="lr factor per --lr-decay-steps (exponential)")
    p.add_argument("--lr-decay-steps", type=positive_int, default=50_000)
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
    p.add_argument("--stop-after", type=int, default=0,
                   help="stop (checkpointed) at this step, keeping the schedule of --steps")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-data", default=None, help="folder of validation images")
    p.add_argument("--val-images", type=positive_int, default=4)
    p.add_argument("--val-crop", type=int, default=128)
    p.add_argument("--val-every", type=positive_int, default=100)
    p.add_argument("--checkpoint-every", type=positive_int, default=100)
    p.add_argument("--keep-checkpoints", type=int, default=2, help="0 keeps all")
    p.add_argument("--max-minutes", type=float, default=0.0, help="wall-time cap (0 = none)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--init", choices=["zero-tail", "default"], default="zero-tail",
                   help="zero-tail: residual stages start as the identity")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP (GPU)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--sigma", type=sigma_value, required=True,
                       help="noise level on the 0-255 scale")
        q.add_argument("--tile", type=positive_int, default=512, help="tile size (>= 80)")
        q.add_argument("--overlap", type=int, default=48)
        q.add_argument("--device", default="cpu")
        q.add_argument("--threads", type=int, default=0)

    p = sub.add_parser("evaluate", help="PSNR/SSIM of denoisers on a folder of clean images")
    p.add_argument("--model", action="append",
                   help="n3net | dncnn (shipped) | weights.safetensors | official:PATH; repeatable")
    p.add_argument("--data", required=True, help="folder of clean test images")
    p.add_argument("--baselines", default="", help="comma list of dncnn,nlmeans,bm3d")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--limit", type=positive_int, default=None, help="at most N images")
    p.add_argument("--skip", type=int, default=0, help="skip the first N images (sorted)")
    p.add_argument("--csv", default=None, help="write per-image rows as CSV")
    p.add_argument("--json", default=None, help="write the full result as JSON")
    p.add_argument("--no-progress", action="store_true")
    common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("denoise", help="denoise one image (grayscale or colour, per channel)")
    p.add_argument("input", help="noisy PNG/JPEG")
    p.add_argument("output", help="output PNG/JPEG")
    p.add_argument("--model", default="n3net",
                   help="n3net | dncnn | nlmeans | bm3d | weights.safetensors | official:PATH")
    p.add_argument("--add-noise", type=int, default=None, metavar="SEED",
                   help="first add noise of --sigma with this seed (input is clean)")
    common(p)
    p.set_defaults(func=cmd_denoise)

    from n3seq_image.demo import add_arguments

    p = sub.add_parser("demo", help="denoise scikit-image's camera with the shipped N3Net")
    add_arguments(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``n3seq-image`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (FileNotFoundError, ImageReadError, ValueError, ImportError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
