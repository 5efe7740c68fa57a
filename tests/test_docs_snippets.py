"""Every ```python block of README.md and docs/**/*.md runs, so a broken snippet fails CI.

A page's blocks run in order in one namespace (a later block may use an earlier one's names),
in an empty temporary folder that holds ``noisy.wav`` (one second of noisy 16 kHz speech-like
audio, for the audio page). A marker comment on the last non-blank line before a block
changes how it runs:

- ``<!-- snippet: skip REASON -->``: not run (needs files or hours); keep these few.
- ``<!-- snippet: data -->``: run from the repository root, as its ``../shared/data/...``
  paths are written; skipped when that folder is absent.

Leave a blank line between the marker and the fence.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
MARKER = re.compile(r"^<!-- snippet: (?P<kind>skip|data)(?:\s+(?P<reason>.*?))?\s*-->$")
ANY_MARKER = re.compile(r"^<!--\s*snippet\b")


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the first code line
    code: str
    kind: str | None  # None, "skip" or "data"
    reason: str


def extract_blocks(text: str, page: str) -> list[Block]:
    """The ```python blocks of a markdown page with their markers.

    Raises:
        ValueError: for a marker that is malformed, not followed by a python block, or a skip
            without a reason, or an unclosed fence.
    """
    lines = text.split("\n")
    blocks, pending, i = [], None, 0
    while i < len(lines):
        stripped = lines[i].strip()
        if ANY_MARKER.match(stripped):
            match = MARKER.match(stripped)
            if match is None:
                raise ValueError(f"{page}:{i + 1}: malformed snippet marker {stripped!r}")
            if match["kind"] == "skip" and not match["reason"]:
                raise ValueError(f"{page}:{i + 1}: a skip marker needs a reason")
            pending = (i + 1, match["kind"], match["reason"] or "")
        elif stripped.startswith("```"):
            fence = stripped[:len(stripped) - len(stripped.lstrip("`"))]
            lang = stripped[len(fence):].strip().split(" ")[0]
            try:
                close = next(j for j in range(i + 1, len(lines))
                             if lines[j].strip() == fence)
            except StopIteration:
                raise ValueError(f"{page}:{i + 1}: unclosed code fence") from None
            if lang == "python":
                kind, reason = (pending[1], pending[2]) if pending else (None, "")
                blocks.append(Block(page, i + 2, "\n".join(lines[i + 1:close]), kind, reason))
            elif pending:
                raise ValueError(f"{page}:{pending[0]}: snippet marker before a {lang!r} block")
            pending = None
            i = close
        elif stripped and pending:
            raise ValueError(f"{page}:{pending[0]}: snippet marker not followed by a code block")
        i += 1
    if pending:
        raise ValueError(f"{page}:{pending[0]}: snippet marker not followed by a code block")
    return blocks


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


PAGES = [p for p in pages() if "```python" in p.read_text(encoding="utf-8")]


def _write_noisy_wav(path: Path) -> None:
    import soundfile

    g = torch.Generator().manual_seed(0)
    t = torch.arange(16000) / 16000
    voice = 0.3 * torch.sin(2 * math.pi * 220 * t) * torch.sin(2 * math.pi * 3 * t).abs()
    noisy = voice + 0.05 * torch.randn(16000, generator=g)
    soundfile.write(str(path), noisy.numpy(), 16000, subtype="PCM_16")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_python_blocks_run(page, tmp_path, monkeypatch, one_thread):
    blocks = extract_blocks(page.read_text(encoding="utf-8"), str(page.relative_to(ROOT)))
    assert blocks, "the page has a ```python fence but no block was found"
    runnable = [b for b in blocks if b.kind != "skip"]
    if not runnable:
        pytest.skip("every block is marked skip: " + "; ".join(b.reason for b in blocks))
    if "noisy.wav" in page.read_text(encoding="utf-8"):
        _write_noisy_wav(tmp_path / "noisy.wav")
    namespace: dict = {"__name__": "__snippet__"}
    skipped = []
    for block in blocks:
        if block.kind == "skip":
            continue
        if block.kind == "data":
            if not SHARED_DATA.is_dir():
                skipped.append(f"line {block.line}: needs {SHARED_DATA}")
                continue
            monkeypatch.chdir(ROOT)
        else:
            monkeypatch.chdir(tmp_path)
        # Pad so that tracebacks give the line numbers of the page itself.
        code = compile("\n" * (block.line - 1) + block.code, block.page, "exec")
        exec(code, namespace)  # running the docs is the point of the test
    if skipped and len(skipped) == len(runnable):
        pytest.skip("; ".join(skipped))


def test_extract_blocks_reads_markers_and_rejects_stray_ones():
    text = "\n".join([
        "```python", "a = 1", "```", "",
        "<!-- snippet: skip needs the authors' checkpoint -->", "", "```python", "b", "```",
        "<!-- snippet: data -->", "```python", "c", "```", "```bash", "ls", "```",
    ])
    blocks = extract_blocks(text, "p.md")
    assert [(b.line, b.code, b.kind) for b in blocks] == [
        (2, "a = 1", None), (8, "b", "skip"), (12, "c", "data")]
    assert blocks[1].reason == "needs the authors' checkpoint"
    for bad, message in [
        ("<!-- snippet: skip -->\n```python\nx\n```", "needs a reason"),
        ("<!-- snippet: skipp x -->\n```python\nx\n```", "malformed"),
        ("<!-- snippet: data -->\ntext\n```python\nx\n```", "not followed by a code block"),
        ("<!-- snippet: data -->\n```bash\nx\n```", "before a 'bash' block"),
        ("```python\nx\n", "unclosed"),
    ]:
        with pytest.raises(ValueError, match=message):
            extract_blocks(bad, "p.md")


def test_the_readme_quickstart_is_found_and_runs_unmarked():
    blocks = extract_blocks((ROOT / "README.md").read_text(encoding="utf-8"), "README.md")
    assert blocks and blocks[0].kind is None
    assert "continuous_knn" in blocks[0].code


def test_docs_name_checkpoint_folders_as_training_writes_them(tmp_path):
    pytest.importorskip("safetensors")
    from n3seq_image import DnCNN
    from n3seq_image.checkpoint import save_checkpoint

    folder = save_checkpoint(tmp_path, DnCNN(depth=3, features=8), None, 500)
    docs = "\n".join(p.read_text(encoding="utf-8") for p in pages())
    assert f"checkpoints/{folder.name}/" in docs
    assert not re.search(r"step_N\b", docs), "the docs name checkpoint folders step_N"
