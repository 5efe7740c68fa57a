"""Markdown table of a benchmark JSON: ``python -m benchmarks.report [bench.json]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def markdown_table(payload: dict[str, Any]) -> str:
    """One row per measured call: median time, ratio to its group's baseline, peak memory."""
    lines = ["| group | case | median | ratio | peak RSS (MiB) | call (MiB) |",
             "|---|---|---:|---:|---:|---:|"]
    for row in payload["results"]:
        r = row["result"]
        label = row["label"] + (" (baseline)" if row["baseline"] else "")
        if "median_s" not in r:
            lines.append(f"| {row['group']} | {label} | {r.get('error', 'not run')} | | | |")
            continue
        t = r["median_s"]
        time = f"{t * 1e3:.0f} ms" if t < 10 else f"{t:.1f} s"
        ratio = f"{r['ratio']:.2f}×" if "ratio" in r else ""
        peak = f"{r['peak_mib']:.0f}" if "peak_mib" in r else ""
        call = f"{r['call_mib']:.0f}" if "call_mib" in r else ""
        lines.append(f"| {row['group']} | {label} | {time} | {ratio} | {peak} | {call} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0] if argv else "results/bench/bench.json")
    payload = json.loads(path.read_text())
    meta = payload["meta"]
    print(f"<!-- {path}: {meta['date']}, torch {meta['torch']}, {meta['threads']} thread(s), "
          f"{meta['wall_s']:.0f} s -->")
    print(markdown_table(payload))
    for suite, reason in payload.get("skipped", {}).items():
        print(f"\n*{suite}*: skipped — {reason}")


if __name__ == "__main__":
    main()
