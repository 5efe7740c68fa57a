"""docs/installation.md against pyproject.toml, and the core's import with base deps only."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")

# Packages of the extras (import names); the core must work without any of them.
OPTIONAL = ("PIL", "skimage", "safetensors", "tqdm", "torchaudio", "soundfile", "statsmodels",
            "pandas", "scipy", "matplotlib", "faiss", "bm3d", "mkdocs", "pytest", "hypothesis")


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _doc_extras(text: str) -> set[str]:
    """Extras named as ``pip install -e ".[a,b]"`` or ``n3seq[a]``."""
    named = set()
    for group in re.findall(r"""(?:-e\s+["']?\.|n3seq)\[([\w,\s-]+)\]""", text):
        named |= {g.strip() for g in group.split(",") if g.strip()}
    return named


def test_every_extra_the_docs_name_exists_in_pyproject():
    extras = set(_project()["optional-dependencies"])
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    named = {}
    for page in pages:
        for extra in _doc_extras(page.read_text(encoding="utf-8")):
            named.setdefault(extra, page.name)
    assert {"image", "audio", "timeseries", "all", "dev", "faiss"} <= set(named)
    unknown = {e: p for e, p in named.items() if e not in extras}
    assert not unknown, f"extras named in the docs but not in pyproject.toml: {unknown}"


def test_installation_table_lists_every_extra_with_its_packages():
    text = (ROOT / "docs" / "installation.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([\w-]+)` \| ([^|]+) \|", text, flags=re.M))
    extras = _project()["optional-dependencies"]
    assert set(rows) == set(extras)
    for extra, deps in extras.items():
        for dep in deps:
            name = re.split(r"[<>=\[ ;]", dep, maxsplit=1)[0]
            if name == "n3seq":  # all = n3seq[audio,image,...]
                inner = re.search(r"\[(.*)\]", dep)[1].split(",")
                assert all(i in rows[extra] for i in inner), (extra, rows[extra])
            else:
                assert name in rows[extra], f"{extra}: {name} missing from {rows[extra]!r}"


def test_core_imports_and_runs_without_any_extra():
    # None in sys.modules makes a package unimportable (find_spec gives None, import raises
    # ModuleNotFoundError), as when it is not installed.
    code = f"""
import sys
BLOCKED = {OPTIONAL!r}
sys.modules.update(dict.fromkeys(BLOCKED))
import torch
import n3seq
import n3seq.sets
from n3seq import N3Block, continuous_knn, hard_knn, knn_aggregate, window_candidates
from n3seq.approximate import approx_knn_aggregate
x = torch.randn(2, 40, 8)
assert N3Block(dim=8, k=3)(x).shape == (2, 40, 32)
assert N3Block(dim=8, k=3, radius=4)(x).shape == (2, 40, 32)
assert approx_knn_aggregate(x, x, x, k=2, num_candidates=8).shape == (2, 40, 2, 8)
net = n3seq.sets.CorrespondenceNet(width=8, depth=1, k=2)
n3seq.sets.fit_correspondence_net(net, steps=2, batch=2, min_points=10, max_points=12)
loaded = sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in BLOCKED)
print("loaded:", loaded)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "loaded: []"
