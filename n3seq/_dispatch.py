"""Choosing an implementation: one mechanism for the core and the image block.

An operation with several implementations of the same function (the relaxation: ``"fused"`` or
``"straightforward"``; the image block: ``"fast"`` or ``"reference"``) lists them in order of
preference, each with a ``can_run_*`` predicate for the current call (in the spirit of NATTEN's
``choose_backend``). The caller asks for one by name; :func:`choose_backend` returns it where it
can run and otherwise the first listed one that can. The last listed implementation (the
readable one) runs everywhere. The choice is an argument of each call, never a module switch.
"""

from __future__ import annotations

from collections.abc import Mapping

from n3seq._checks import check_choice


def choose_backend(argument: str, requested: str, runnable: Mapping[str, bool]) -> str:
    """The implementation to run: ``requested`` if it can run now, else the first one that can.

    Args:
        argument: the name of the argument in messages (e.g. ``"backend"``).
        requested: the implementation asked for.
        runnable: every implementation, in order of preference, mapped to whether it can run
            for this call (the last one must always be able to).

    Returns:
        The name of the implementation to run.

    Raises:
        ValueError: if ``requested`` is not one of ``runnable``'s names.
    """
    check_choice(argument, requested, tuple(runnable))
    if runnable[requested]:
        return requested
    return next(name for name, ok in runnable.items() if ok)
