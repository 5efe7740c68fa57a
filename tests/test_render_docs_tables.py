"""scripts/render_docs_tables.py: tables between markers, rendered from result JSON."""

import json
import re
from pathlib import Path

import pytest

from n3seq._provenance import run_metadata, write_results_json
from tests._scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


rdt = load_script("render_docs_tables")

META = {"commit": "abc1234567", "dirty": [], "machine": "Test CPU, 2 cores", "torch": "2.0",
        "threads": 1, "date": "2025-01-02 03:04:05 +0000"}
ROWS = [{"method": "with N³", "seed": 0, "f1": 0.96123, "sd": 0.0024, "params": 49442},
        {"method": "without N³", "seed": 0, "f1": 0.95, "sd": 0.001, "params": 49057},
        {"method": "with N³", "seed": 1, "f1": 0.5, "sd": 0.1, "params": 49442}]
MARKER = ('<!-- table:t src=results/r.json where="seed=0" '
          'cols="method|params|F1=f1:.3f|F1 ± sd={f1:.2f} ± {sd:.4f}" -->')


def _page(tmp_path, body, rows=ROWS, meta=META):
    (tmp_path / "results").mkdir(exist_ok=True)
    (tmp_path / "results" / "r.json").write_text(json.dumps({"meta": meta, "rows": rows}))
    page = tmp_path / "page.md"
    page.write_text(body)
    return page


def test_renders_filtered_rows_formats_alignment_and_stamp(tmp_path):
    page = _page(tmp_path, f"# Title\n\n{MARKER}\nstale text\n<!-- /table:t -->\n\nafter\n")
    assert rdt.main([str(page)]) == 0
    text = page.read_text()
    assert text.startswith(f"# Title\n\n{MARKER}\n\n| method | params | F1 | F1 ± sd |\n")
    assert "|---|---:|---:|---:|\n" in text
    assert "| with N³ | 49442 | 0.961 | 0.96 ± 0.0024 |" in text
    assert "| without N³ | 49057 | 0.950 | 0.95 ± 0.0010 |" in text
    assert "0.500" not in text  # seed 1 filtered out
    assert "stale text" not in text
    assert ("*Rendered from `results/r.json`: commit `abc1234567`, Test CPU, 2 cores; torch 2.0, "
            "1 thread(s), 2025-01-02.*\n\n<!-- /table:t -->\n\nafter\n") in text


def test_where_with_alternatives_keeps_rows_matching_any(tmp_path):
    rows = [*ROWS, {"method": "other", "seed": 0, "f1": 0.25, "sd": 0.0, "params": 1}]
    marker = MARKER.replace('where="seed=0"', 'where="seed=0,method=other;without N³"')
    page = _page(tmp_path, f"{marker}\n<!-- /table:t -->\n", rows=rows)
    assert rdt.main([str(page)]) == 0
    text = page.read_text()
    assert "| other | 1 | 0.250 |" in text and "| without N³ | 49057 |" in text
    assert "| with N³ |" not in text


def test_check_fails_on_a_stale_page_and_passes_once_rendered(tmp_path, capsys):
    page = _page(tmp_path, f"{MARKER}\n| old | table |\n<!-- /table:t -->\n")
    before = page.read_text()
    assert rdt.main(["--check", str(page)]) == 1
    assert page.read_text() == before  # --check changes nothing
    assert "out of date" in capsys.readouterr().err
    assert rdt.main([str(page)]) == 0
    assert rdt.main(["--check", str(page)]) == 0
    # A changed number in the JSON makes the page stale again.
    rows = [dict(ROWS[0], f1=0.5), *ROWS[1:]]
    (tmp_path / "results" / "r.json").write_text(json.dumps({"meta": META, "rows": rows}))
    assert rdt.main(["--check", str(page)]) == 1


def test_dirty_tree_is_named_in_the_stamp(tmp_path):
    page = _page(tmp_path, f"{MARKER}\n<!-- /table:t -->\n", meta={**META, "dirty": ["a", "b"]})
    rdt.main([str(page)])
    assert "commit `abc1234567` with 2 uncommitted file(s)" in page.read_text()


@pytest.mark.parametrize(("body", "rows", "meta", "message"), [
    (f"{MARKER}\n", ROWS, META, "no closing <!-- /table:t -->"),
    (MARKER.replace("r.json", "missing.json") + "\n<!-- /table:t -->\n", ROWS, META,
     "does not exist"),
    (f"{MARKER}\n<!-- /table:t -->\n", ROWS, {"commit": "x"}, "meta lacks ['machine']"),
    (f"{MARKER}\n<!-- /table:t -->\n", [{"method": "m", "seed": 0}], META, "no field 'params'"),
    (f"{MARKER}\n<!-- /table:t -->\n", [dict(ROWS[0], f1=float("nan"))], META, "not finite"),
    (MARKER.replace("seed=0", "seed=7") + "\n<!-- /table:t -->\n", ROWS, META, "no rows"),
    ("<!-- table:t cols=a -->\n<!-- /table:t -->\n", ROWS, META, "needs src="),
    ("<!-- table:t src=results/r.json cols=a colour=red -->\n<!-- /table:t -->\n", ROWS, META,
     "bad marker attribute 'colour=red'"),
    (f"{MARKER}\n<!-- /table:t -->\n{MARKER}\n<!-- /table:t -->\n", ROWS, META,
     "second table"),
])
def test_bad_markers_and_results_exit_2_naming_the_problem(tmp_path, capsys, body, rows, meta,
                                                            message):
    page = _page(tmp_path, body, rows=rows, meta=meta)
    assert rdt.main([str(page)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "table 't'" in err or "table" in err
    assert page.read_text() == body


def test_pipes_in_values_are_escaped(tmp_path):
    page = _page(tmp_path, f"{MARKER}\n<!-- /table:t -->\n",
                 rows=[dict(ROWS[0], method="a|b")])
    rdt.main([str(page)])
    assert "| a\\|b | 49442 |" in page.read_text()


def test_write_results_json_round_trips_with_commit_and_machine(tmp_path):
    meta = run_metadata(wall_s=1.234, command=["x", "--y"])
    assert meta["commit"] != "" and meta["machine"] and meta["command"] == "x --y"
    assert meta["wall_s"] == 1.2
    # uncommitted tracked files are listed by their real paths (first letter kept)
    assert all((ROOT / p.split("/")[0]).exists() for p in meta["dirty"]), meta["dirty"]
    path = write_results_json(tmp_path / "results" / "r.json", ROWS, meta, summary=[1])
    payload = json.loads(path.read_text())
    assert payload == {"meta": meta, "rows": ROWS, "summary": [1]}
    assert not list(path.parent.glob("*.tmp"))
    with pytest.raises(ValueError, match="missing \\['machine'\\]"):
        write_results_json(tmp_path / "x.json", ROWS, {"commit": "c"})


def test_repository_pages_are_up_to_date_with_their_results():
    stale = rdt.run(rdt.default_pages(ROOT), check=True)
    assert stale == [], (f"{[str(p) for p in stale]} differ from their result JSON; run "
                         "python scripts/render_docs_tables.py")


def test_evaluate_json_renders_one_row_per_method(tmp_path, capsys):
    from n3seq_image.cli import main
    from tests.image._helpers import tiny_weights, write_folder

    data = write_folder(tmp_path / "data", count=2, size=40)
    weights = tiny_weights(tmp_path / "tiny.safetensors")
    assert main(["evaluate", "--model", str(weights), "--data", str(data), "--sigma", "25",
                 "--json", str(tmp_path / "set.json"), "--no-progress"]) == 0
    doc = json.loads((tmp_path / "set.json").read_text())
    assert {"commit", "machine", "wall_s"} <= set(doc["meta"])
    assert [r["method"] for r in doc["summary"]] == list(doc["mean"])
    page = ('\n<!-- table:t src=set.json rows=summary cols="method|PSNR=psnr:.2f|images" -->\n'
            "<!-- /table:t -->\n")
    text = rdt.render_page(page, tmp_path)
    noisy = doc["mean"]["noisy"]["psnr"]
    assert f"| noisy | {noisy:.2f} | 2 |" in text



#: Tables with decimal numbers that are deliberately not rendered from a result JSON, with why.
HAND_TABLES = {
    ("docs/sr.md", "| set | method | ×2 | ×3 | ×4 |"):
        "the published figures of the VDSR paper, not our measurements",
    ("docs/performance.md",
     "| target | measured (quiet, 2 threads; the run above) | floor on this machine | status |"):
        "verdicts on the performance targets, quoting the rendered benchmark tables above",
    ("docs/timeseries.md", "| dataset | tokens | tasks (test episodes) | training episodes |"):
        "the experiment's configuration (noise levels), not results",
}
DECIMAL = re.compile(r"\d\.\d")


def _tables_outside_markers(text: str) -> list[list[str]]:
    """The markdown tables (lists of rows) of ``text`` that are not between render markers."""
    tables: list[list[str]] = []
    inside, previous = False, ""
    for line in text.splitlines():
        if line.startswith("<!-- table:"):
            inside = True
        elif line.startswith("<!-- /table:"):
            inside = False
        elif line.startswith("|") and not inside:
            if previous.startswith("|"):
                tables[-1].append(line.strip())
            else:
                tables.append([line.strip()])
        previous = line
    return tables


def _is_results_table(rows: list[str]) -> bool:
    """A table whose body (below the header and rule) holds decimal numbers."""
    return any(DECIMAL.search(row) for row in rows[2:])


def test_tables_outside_markers_and_results_tables_are_recognised():
    page = ("| σ | ours |\n|---|---|\n| 25 | 30.35 |\n\n<!-- table:t x -->\n| method |\n"
            "|---|\n| 1.5 |\n<!-- /table:t -->\n| layer | owns |\n|---|---|\n| core | v2 |\n")
    tables = _tables_outside_markers(page)
    assert [t[0] for t in tables] == ["| σ | ours |", "| layer | owns |"]
    assert [_is_results_table(t) for t in tables] == [True, False]


def test_results_tables_in_the_docs_are_rendered_from_result_json():
    hand = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        name = page.relative_to(ROOT).as_posix()
        for rows in _tables_outside_markers(page.read_text(encoding="utf-8")):
            if _is_results_table(rows) and (name, rows[0]) not in HAND_TABLES:
                hand.append(f"{name}: {rows[0]}")
    assert hand == [], ("hand-written results tables (put them between render markers, "
                        f"see scripts/render_docs_tables.py): {hand}")


# Prose that quotes a measured number must quote it from somewhere the page names, so that a
# re-rendered table cannot leave the sentence under it stale. A "quoted result" is a decimal
# with at least four significant digits in prose (not in code, inline code, comments or
# table rows). It must equal, to the digits shown, a number of the page's tables, of the JSON
# files its render markers read (src=...), of the files a `<!-- number-sources: PATH ... -->`
# comment names (relative to the page), or be listed in a `<!-- quoted-numbers: N ... -->`
# comment (figures quoted from papers, constants of a standard, development runs), which
# should say why.
PROSE_NUMBER = re.compile(r"(?<![\w.])[-−]?\d+\.\d+(?:e[-−]?\d+)?")
NUMBER_SOURCES = re.compile(r"<!-- number-sources: (.*?)-->", re.S)
QUOTED_NUMBERS = re.compile(r"<!-- quoted-numbers: (.*?)-->", re.S)
MARKER_SOURCE = re.compile(r"<!-- table:\S+ .*?\bsrc=\"?([^\s\"]+)")


def _significant_digits(number: str) -> int:
    return len(number.lstrip("-−").split("e")[0].replace(".", "").lstrip("0"))


def _prose_numbers(text: str) -> list[tuple[int, str]]:
    """``(line, number)`` of the quoted results in the prose of a page."""
    found, fenced = [], False
    text = re.sub(r"<!--.*?-->", lambda m: "\n" * m.group().count("\n"), text, flags=re.S)
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.lstrip().startswith("|"):
            continue
        prose = re.sub(r"`[^`]*`", "", line)
        found += [(number, n) for n in PROSE_NUMBER.findall(prose) if _significant_digits(n) >= 4]
    return found


def _source_numbers(text: str) -> set[str]:
    """Every number written in the given text (tables, JSON, CSV), as it is written."""
    return {n.replace("−", "-") for n in re.findall(r"[-−]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text)}


def _shows(value: str, number: str) -> bool:
    """Whether ``value`` (from a source) shows as ``number`` to the digits ``number`` has."""
    try:
        x, n = float(value), float(number.replace("−", "-"))
    except ValueError:
        return False
    mantissa = number.lstrip("-−").split("e")[0]
    if (x < 0) != (n < 0):
        return False
    if "e" in number:
        digits = _significant_digits(number)
        return f"{abs(x):.{digits - 1}e}" == f"{abs(n):.{digits - 1}e}"
    return f"{abs(x):.{len(mantissa.split('.')[1])}f}" == mantissa


def _unsourced_numbers(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    sources = [line for line in text.splitlines() if line.lstrip().startswith("|")]
    files = [page.parent / src for src in MARKER_SOURCE.findall(text)]
    for listed in NUMBER_SOURCES.findall(text):
        files += [page.parent / name for name in listed.split()]
    for path in files:
        assert path.is_file(), f"{page}: number source {path} does not exist"
        sources.append(path.read_text(encoding="utf-8"))
    quoted = {n for listed in QUOTED_NUMBERS.findall(text) for n in PROSE_NUMBER.findall(listed)}
    values = _source_numbers("\n".join(sources))
    return [f"line {line}: {n}" for line, n in _prose_numbers(text)
            if n not in quoted and not any(_shows(v, n) for v in values)]


def test_a_quoted_number_must_be_found_in_its_page_sources(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"rows": [{"psnr": 30.1549, "mse": 0.00112031}]}))
    (tmp_path / "log.csv").write_text("step,val\n250,28.7449\n")
    page = tmp_path / "page.md"
    marker = "<!-- table:t src=r.json cols=\"psnr\" -->\n<!-- /table:t -->\n"
    page.write_text(marker + "We reach 30.15 dB and 0.001120 (1.120e-03); σ = 25.5.\n")
    assert _unsourced_numbers(page) == []  # 25.5 has 3 digits: not a quoted result
    page.write_text(marker + "We reach 30.16 dB; `--lr 2.514e-4` is code.\n```\n1.2345\n```\n")
    assert _unsourced_numbers(page) == ["line 3: 30.16"]
    page.write_text(marker + "It scored 28.74 dB, the paper 29.97.\n"
                    "<!-- number-sources: log.csv -->\n<!-- quoted-numbers: 29.97 (paper) -->\n")
    assert _unsourced_numbers(page) == []
    page.write_text("Stale: 28.75.\n<!-- number-sources: log.csv -->\n")
    assert _unsourced_numbers(page) == ["line 1: 28.75"]


def test_quoted_numbers_in_the_docs_come_from_their_sources():
    stale = {}
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        if found := _unsourced_numbers(page):
            stale[page.relative_to(ROOT).as_posix()] = found
    assert stale == {}, (
        "numbers quoted in prose that no source of their page holds (update them from the "
        "rendered tables / JSON, or name their source with <!-- number-sources: PATH --> or "
        f"<!-- quoted-numbers: N (why) -->): {stale}")
