"""Markdown table of a benchmark JSON, or rows for the docs' table renderer.

Usage::

    python -m benchmarks.report                                  # results/bench/bench.json
    python -m benchmarks.report results/bench/bench.json --suites sets
    python -m benchmarks.report bench.json --docs-json docs/results/bench_sets.json --suites sets

``--docs-json`` writes ``{"meta": ..., "rows": [...]}`` with one row per measured call (the
table's cells as text, plus the raw numbers), for ``scripts/render_docs_tables.py``; the
benchmark's ``meta`` must name its ``commit`` and ``machine`` (``benchmarks.run`` records both).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from n3seq._provenance import write_results_json

DEFAULT_PATH = Path("results/bench/bench.json")


def _cells(row: dict[str, Any]) -> dict[str, str]:
    """The table's text cells of one measured call."""
    r = row["result"]
    label = row["label"] + (" (baseline)" if row["baseline"] else "")
    if "median_s" not in r:
        return {"group": row["group"], "case": label, "median": r.get("error", "not run"),
                "ratio": "", "peak": "", "call": ""}
    t = r["median_s"]
    return {"group": row["group"], "case": label,
            "median": f"{t * 1e3:.0f} ms" if t < 10 else f"{t:.1f} s",
            "ratio": f"{r['ratio']:.2f}×" if "ratio" in r else "",
            "peak": f"{r['peak_mib']:.0f}" if "peak_mib" in r else "",
            "call": f"{r['call_mib']:.0f}" if "call_mib" in r else ""}


def _select(payload: dict[str, Any], suites: list[str] | None) -> list[dict[str, Any]]:
    rows = payload["results"]
    return rows if not suites else [r for r in rows if r["suite"] in suites]


def markdown_table(payload: dict[str, Any], suites: list[str] | None = None) -> str:
    """One row per measured call: median time, ratio to its group's baseline, peak memory."""
    lines = ["| group | case | median | ratio | peak RSS (MiB) | call (MiB) |",
             "|---|---|---:|---:|---:|---:|"]
    for row in _select(payload, suites):
        c = _cells(row)
        lines.append(f"| {c['group']} | {c['case']} | {c['median']} | {c['ratio']} | "
                     f"{c['peak']} | {c['call']} |")
    return "\n".join(lines)


def docs_rows(payload: dict[str, Any], suites: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows for ``scripts/render_docs_tables.py``: the text cells (``group``, ``case``,
    ``median``, ``ratio``, ``peak``, ``call``) and the raw ``median_s``, ``ratio_value``,
    ``peak_mib`` and ``call_mib``."""
    out = []
    for row in _select(payload, suites):
        r = row["result"]
        out.append({"suite": row["suite"], **_cells(row),
                    **{k: r[k] for k in ("median_s", "peak_mib", "call_mib") if k in r},
                    **({"ratio_value": r["ratio"]} if "ratio" in r else {})})
    return out


def load(path: Path) -> dict[str, Any]:
    """A benchmark JSON; ``ValueError`` naming the path when it is not one."""
    if not path.is_file():
        raise ValueError(f"benchmark JSON {path} not found (run python -m benchmarks.run)")
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or not {"meta", "results"} <= set(payload):
        raise ValueError(f"{path} is not a benchmarks.run JSON (needs 'meta' and 'results')")
    return payload


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Print the markdown table of a benchmarks.run JSON, or write its rows for "
                    "scripts/render_docs_tables.py.")
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH,
                        help=f"JSON written by python -m benchmarks.run (default: {DEFAULT_PATH})")
    parser.add_argument("--suites", type=lambda s: [x for x in s.split(",") if x],
                        default=None, help="comma-separated suites to keep (default: all)")
    parser.add_argument("--docs-json", type=Path, default=None,
                        help="also write {meta, rows} here, for scripts/render_docs_tables.py")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        payload = load(args.path)
        meta = payload["meta"]
        if args.docs_json is not None:
            write_results_json(args.docs_json, docs_rows(payload, args.suites), meta,
                               skipped=payload.get("skipped", {}))
    except ValueError as exc:
        print(f"benchmarks.report: error: {exc}", file=sys.stderr)
        return 2
    wall = f", {meta['wall_s']:.0f} s" if "wall_s" in meta else ""
    print(f"<!-- {args.path}: {meta.get('date', '?')}, torch {meta.get('torch', '?')}, "
          f"{meta.get('threads', '?')} thread(s){wall} -->")
    print(markdown_table(payload, args.suites))
    for suite, reason in payload.get("skipped", {}).items():
        if not args.suites or suite in args.suites:
            print(f"\n*{suite}*: skipped — {reason}")
    if args.docs_json is not None:
        print(f"wrote {args.docs_json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
