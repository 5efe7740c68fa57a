"""The argparse parser and help formatter both command lines (n3seq-image, n3seq-audio) use."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with usage errors reported as ``PROG: error: …`` (exit 2).

    ``PROG`` is the program's name without the subcommand (``n3seq-image``, not
    ``n3seq-image denoise``), so every error line of a command starts the same way.
    """

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog.split()[0]}: error: {message}\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: …)`` for every option with a default worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if any(default is v for v in (None, False, argparse.SUPPRESS)) or default == "" or (
                "%(default)" in text):
            return text
        return super()._get_help_string(action)


def describe_error(exc: BaseException, memory_hint: str = "") -> str:
    """One line saying what went wrong, without a traceback.

    Args:
        exc: the exception a command ended in.
        memory_hint: advice appended to an out-of-memory error (e.g. a smaller tile).
    """
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    else:
        text = str(exc) or type(exc).__name__
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        text = f"out of memory ({text}){memory_hint}"
    return " ".join(text.split())
