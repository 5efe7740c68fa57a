"""Timing (median of repeats) and peak memory (one call in a fresh subprocess)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any


def median_time(fn: Callable[[], Any], repeats: int, budget_s: float = 60.0) -> dict[str, Any]:
    """Median wall time of ``fn()`` after one warm-up call.

    Calls that take long get fewer repeats (at least 3 unless a single call exceeds
    ``budget_s / 3``), so that one case stays near ``budget_s``.
    """
    start = time.perf_counter()
    fn()  # warm-up: allocator, lazy init, one-off dispatch costs
    first = time.perf_counter() - start
    n = max(1, min(repeats, int(budget_s // max(first, 1e-9))))
    if n < 3 and first * 3 <= budget_s:
        n = 3
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "times_s": times, "repeats": n}


def current_rss_mib() -> float:
    """Resident set size of this process now, in MiB (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def peak_memory(case: str, params: dict[str, Any], threads: int,
                timeout_s: float = 900.0) -> dict[str, Any]:
    """Peak RSS of one call of ``case`` in a fresh ``python -m benchmarks.child`` process.

    Returns ``peak_mib`` (the child's maximum RSS, including the Python/torch runtime and the
    inputs) and ``call_mib`` (peak minus the RSS just before the call: what the call itself
    needed), or an ``error`` string.
    """
    cmd = [sys.executable, "-m", "benchmarks.child", case, json.dumps(params), str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env,
                              check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout_s:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": f"exit {done.returncode}: {tail[0][:200]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def interleaved_times(fns: dict[str, Callable[[], Any]], repeats: int,
                      budget_s: float = 60.0) -> dict[str, dict[str, Any]]:
    """Median times of several calls measured in alternation (A, B, C, A, B, C, …).

    On a shared machine the load drifts; alternating the cases of a group exposes them to the
    same drift, so their ratios stay meaningful. Each call gets one warm-up and as many repeats
    as :func:`median_time` would give it.
    """
    first = {}
    for name, fn in fns.items():
        start = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - start
    counts = {}
    for name, t in first.items():
        n = max(1, min(repeats, int(budget_s // max(t, 1e-9))))
        counts[name] = 3 if n < 3 and t * 3 <= budget_s else n
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(max(counts.values())):
        for name, fn in fns.items():
            if r < counts[name]:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: {"median_s": statistics.median(ts), "times_s": ts, "repeats": len(ts)}
            for name, ts in times.items()}
