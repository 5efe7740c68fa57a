"""Merges ``n3seq-image evaluate --json`` files into one table JSON for the docs renderer.

Each evaluate file holds one data set at one σ (denoising) or one scale (super-resolution).
A docs table has one row per (data set, method[, noise]) and one column per σ or scale, so
this script pivots them::

    python scripts/merge_results.py --out docs/results/sr.json /tmp/sr/*.json

Every output row has ``set`` (the data folder's name, e.g. ``set5``), ``method``, ``noise``
(denoising only) and, for each σ or scale ``v`` that row was measured at, ``psnr_<v>``,
``ssim_<v>`` and ``cell_<v>`` (``"33.66 / 0.9299"``), where ``<v>`` is ``x2`` for a scale and
``s25`` for a σ; where a row was not measured at a ``v`` that other rows were, ``cell_<v>``
is ``"–"`` (and ``psnr_<v>``, ``ssim_<v>`` are absent). A row met again with the same PSNR
(the noisy input is in every denoising file) is kept once; with a different one it is an
error. Rows keep the order in which sets and methods first appear. ``meta`` records every
source file with its own commit, machine and wall time; its ``commit`` and ``machine`` are
the sources' (comma-joined when they differ) so that the page stamp says where the numbers
came from.
The output is written atomically.

Then render the page with ``python scripts/render_docs_tables.py docs/sr.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from n3seq._files import atomic_write  # standard library only, no torch

#: The table cell of a value that was not measured.
MISSING = "–"


def column_key(doc: dict[str, Any], source: Path) -> str:
    """``x<scale>`` for an SR result, ``s<sigma>`` for a denoising one."""
    if doc.get("task") == "sr":
        return f"x{int(doc['scale'])}"
    if "sigma" in doc:
        sigma = float(doc["sigma"])
        return f"s{int(sigma)}" if sigma.is_integer() else f"s{sigma:g}"
    raise ValueError(f"{source}: neither an SR result (task 'sr', scale) nor a denoising one "
                     "(sigma)")


def merge(paths: list[Path]) -> dict[str, Any]:
    """The merged ``{"meta", "rows"}`` document (see the module docstring)."""
    if not paths:
        raise ValueError("no input files")
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    sources = []
    for path in paths:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or "summary" not in doc or "meta" not in doc:
            raise ValueError(f"{path}: not an `n3seq-image evaluate --json` file "
                             "(needs 'meta' and 'summary')")
        key = column_key(doc, path)
        name = Path(str(doc.get("data", path.stem))).name
        noise = doc.get("noise")
        for entry in doc["summary"]:
            ident = (name, str(entry["method"])) + ((str(noise),) if noise else ())
            row = rows.setdefault(ident, {"set": name, "method": entry["method"],
                                          **({"noise": noise} if noise else {})})
            if f"psnr_{key}" in row:
                # The noisy input (or bicubic) comes with every method's file: the same
                # numbers again are fine, different ones mean mismatched runs.
                if abs(row[f"psnr_{key}"] - entry["psnr"]) > 1e-9:
                    raise ValueError(f"{path}: {name} / {entry['method']} at {key} appears "
                                     f"twice with different PSNRs ({row[f'psnr_{key}']:.4f} "
                                     f"and {entry['psnr']:.4f})")
                continue
            row[f"psnr_{key}"] = entry["psnr"]
            row[f"ssim_{key}"] = entry["ssim"]
            row[f"cell_{key}"] = f"{entry['psnr']:.2f} / {entry['ssim']:.4f}"
        sources.append({"file": path.name, **{k: doc["meta"].get(k) for k in
                                              ("commit", "dirty", "machine", "date", "wall_s")}})

    # A row not measured at some σ or scale gets a "–" cell there, so that one table can
    # show, e.g., the σ = 25 models beside the blind one measured at every σ.
    keys = list(dict.fromkeys(k for row in rows.values() for k in row if k.startswith("cell_")))
    for row in rows.values():
        for key in keys:
            row.setdefault(key, MISSING)

    def joined(field: str) -> str:
        return ", ".join(dict.fromkeys(str(s[field]) for s in sources))

    first = paths[0]
    meta = {**json.loads(first.read_text())["meta"], "commit": joined("commit"),
            "machine": joined("machine"),
            "dirty": sorted({d for s in sources for d in (s["dirty"] or [])}),
            "date": max(str(s["date"]) for s in sources),
            "wall_s": round(sum(float(s["wall_s"] or 0) for s in sources), 1),
            "sources": sources}
    meta.pop("command", None)
    return {"meta": meta, "rows": list(rows.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="evaluate --json files")
    parser.add_argument("--out", type=Path, required=True, help="merged JSON to write")
    args = parser.parse_args(argv)
    try:
        doc = merge(args.inputs)
    except (OSError, ValueError, KeyError) as exc:
        print(f"merge_results: error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(doc, indent=1) + "\n"
    atomic_write(args.out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(f"wrote {args.out}: {len(doc['rows'])} rows from {len(args.inputs)} files",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
