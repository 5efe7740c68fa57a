"""Command line: ``n3seq-audio denoise in.wav out.wav [--model weights.safetensors]``.

Exit codes: 0 on success, 2 for invalid arguments (an output that is the input or a folder, an
unsupported extension…), 1 when the work fails (missing or unreadable file, bad weights, a full
disk…); errors are one line ``n3seq-audio: error: …`` on stderr, never a traceback (set
``N3SEQ_DEBUG=1`` to see one). The output is written atomically: a failed run leaves no file.
Arguments are parsed before torch is imported, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from n3seq._cli import ArgumentParser, HelpFormatter, describe_error
from n3seq._files import check_output_path, missing_folders, remove_empty_folders

PROG = "n3seq-audio"


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 4096], got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``n3seq-audio`` (imports nothing heavy)."""
    parser = ArgumentParser(
        prog=PROG, description="Speech denoising with an N³ spectral-mask network.",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    den = sub.add_parser("denoise", help="denoise an audio file (any rate, any channel count)",
                         description="Denoise an audio file; the output keeps the input's "
                         "rate, channels, length and sample format.", formatter_class=HelpFormatter)
    den.add_argument("input", type=Path, help="noisy input file (WAV, FLAC, ...)")
    den.add_argument("output", type=Path,
                     help="output file (format from the extension); written only on success, "
                     "never the input")
    den.add_argument("--model", type=Path, default=None,
                     help="denoiser .safetensors (default: the shipped 16 kHz speech model)")
    den.add_argument("--threads", type=_threads, default=0,
                     help="torch CPU threads (0 = torch's default)")
    return parser


def _describe(exc: BaseException) -> str:
    """One line saying what went wrong, without a traceback."""
    return describe_error(exc)


def _fail(code: int, message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 0 on success, 1 on a reported error, 2 on bad usage."""
    args = build_parser().parse_args(argv)
    try:
        check_output_path(args.output, inputs=(args.input,))
    except (ValueError, OSError) as exc:
        return _fail(2, _describe(exc))
    created = missing_folders(args.output)
    try:
        return _run(args)
    finally:
        remove_empty_folders(created)  # only folders left empty by a failed run


def _run(args: argparse.Namespace) -> int:
    try:
        import torch

        from n3seq.audio.io import check_audio_output, denoise_file
        from n3seq.audio.pretrained import load_denoiser

        try:
            check_audio_output(args.output)
        except ValueError as exc:
            return _fail(2, _describe(exc))
        if args.threads:
            torch.set_num_threads(args.threads)
        model = load_denoiser(args.model)
        info = denoise_file(args.input, args.output, model)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, ImportError, MemoryError, RuntimeError, OverflowError) as exc:
        if os.environ.get("N3SEQ_DEBUG"):
            raise
        return _fail(1, _describe(exc))
    except Exception as exc:
        if os.environ.get("N3SEQ_DEBUG"):
            raise
        return _fail(1, f"unexpected {type(exc).__name__}: {_describe(exc)} "
                        "(set N3SEQ_DEBUG=1 for the traceback)")
    note = " (resampled for the model)" if info["resampled"] else ""
    print(f"wrote {args.output}: {info['channels']} channel(s), {info['frames']} frames at "
          f"{info['sample_rate']} Hz{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
