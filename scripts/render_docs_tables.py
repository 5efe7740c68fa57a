"""Renders the docs' results tables from the JSON files experiments write.

A table lives in a markdown page between two marker comments; everything between them is
generated, so edit the markers (or the JSON), never the table::

    <!-- table:sets-seed0 src=results/sets.json where="seed=0" cols="method|params|F1=f1:.3f" -->
    <!-- /table:sets-seed0 -->

Leave a blank line before the start marker (so markdown sees an HTML block). Marker
attributes (``key=value``, values with spaces in double quotes):

- ``src`` (required): the result JSON, relative to the page. It must be an object with
  ``meta`` (at least ``commit`` and ``machine``, see ``n3seq._provenance.run_metadata``) and a
  list of row objects (``rows`` by default).
- ``cols`` (required): columns separated by ``|``. Each is ``[Header=]key[:format]``, e.g.
  ``F1=f1:.3f`` (header defaults to the key), or ``Header={template}`` with any
  ``str.format`` template over the row, e.g. ``F1 (mean ± sd)={f1_mean:.4f} ± {f1_sd:.4f}``.
  A column whose cells are all numbers is right-aligned.
- ``rows``: the top-level key holding the rows (default ``rows``).
- ``where``: keep rows whose fields equal the given values, ``"key=value,key=value"``
  (compared as text, so ``seed=0`` matches the number 0); ``key=a;b`` keeps rows whose
  ``key`` is any of ``a`` and ``b``.

Under each table the script writes one line naming the JSON, its commit (and any uncommitted
tracked files at run time), the machine, torch version, threads and date.

Usage (from the repository root)::

    python scripts/render_docs_tables.py                 # re-render README.md and docs/**/*.md
    python scripts/render_docs_tables.py docs/sets.md    # one page
    python scripts/render_docs_tables.py --check         # exit 1 if any page is out of date

``make test`` runs the check (tests/test_render_docs_tables.py). Exit status 2 means a bad
marker or JSON; the message names the page, the table and what is wrong.

Numbers quoted in the prose around a table go stale when the table is re-rendered, so
``make test`` also checks them: a decimal with four or more significant digits in prose must
equal, to the digits shown, a number of the page's tables, of the JSON its markers read, or of
a file named in a ``<!-- number-sources: PATH ... -->`` comment (relative to the page), or be
listed, with the reason, in a ``<!-- quoted-numbers: N ... (why) -->`` comment (published
figures, constants of a standard, development runs).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import string
import sys
from pathlib import Path
from typing import Any

from n3seq._files import atomic_write  # standard library only, no torch

ROOT = Path(__file__).resolve().parents[1]
START = re.compile(r"^<!-- table:(?P<name>[\w.-]+)(?P<attrs>.*?)-->\s*$")
END = "<!-- /table:{name} -->"
NUMERIC = re.compile(r"^[+\-−]?[\d.,]+(?:e[+\-]?\d+)?(?:\s*(?:±|/)\s*[+\-−]?[\d.,]+)?"
                     r"\s*(?:%|×|x|ms|s|dB|MiB)?$")


class TableError(ValueError):
    """A marker, a JSON file or a row cannot be rendered."""


def parse_attrs(text: str, where: str) -> dict[str, str]:
    """Parses ``key=value`` pairs of a start marker (``where`` names it in errors)."""
    try:
        parts = shlex.split(text)
    except ValueError as exc:
        raise TableError(f"{where}: cannot parse marker attributes {text.strip()!r}: "
                         f"{exc}") from exc
    attrs = {}
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq or key not in {"src", "cols", "rows", "where"}:
            raise TableError(f"{where}: bad marker attribute {part!r}; expected src=, cols=, "
                             "rows= or where=")
        attrs[key] = value
    for key in ("src", "cols"):
        if not attrs.get(key):
            raise TableError(f"{where}: the marker needs {key}=")
    return attrs


def parse_columns(spec: str, where: str) -> list[tuple[str, str]]:
    """``cols`` to ``(header, str.format template)`` pairs."""
    columns = []
    for col in spec.split("|"):
        col = col.strip()
        if not col:
            raise TableError(f"{where}: empty column in cols={spec!r}")
        header, eq, body = col.partition("=")
        if not eq:
            header, body = "", col
        if "{" in body:
            template = body
        else:
            key, colon, fmt = body.partition(":")
            template = "{" + key + (":" + fmt if colon else "") + "}"
            header = header or key
        columns.append((header.strip(), template))
    return columns


def load_results(path: Path, rows_key: str, where: str) -> tuple[dict[str, Any], list[dict]]:
    """The ``meta`` and the row list of a result JSON."""
    if not path.is_file():
        raise TableError(f"{where}: result file {path} does not exist")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TableError(f"{where}: {path} is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("meta"), dict):
        raise TableError(f"{where}: {path} must be an object with a 'meta' object "
                         "(write it with n3seq._provenance.write_results_json)")
    meta = payload["meta"]
    missing = [k for k in ("commit", "machine") if k not in meta]
    if missing:
        raise TableError(f"{where}: {path} meta lacks {missing}")
    rows = payload.get(rows_key)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TableError(f"{where}: {path} has no list of row objects under {rows_key!r} "
                         f"(top-level keys: {sorted(payload)})")
    return meta, rows


def select_rows(rows: list[dict], spec: str | None, where: str) -> list[dict]:
    """Rows that meet every ``key=value`` (or ``key=a;b``: any of them) of ``spec``."""
    if not spec:
        return rows
    wanted = []
    for cond in spec.split(","):
        key, eq, value = cond.partition("=")
        if not eq:
            raise TableError(f"{where}: bad where condition {cond!r}; expected key=value")
        wanted.append((key.strip(), {v.strip() for v in value.split(";")}))
    return [r for r in rows if all(k in r and str(r[k]) in vs for k, vs in wanted)]


def _check_finite(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise TableError(f"{where}: value {value!r} is not finite")
    if isinstance(value, dict):
        for v in value.values():
            _check_finite(v, where)
    elif isinstance(value, list):
        for v in value:
            _check_finite(v, where)


def format_cell(template: str, row: dict, where: str) -> str:
    """One cell: ``template`` formatted over ``row``, pipes escaped; non-finite values fail."""
    for _, field, _, _ in string.Formatter().parse(template):
        if field:
            key = re.split(r"[.\[]", field, maxsplit=1)[0]
            if key not in row:
                raise TableError(f"{where}: row has no field {key!r} (fields: {sorted(row)})")
            _check_finite(row[key], f"{where}, field {key!r}")
    try:
        text = template.format(**row)
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise TableError(f"{where}: cannot format {template!r}: {exc!r}") from exc
    return text.replace("|", "\\|")


def stamp(src: str, meta: dict[str, Any]) -> str:
    """The provenance line under a table."""
    commit = f"commit `{meta['commit']}`"
    dirty = meta.get("dirty") or []
    if dirty:
        commit += f" with {len(dirty)} uncommitted file(s)"
    extras = []
    if "torch" in meta:
        extras.append(f"torch {meta['torch']}")
    if "threads" in meta:
        extras.append(f"{meta['threads']} thread(s)")
    if meta.get("date"):
        extras.append(str(meta["date"]).split(" ")[0])
    tail = "; " + ", ".join(extras) if extras else ""
    return f"*Rendered from `{src}`: {commit}, {meta['machine']}{tail}.*"


def render_table(attrs: dict[str, str], base: Path, where: str) -> str:
    """The generated block (table and stamp) for one marker."""
    meta, rows = load_results(base / attrs["src"], attrs.get("rows", "rows"), where)
    rows = select_rows(rows, attrs.get("where"), where)
    if not rows:
        raise TableError(f"{where}: no rows in {attrs['src']} match where={attrs.get('where')!r}")
    columns = parse_columns(attrs["cols"], where)
    cells = [[format_cell(t, row, f"{where}, row {i}") for _, t in columns]
             for i, row in enumerate(rows)]
    aligns = ["---:" if all(NUMERIC.match(r[j].strip()) or r[j].strip() == "–" for r in cells)
              else "---"
              for j in range(len(columns))]
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "|".join(aligns) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(["", *lines, "", stamp(attrs["src"], meta), ""])


def render_page(text: str, base: Path, page: str = "page") -> str:
    """``text`` with every marked table re-rendered; ``base`` is the page's folder."""
    lines = text.split("\n")
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(lines):
        match = START.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        name = match["name"]
        where = f"{page}:{i + 1}: table {name!r}"
        if name in seen:
            raise TableError(f"{where}: a second table with this name in the page")
        seen.add(name)
        end = END.format(name=name)
        try:
            close = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == end)
        except StopIteration:
            raise TableError(f"{where}: no closing {end}") from None
        nested = [j for j in range(i + 1, close) if START.match(lines[j])]
        if nested:
            raise TableError(f"{where}: another table marker at line {nested[0] + 1} before {end}")
        out.append(lines[i])
        out.extend(render_table(parse_attrs(match["attrs"], where), base, where).split("\n"))
        out.append(lines[close])
        i = close + 1
    return "\n".join(out)


def default_pages(root: Path = ROOT) -> list[Path]:
    """README.md and every page under docs/."""
    return [p for p in [root / "README.md", *sorted((root / "docs").rglob("*.md"))] if p.is_file()]


def run(pages: list[Path], check: bool) -> list[Path]:
    """Renders ``pages`` (in place unless ``check``); returns the pages that were stale."""
    stale = []
    for path in pages:
        text = path.read_text(encoding="utf-8")
        new = render_page(text, path.parent, str(path))
        if new != text:
            stale.append(path)
            if not check:
                atomic_write(path, lambda tmp, new=new: tmp.write_text(new, encoding="utf-8"))
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Render the docs' results tables from experiment JSON files "
                    "(between <!-- table:NAME ... --> and <!-- /table:NAME --> markers).")
    parser.add_argument("pages", nargs="*", type=Path,
                        help="markdown pages (default: README.md and docs/**/*.md)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if any page differs from its JSON")
    args = parser.parse_args(argv)
    pages = args.pages or default_pages()
    try:
        stale = run(pages, args.check)
    except (TableError, OSError) as exc:
        print(f"render_docs_tables: error: {exc}", file=sys.stderr)
        return 2
    for path in stale:
        verb = "out of date" if args.check else "rendered"
        print(f"{path}: {verb}", file=sys.stderr)
    if args.check and stale:
        print("run: python scripts/render_docs_tables.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
