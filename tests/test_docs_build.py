"""The docs site builds strictly, with the docstrings' Sphinx roles rendered as links and math.

``docs/_griffe_sphinx_roles.py`` (a griffe extension configured in ``mkdocs.yml``) rewrites
``:func:`name```-style roles into autorefs cross-references and ``:math:`x``` into inline
math when mkdocstrings loads the packages. The unit tests below pin its resolution rules on a
small package of their own; the build test checks the real site.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

griffe = pytest.importorskip("griffe")

ROOT = Path(__file__).resolve().parents[1]
ROLE_TEXT = (":func:", ":class:", ":meth:", ":mod:", ":data:", ":attr:", ":math:", ":exc:")


def _load_extension():
    path = ROOT / "docs" / "_griffe_sphinx_roles.py"
    spec = importlib.util.spec_from_file_location("_griffe_sphinx_roles", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


roles = _load_extension()

PATHS = {"hard_knn": "pkg.relax.hard_knn", "pkg.N3Block": "pkg.block.N3Block",
         "Peer.fit": "pkg.peers.Peer.fit"}


def _convert(text: str, stats: Counter | None = None) -> str:
    return roles.convert_roles(text, PATHS.get, stats)


def _ref(path: str, title: str) -> str:
    return f'<autoref identifier="{path}" optional>`{title}`</autoref>'


def test_roles_become_optional_cross_references_with_sphinx_titles():
    stats = Counter()
    text = ("equals :func:`hard_knn`, see :class:`~pkg.N3Block`, :meth:`fitting <Peer.fit>`, "
            ":py:func:`hard_knn()` and :func:`!hard_knn`.")
    assert _convert(text, stats) == (
        f"equals {_ref('pkg.relax.hard_knn', 'hard_knn')}, see {_ref('pkg.block.N3Block', 'N3Block')}, "
        f"{_ref('pkg.peers.Peer.fit', 'fitting')}, {_ref('pkg.relax.hard_knn', 'hard_knn()')} "
        "and `hard_knn`.")
    assert stats == Counter(linked=4, code=1)


def test_unresolved_targets_are_code_and_math_is_inline_math():
    stats = Counter()
    assert _convert(":func:`nowhere` of :math:`(B, T, D)`", stats) == "`nowhere` of \\((B, T, D)\\)"
    assert stats == Counter(code=1, math=1)


def test_a_target_wrapped_over_two_lines_is_joined():
    assert _convert("a :class:`~pkg.\n    N3Block` here") == f"a {_ref('pkg.block.N3Block', 'N3Block')} here"


def test_code_blocks_and_doctest_lines_are_left_alone():
    text = "Use :func:`hard_knn`.\n\n```python\nx = ':func:`hard_knn`'\n```\n>>> ':func:`hard_knn`'\n"
    out = _convert(text)
    assert out.startswith(f"Use {_ref('pkg.relax.hard_knn', 'hard_knn')}.")
    assert out.count(":func:`hard_knn`") == 2


def test_a_prose_raises_section_is_renamed_and_exception_entries_are_kept():
    prose = "Run.\n\nRaises:\n    The errors of :func:`f`, and\n    ``ValueError`` if bad.\n"
    assert roles.rename_prose_raises(prose) == prose.replace("Raises:", "Errors:")
    for entry in ("ValueError: if bad.", "TypeError, ValueError: if bad.", "OSError (io): x"):
        text = f"Run.\n\nRaises:\n    {entry}\n"
        assert roles.rename_prose_raises(text) == text


def _write_package(root: Path) -> None:
    files = {
        "__init__.py": '"""Top."""\nfrom pkg.relax import hard_knn\n\n__all__ = ["hard_knn"]\n',
        "relax.py": '''
            """Relaxation."""

            import pathlib


            def hard_knn():
                """Hard."""


            def continuous_knn():
                """Tends to :func:`hard_knn`; see :class:`Peer`, :mod:`pkg.relax`,
                :class:`~pathlib.Path` and :func:`missing`."""


            class Peer:
                """A peer; :meth:`fit` it first, then read :attr:`fitted`."""

                def __init__(self):
                    self.fitted = False

                def fit(self):
                    """Fit; then :meth:`predict` (or :meth:`Peer.predict`)."""

                def predict(self):
                    """Predict."""
            ''',
        "other.py": '''
            """Other."""


            def uses():
                """Via the top level :func:`hard_knn`, absolute :func:`~pkg.relax.Peer.fit`."""
            ''',
    }
    (root / "pkg").mkdir()
    for name, source in files.items():
        (root / "pkg" / name).write_text(textwrap.dedent(source).lstrip())


def test_targets_resolve_relative_to_the_docstring_then_the_package_then_absolute(tmp_path):
    _write_package(tmp_path)
    loader = griffe.GriffeLoader(extensions=griffe.load_extensions(roles.SphinxRoles()),
                                 search_paths=[str(tmp_path)])
    pkg = loader.load("pkg")
    doc = {path: pkg[path.removeprefix("pkg.")].docstring.value
           for path in ("pkg.relax.continuous_knn", "pkg.relax.Peer", "pkg.relax.Peer.fit",
                        "pkg.other.uses")}
    assert doc["pkg.relax.continuous_knn"] == (
        f"Tends to {_ref('pkg.relax.hard_knn', 'hard_knn')}; see {_ref('pkg.relax.Peer', 'Peer')}, "
        f"{_ref('pkg.relax', 'pkg.relax')},\n{_ref('pathlib.Path', 'Path')} and `missing`.")
    assert doc["pkg.relax.Peer"] == (f"A peer; {_ref('pkg.relax.Peer.fit', 'fit')} it first, then read "
                                     f"{_ref('pkg.relax.Peer.fitted', 'fitted')}.")
    assert doc["pkg.relax.Peer.fit"] == (f"Fit; then {_ref('pkg.relax.Peer.predict', 'predict')} "
                                         f"(or {_ref('pkg.relax.Peer.predict', 'Peer.predict')}).")
    assert doc["pkg.other.uses"] == (f"Via the top level {_ref('pkg.relax.hard_knn', 'hard_knn')}, "
                                     f"absolute {_ref('pkg.relax.Peer.fit', 'fit')}.")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site of ``mkdocs build --strict`` (a few seconds), built once for this module."""
    pytest.importorskip("mkdocstrings_handlers.python")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                             "--site-dir", str(out)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_no_page_prints_sphinx_roles(site):
    pages = sorted(site.rglob("*.html"))
    assert site / "api" / "core" / "index.html" in pages
    printed = {str(page.relative_to(site)): role for page in pages
               for role in ROLE_TEXT if role in page.read_text(encoding="utf-8")}
    assert printed == {}
    assert not (site / "_griffe_sphinx_roles.py").exists()


def test_continuous_knn_links_to_hard_knn_and_math_is_math(site):
    html = (site / "api" / "core" / "index.html").read_text(encoding="utf-8")
    start = html.index('id="n3seq.continuous_knn"')
    section = html[start:html.index("<h3", start)]
    assert re.search(r'<a class="autorefs[^"]*"[^>]* href="#n3seq\.hard_knn"><code>hard_knn</code></a>',
                     section)
    assert '<span class="arithmatex">\\((B, T, D)\\)</span>' in html


def test_the_approximate_and_reference_modules_are_in_the_api_reference(site):
    html = (site / "api" / "core" / "index.html").read_text(encoding="utf-8")
    for identifier in ("n3seq.approximate", "n3seq.approximate.approx_knn_aggregate",
                       "n3seq.approximate.tail_bound", "n3seq.reference",
                       "n3seq.reference.knn_aggregate_reference"):
        assert f'id="{identifier}"' in html
