"""The import structure of docs/architecture.md, checked on every module's imports (with ``ast``).

Every ``import`` statement counts: at module level, under ``if TYPE_CHECKING:``, and inside
functions. The layer of each module is read from the table in docs/architecture.md, so the page
and the code cannot drift apart: a new module fails here until the page lists it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("n3seq", "n3seq_image")
ARCHITECTURE = ROOT / "docs" / "architecture.md"

#: What each layer may import (docs/architecture.md); "package" is an ``__init__``.
MAY_IMPORT = {
    "support": {"support"},
    "core": {"support", "core"},
    "model": {"support", "core", "model"},
    "application": {"support", "core", "model", "application", "package"},
    "package": {"support", "core"},  # and the modules of its own package
}

#: Modules allowed to import the project's modules inside functions: the command lines parse
#: their arguments before importing the command they run, so ``--help`` and usage errors do
#: not wait for torch (tests/image/test_cli.py and tests/audio/test_cli.py check that).
DEFERRED_PROJECT_IMPORTS = {"n3seq_image.cli", "n3seq.audio.cli"}

#: Third-party packages that may be imported inside a function, and why. Anything else (the
#: standard library included) is imported at the top of the module.
DEFERRED_THIRD_PARTY = {
    # optional extras: the library imports and runs without them (tests/test_installation.py)
    "faiss": "extra `faiss`: the approximate mode falls back to torch",
    "bm3d": "extra `bm3d`: an optional baseline",
    "statsmodels": "extra `timeseries`: only the classical peers and the dataset loaders",
    "pmdarima": "extra `timeseries`: one dataset loader",
    "tbats": "extra `timeseries`: one classical peer",
    "scipy": "extra `timeseries`/`image`: one smoothing peer",
    "tqdm": "extras `audio`/`image`: progress bars; n3seq.sets trains without it",
    "PIL": "extra `image`: image files; the array helpers of n3seq_image.data work without it",
    "skimage": "extra `image`: SSIM, non-local means and the demo image",
    "safetensors": "extra `image`: weights files; the models import without it",
    # torch itself only where the command lines set thread counts after parsing
    "torch": "base dependency, deferred only in the command lines (see above)",
}
TORCH_DEFERRED_IN = DEFERRED_PROJECT_IMPORTS


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported name, as written (absolute)
    names: tuple[str, ...]  # ``from target import names`` (empty for ``import target``)
    line: int
    in_function: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _project_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = _project_modules()


def _imports(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(module, a.name, (), child.lineno, in_function)
                             for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                target = child.module or ""
                if child.level:  # relative: resolve against the importing package
                    base = module.split(".")
                    if path.name != "__init__.py":
                        base.pop()
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join([*base, *([target] if target else [])])
                found.append(Import(module, target, tuple(a.name for a in child.names),
                                    child.lineno, in_function))
            visit(child, inside)

    visit(tree, False)
    return found


IMPORTS = {m: _imports(m, p) for m, p in MODULES.items()}


def _lazy_exports(package: str) -> dict[str, str]:
    """The ``_LAZY`` name → module table of a package ``__init__`` (empty if it has none)."""
    tree = ast.parse(MODULES[package].read_text(encoding="utf-8"))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_LAZY"
                                                 for t in node.targets)):
            return ast.literal_eval(node.value)
    return {}


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _project_targets(imp: Import) -> list[str]:
    """The project modules an import loads (a package's lazy names resolved to their module)."""
    if imp.target.split(".")[0] not in PACKAGES:
        return []
    if not imp.names:
        return [imp.target] if imp.target in MODULES else []
    out = []
    for name in imp.names:
        full = f"{imp.target}.{name}"
        if full in MODULES:
            out.append(full)
        elif imp.target in MODULES and _is_package(imp.target):
            out.append(_lazy_exports(imp.target).get(name, imp.target))
        elif imp.target in MODULES:
            out.append(imp.target)
    return out


def _graph() -> dict[str, set[str]]:
    graph = {m: set() for m in MODULES}
    for module, imports in IMPORTS.items():
        for imp in imports:
            graph[module].update(t for t in _project_targets(imp) if t != module)
        if _is_package(module):  # a lazy package imports its names when they are used
            graph[module].update(_lazy_exports(module).values())
    return graph


GRAPH = _graph()


def _layers() -> dict[str, str]:
    rows = re.findall(r"^\| `([\w.]+)` \| (\w+) \|", ARCHITECTURE.read_text(encoding="utf-8"),
                      flags=re.M)
    layers: dict[str, str] = {}
    for module, layer in rows:
        assert module not in layers, f"docs/architecture.md lists {module} twice"
        layers[module] = layer
    return layers


def _adapter(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "n3seq_image":
        return "n3seq_image"
    if len(parts) >= 2 and parts[1] in ("audio", "timeseries", "sets"):
        return ".".join(parts[:2])
    return None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def _where(imp: Import) -> str:
    return f"{MODULES[imp.source].relative_to(ROOT)}:{imp.line}"


# --------------------------------------------------------------------------- the rules


def test_the_checker_sees_the_imports():
    # A checker that parsed nothing would pass every rule below.
    assert len(MODULES) > 60
    assert "n3seq.aggregate" in GRAPH["n3seq.block"]
    assert "n3seq_image.block2d" in GRAPH["n3seq_image.n3net"]
    assert "n3seq_image.n3net" in GRAPH["n3seq_image"]  # through the lazy table
    assert "n3seq.block" in GRAPH["n3seq.demo"]  # ``from n3seq import N3Block``
    assert any(imp.in_function for imp in IMPORTS["n3seq_image.cli"])
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    cycles = _cycles(GRAPH)
    assert not cycles, f"import cycles (function-level imports included): {cycles}"


def test_every_module_is_in_the_architecture_page_once():
    layers = _layers()
    missing = sorted(set(MODULES) - set(layers))
    gone = sorted(set(layers) - set(MODULES))
    assert not missing, f"add these modules to the table in docs/architecture.md: {missing}"
    assert not gone, f"docs/architecture.md lists modules that do not exist: {gone}"
    bad = {m: layer for m, layer in layers.items() if layer not in MAY_IMPORT}
    assert not bad, f"unknown layers (use {sorted(MAY_IMPORT)}): {bad}"
    packages = {m for m in MODULES if _is_package(m)}
    assert {m for m, layer in layers.items() if layer == "package"} == packages


def test_imports_go_downwards_only():
    layers = _layers()
    wrong = []
    for module, imports in IMPORTS.items():
        for imp in imports:
            for target in _project_targets(imp):
                if target == module:
                    continue
                own_package = (layers[module] == "package"
                               and target.startswith(module + "."))
                if own_package or layers[target] in MAY_IMPORT[layers[module]]:
                    continue
                wrong.append(f"{_where(imp)}: {module} ({layers[module]}) imports {target} "
                             f"({layers[target]})")
    assert not wrong, "imports against the layers of docs/architecture.md:\n" + "\n".join(wrong)


def test_models_never_import_the_application():
    # The same rule as above, said for the image models by name (the brief of issue 10).
    layers = _layers()
    models = [m for m in MODULES if m.startswith("n3seq_image.") and layers[m] == "model"]
    for name in ("patches", "windows", "block2d", "fast2d", "dncnn", "n3net", "vdsr",
                 "sr_models", "imresize", "color", "noise_level"):
        assert f"n3seq_image.{name}" in models
    for name in ("cli", "train", "evaluate", "denoise", "checkpoint", "data", "demo",
                 "upscale", "sr_evaluate", "sr_data"):
        assert layers[f"n3seq_image.{name}"] == "application"
    for module in models:
        reached, todo = set(), [module]
        while todo:  # everything the model loads, directly or not
            for target in GRAPH[todo.pop()] - reached:
                reached.add(target)
                todo.append(target)
        app = sorted(t for t in reached if layers[t] == "application")
        assert not app, f"{module} loads application modules {app}"


def test_the_library_never_imports_the_image_package():
    wrong = [f"{_where(imp)}: {imp.source} imports {imp.target}"
             for module, imports in IMPORTS.items() if module.split(".")[0] == "n3seq"
             for imp in imports if imp.target.split(".")[0] == "n3seq_image"]
    assert not wrong, "\n".join(wrong)


def test_adapters_never_import_each_other():
    wrong = []
    for module, targets in GRAPH.items():
        for target in targets:
            if _adapter(target) is not None and _adapter(target) != _adapter(module):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_project_modules_are_imported_at_the_top():
    wrong = [f"{_where(imp)}: {imp.target}" for imports in IMPORTS.values() for imp in imports
             if imp.in_function and imp.target.split(".")[0] in PACKAGES
             and imp.source not in DEFERRED_PROJECT_IMPORTS]
    assert not wrong, ("project modules imported inside functions (import them at the top; a "
                       "cycle this creates is a layering problem to solve):\n" + "\n".join(wrong))


def test_only_optional_packages_are_imported_inside_functions():
    wrong = []
    for imports in IMPORTS.values():
        for imp in imports:
            top = imp.target.split(".")[0]
            if not imp.in_function or top in PACKAGES:
                continue
            if top not in DEFERRED_THIRD_PARTY:
                wrong.append(f"{_where(imp)}: {imp.target} (not an optional package)")
            elif top == "torch" and imp.source not in TORCH_DEFERRED_IN:
                wrong.append(f"{_where(imp)}: torch (deferred only in the command lines)")
    assert not wrong, "imports inside functions:\n" + "\n".join(wrong)


@pytest.mark.parametrize("module", sorted(DEFERRED_PROJECT_IMPORTS))
def test_deferred_imports_of_the_command_lines_go_downwards(module):
    # The command lines' deferred imports are edges of the graph like any other (the cycle
    # test sees them); they only ever reach the command modules below them.
    deferred = {t for imp in IMPORTS[module] if imp.in_function for t in _project_targets(imp)}
    assert deferred, f"{module} defers no import: remove it from DEFERRED_PROJECT_IMPORTS"
    assert module not in {t for d in deferred for t in GRAPH[d]}
