"""Package attributes imported on first use (PEP 562), shared by the project's ``__init__``s.

A package's ``__init__`` lists its public names and the modules that define them; nothing
heavy (torch) is imported until a name is used, so a command line's ``--help`` stays instant.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any


def lazy_exports(
    namespace: dict[str, Any], names: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose ``names`` load on first use.

    Args:
        namespace: the package's ``globals()`` (a loaded name is cached there).
        names: public name → module that defines it. Any other public name that is a
            submodule of the package is imported as that submodule, as a plain package does.

    Returns:
        ``(__getattr__, __dir__)`` to assign in the package's ``__init__``.
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> object:
        module = names.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
        elif not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}"):
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__
