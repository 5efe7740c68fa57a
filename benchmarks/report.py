"""Markdown table of a benchmark JSON, or rows for the docs' table renderer.

Usage::

    python -m benchmarks.report                                  # results/bench/bench.json
    python -m benchmarks.report results/bench/bench.json --suites sets
    python -m benchmarks.report bench.json --docs-json docs/results/bench_sets.json --suites sets

``--docs-json`` writes ``{"meta": ..., "rows": [...]}`` with one row per measured call (the
table's cells as text, plus the raw numbers), for ``scripts/render_docs_tables.py``; the
benchmark's ``meta`` must name its ``commit`` and ``machine`` (``benchmarks.run`` records both).
Rows of the ``denoise`` suite also have seconds per megapixel, the autocast dtype that ran,
the PSNR of the output and its difference to the group's float32 baseline; the table gains
those columns when it holds such rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from n3seq._provenance import write_results_json

DEFAULT_PATH = Path("results/bench/bench.json")


#: Quality columns (header, text-cell key) shown when a row has a PSNR (the denoise
#: suite, whose baseline is float32).
QUALITY_COLUMNS = (("s/MP", "per_mp"), ("dtype", "dtype"), ("PSNR (dB)", "psnr"),
                   ("Δ PSNR vs float32 (dB)", "psnr_delta"))


def _seconds(t: float) -> str:
    return f"{t * 1e3:.0f} ms" if t < 10 else f"{t:.1f} s"


def _quality_cells(r: dict[str, Any]) -> dict[str, str]:
    """Seconds per megapixel, autocast dtype, PSNR and its Δ to the baseline (or empty)."""
    per_mp = r.get("s_per_mp")
    return {"per_mp": "" if per_mp is None else f"{per_mp:.{1 if per_mp >= 10 else 2}f}",
            "dtype": r.get("dtype", ""),
            "psnr": f"{r['psnr_db']:.2f}" if "psnr_db" in r else "",
            "psnr_delta": f"{r['psnr_delta_db']:+.3f}" if "psnr_delta_db" in r else ""}


def _cells(row: dict[str, Any]) -> dict[str, str]:
    """The table's text cells of one measured call."""
    r = row["result"]
    label = row["label"] + (" (baseline)" if row["baseline"] else "")
    if "median_s" not in r:
        return {"group": row["group"], "case": label, "median": r.get("error", "not run"),
                "ratio": "", "peak": "", "call": "", **_quality_cells({})}
    return {"group": row["group"], "case": label, "median": _seconds(r["median_s"]),
            "ratio": f"{r['ratio']:.2f}×" if "ratio" in r else "",
            "peak": f"{r['peak_mib']:.0f}" if "peak_mib" in r else "",
            "call": f"{r['call_mib']:.0f}" if "call_mib" in r else "", **_quality_cells(r)}


def _select(payload: dict[str, Any], suites: list[str] | None) -> list[dict[str, Any]]:
    rows = payload["results"]
    return rows if not suites else [r for r in rows if r["suite"] in suites]


def markdown_table(payload: dict[str, Any], suites: list[str] | None = None) -> str:
    """One row per measured call: median time, ratio to its group's baseline, peak memory;
    with denoise rows also :data:`QUALITY_COLUMNS`."""
    rows = _select(payload, suites)
    quality = any("psnr_db" in row["result"] for row in rows)
    extra = QUALITY_COLUMNS if quality else ()
    lines = ["| group | case | median | ratio | peak RSS (MiB) | call (MiB) |"
             + "".join(f" {head} |" for head, _ in extra),
             "|---|---|---:|---:|---:|---:|" + "".join(
                 "---|" if key == "dtype" else "---:|" for _, key in extra)]
    for row in rows:
        c = _cells(row)
        lines.append(f"| {c['group']} | {c['case']} | {c['median']} | {c['ratio']} | "
                     f"{c['peak']} | {c['call']} |" + "".join(f" {c[key]} |" for _, key in extra))
    return "\n".join(lines)


def docs_rows(payload: dict[str, Any], suites: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows for ``scripts/render_docs_tables.py``: the text cells (``group``, ``case``,
    ``median``, ``ratio``, ``peak``, ``call``, and ``per_mp``, ``dtype``, ``psnr``,
    ``psnr_delta``, empty outside the denoise suite) and the raw ``median_s``,
    ``ratio_value``, ``peak_mib``, ``call_mib`` and, where measured, ``s_per_mp``,
    ``psnr_db``, ``psnr_delta_db``, ``psnr_noisy_db``, ``megapixels``, ``tiles``,
    ``processed_megapixels`` and ``bf16_native``."""
    raw = ("median_s", "peak_mib", "call_mib", "s_per_mp", "psnr_db", "psnr_delta_db",
           "psnr_noisy_db", "megapixels", "tiles", "processed_megapixels", "bf16_native")
    out = []
    for row in _select(payload, suites):
        r = row["result"]
        out.append({"suite": row["suite"], **_cells(row), **{k: r[k] for k in raw if k in r},
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
