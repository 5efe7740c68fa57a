"""Where a result came from: commit and machine, written beside an experiment's numbers.

Experiments write their results with :func:`write_results_json`; the docs render their
tables from those files with ``scripts/render_docs_tables.py``, which stamps ``commit`` and
``machine`` under each table. The payload is::

    {"meta": {"commit": ..., "dirty": [...], "machine": ..., "torch": ..., "threads": ...,
              "date": ..., "command": ..., "wall_s": ...},
     "rows": [{...}, ...],
     ...any further top-level keys of the experiment}
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from n3seq._files import atomic_write

_REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=_REPO, capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.rstrip("\n") if done.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_description() -> str:
    """One line naming the CPU, its core count, the OS and, when present, the GPU."""
    text = f"{_cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"
    try:
        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    except Exception:  # a description must never fail the experiment
        pass
    return text


def run_metadata(wall_s: float | None = None, command: list[str] | None = None) -> dict[str, Any]:
    """Commit, uncommitted tracked files, machine, torch version, threads, date and command.

    Call it when the run starts, so that commit and ``dirty`` describe the code the run
    loaded (others may commit during a long run); set ``wall_s`` at the end.

    Args:
        wall_s: the run's wall time in seconds, if known.
        command: the command line; ``sys.argv`` when omitted.

    Returns:
        A JSON-serialisable dict. ``commit`` is ``"unknown"`` outside a git checkout;
        ``dirty`` lists tracked files that differed from that commit at the call (at most 20).
    """
    status = _git("status", "--porcelain", "--untracked-files=no")
    dirty = [line[3:] for line in status.splitlines()] if status else []
    meta: dict[str, Any] = {
        "commit": (_git("rev-parse", "--short=10", "HEAD") or "unknown").strip(),
        "dirty": dirty[:20],
        "machine": machine_description(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": " ".join(sys.argv if command is None else command),
    }
    if wall_s is not None:
        meta["wall_s"] = round(float(wall_s), 1)
    return meta


def write_results_json(path: str | Path, rows: list[dict[str, Any]], meta: dict[str, Any],
                       **extra: Any) -> Path:
    """Writes ``{"meta": meta, "rows": rows, **extra}`` to ``path`` atomically (temp + rename).

    Raises:
        ValueError: if ``meta`` lacks ``commit`` or ``machine``.
    """
    missing = [key for key in ("commit", "machine") if key not in meta]
    if missing:
        raise ValueError(f"meta must have keys 'commit' and 'machine'; missing {missing}")
    path = Path(path)
    text = json.dumps({"meta": meta, "rows": rows, **extra}, indent=1, ensure_ascii=False)
    atomic_write(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))
    return path
