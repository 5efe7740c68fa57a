"""Command line: ``n3seq-audio denoise in.wav out.wav [--model weights.safetensors]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="n3seq-audio", description="Speech denoising with an N³ spectral-mask network."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    den = sub.add_parser("denoise", help="denoise an audio file (any rate, any channel count)")
    den.add_argument("input", type=Path, help="noisy input file (WAV, FLAC, ...)")
    den.add_argument("output", type=Path, help="output file; written only on success")
    den.add_argument("--model", type=Path, default=None,
                     help="denoiser .safetensors (default: the shipped 16 kHz speech model)")
    den.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 0 on success, 1 on a reported error, 2 on bad usage."""
    args = build_parser().parse_args(argv)
    import torch

    from n3seq.audio.io import AudioFileError, denoise_file
    from n3seq.audio.pretrained import load_denoiser

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.input.resolve() == args.output.resolve():
        print("error: output must differ from input", file=sys.stderr)
        return 1
    try:
        model = load_denoiser(args.model)
        info = denoise_file(args.input, args.output, model)
    except (AudioFileError, FileNotFoundError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    note = " (resampled for the model)" if info["resampled"] else ""
    print(f"wrote {args.output}: {info['channels']} channel(s), {info['frames']} frames at "
          f"{info['sample_rate']} Hz{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
