"""Griffe extension: Sphinx roles in docstrings become cross-references and math at docs build.

The docstrings of ``n3seq`` and ``n3seq_image`` use Sphinx roles (``:func:`hard_knn```,
``:class:`~n3seq.N3Block```, ``:math:`(B, T, D)```), which mkdocstrings would print as text.
When griffe has loaded a package (so every member is known), this extension rewrites each
docstring of the package:

- a cross-reference role (``:func:``, ``:class:``, ``:meth:``, ``:mod:``, ``:data:``,
  ``:attr:``, ``:exc:``, ``:obj:``, ``:const:``, also spelled ``:py:func:`` ...) becomes an
  *optional* autorefs cross-reference to the object's canonical path. The target is resolved
  like Sphinx does: relative to the docstring's object, then its enclosing classes and
  modules, then the package's top-level names, then as an absolute path. autorefs turns it
  into a link when that object is rendered somewhere in the site, and into plain code (with
  the path as tooltip) when it is not, so a reference to an undocumented helper is never a
  broken link and never fails ``mkdocs build --strict``. ``~`` (show the last component
  only), ``!`` (no link), a leading ``.`` and explicit titles (``:func:`title <target>```)
  behave as in Sphinx. A target that cannot be resolved is rendered as code.
- ``:math:`x``` becomes ``\\(x\\)``, inline math for ``pymdownx.arithmatex``.

A ``Raises:`` section written as prose (its first entry is not ``ExceptionName: ...``, e.g.
"The errors of :func:`f`, and ``ValueError`` if ...") is renamed ``Errors:`` so that griffe
renders it as a titled block of text: the roles gave the Google parser the colon it splits on,
and without them it would warn (and fail the strict build) or drop the text.

Fenced code blocks and doctest lines (``>>>``, ``...``) are left as they are. The source
files are not changed: only the docstrings griffe hands to mkdocstrings.

Configured in ``mkdocs.yml`` under the python handler's ``options.extensions``.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import griffe

XREF_ROLES = ("func", "class", "meth", "mod", "data", "attr", "exc", "obj", "const")
ROLE_RE = re.compile(
    r":(?:py:)?(?P<role>" + "|".join((*XREF_ROLES, "math")) + r"):`(?P<body>[^`]+)`"
)
FENCE_RE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL)
DOCTEST_RE = re.compile(r"^[ \t]*(>>>|\.\.\.)( .*)?$", re.MULTILINE)
RAISES_RE = re.compile(
    r"^(?P<indent>[ \t]*)Raises:[ \t]*\n(?P<first>(?:[ \t]*\n)*[ \t]*\S.*)$", re.MULTILINE
)
EXCEPTION_ENTRY_RE = re.compile(
    r"^\s*[A-Za-z_][\w.]*(\s*[,|]\s*[A-Za-z_][\w.]*)*(\s*\([^)]*\))?\s*:(\s|$)"
)
TITLE_RE = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$", re.DOTALL)

STATS: Counter[str] = Counter()
"""Counts over the build: ``linked`` (emitted as a cross-reference; autorefs makes it a link
when the object is rendered), ``code`` (unresolved, rendered as code), ``math`` and
``prose_raises`` (sections renamed ``Errors:``)."""

Resolver = Callable[[str], "str | None"]


def convert_roles(text: str, resolve: Resolver, stats: Counter[str] | None = None) -> str:
    """Replace the Sphinx roles of a docstring by autorefs cross-references and inline math.

    Args:
        text: The docstring (Markdown with Sphinx roles).
        resolve: Maps a role's target (without ``~``/``!``/leading ``.``/``()``) to the
            canonical dotted path to reference, or ``None`` when it is unknown.
        stats: Counter to add ``linked`` / ``code`` / ``math`` counts to.

    Returns:
        The docstring with every role replaced; code blocks and doctest lines are untouched.
    """
    stats = stats if stats is not None else Counter()

    def replace(match: re.Match[str]) -> str:
        role, body = match["role"], " ".join(match["body"].split())
        if role == "math":
            stats["math"] += 1
            return f"\\({body}\\)"
        titled = TITLE_RE.match(body)
        explicit_title = titled["title"] if titled and titled["title"] else None
        target = titled["target"] if titled and titled["title"] else body
        target = "".join(target.split())  # a target wrapped over two lines
        no_link = target.startswith("!")
        target = target.lstrip("!")
        short = target.startswith("~")
        target = target.lstrip("~").lstrip(".")
        title = explicit_title or (target.rsplit(".", 1)[-1] if short else target)
        path = None if no_link else resolve(target.removesuffix("()"))
        code = f"`{title}`"
        if path is None:
            stats["code"] += 1
            return code
        stats["linked"] += 1
        return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'

    def convert_prose(chunk: str) -> str:
        pieces, last = [], 0
        for doctest in DOCTEST_RE.finditer(chunk):
            pieces += [ROLE_RE.sub(replace, chunk[last:doctest.start()]), doctest[0]]
            last = doctest.end()
        pieces.append(ROLE_RE.sub(replace, chunk[last:]))
        return "".join(pieces)

    pieces, last = [], 0
    for fence in FENCE_RE.finditer(text):
        pieces += [convert_prose(text[last:fence.start()]), fence[0]]
        last = fence.end()
    pieces.append(convert_prose(text[last:]))
    return "".join(pieces)


def rename_prose_raises(text: str, stats: Counter[str] | None = None) -> str:
    """Rename a ``Raises:`` section whose first entry is prose (not ``Name: ...``) ``Errors:``.

    Args:
        text: The docstring.
        stats: Counter to add the ``prose_raises`` count to.

    Returns:
        The docstring, with such section titles renamed.
    """
    stats = stats if stats is not None else Counter()

    def rename(match: re.Match[str]) -> str:
        if EXCEPTION_ENTRY_RE.match(match["first"]):
            return match[0]
        stats["prose_raises"] += 1
        return f"{match['indent']}Errors:\n{match['first']}"

    return RAISES_RE.sub(rename, text)


def _lookup(scope: Any, name: str) -> Any:
    for getter in (scope.get_member, scope.__getitem__):
        try:
            return getter(name)
        except Exception:  # KeyError, alias resolution errors, ...
            continue
    return None


def _canonical(member: Any) -> str:
    try:
        return member.canonical_path
    except Exception:  # an alias to a package that is not loaded (yet)
        return member.target_path if member.is_alias else member.path


def make_resolver(obj: griffe.Object, loader: griffe.GriffeLoader) -> Resolver:
    """Resolve role targets the way Sphinx does, from the docstring of ``obj``.

    Args:
        obj: The object whose docstring holds the roles.
        loader: The loader that loaded ``obj``'s package (for absolute paths).

    Returns:
        A function from a target to its canonical path, or ``None`` when unknown. A dotted
        target whose top-level package is not loaded is returned as written (autorefs
        still links it if that object is rendered).
    """

    def scopes() -> Iterator[Any]:
        current = obj
        while current is not None:
            if current.is_module or current.is_class:
                yield current
            current = current.parent
        yield obj.package

    def resolve(target: str) -> str | None:
        if not target:
            return None
        for scope in scopes():
            if (member := _lookup(scope, target)) is not None:
                return _canonical(member)
        root, _, rest = target.partition(".")
        collection = loader.modules_collection
        if root in collection.members:
            member = collection.members[root] if not rest else _lookup(collection[root], rest)
            return None if member is None else _canonical(member)
        return target if rest else None

    return resolve


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)


class SphinxRoles(griffe.Extension):
    """Rewrites the Sphinx roles of every docstring of a package once griffe has loaded it."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Convert the roles of all docstrings of ``pkg`` (see the module docstring)."""
        before = STATS.copy()
        for obj in _objects(pkg):
            if obj.docstring is not None and ":" in obj.docstring.value:
                value = rename_prose_raises(obj.docstring.value, STATS)
                obj.docstring.value = convert_roles(value, make_resolver(obj, loader), STATS)
        done = STATS - before
        griffe.logger.info(
            f"sphinx roles in {pkg.path}: {done['linked']} cross-references, "
            f"{done['code']} unresolved (code), {done['math']} math"
        )
