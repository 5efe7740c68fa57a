"""Atomic file writes with the usual permissions: the one helper every package uses.

A file is written to a temporary name in its target folder and renamed over the target only
when complete, so a failed or interrupted write leaves the previous file (or nothing), never a
partial one. Everything written gets the mode a plain ``open()`` / ``mkdir()`` would give
(``0o666`` / ``0o777`` minus the umask), not ``mkstemp``'s private ``0o600`` / ``0o700``.

This module needs the standard library only (no torch), so command lines can use it before
they import anything heavy.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "as_os_error", "atomic_write", "check_output_path", "dir_mode", "file_mode", "missing_folders",
    "remove_empty_folders", "same_file",
]


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def file_mode() -> int:
    """``0o666`` minus the umask: the mode ``open()`` gives a new file."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """``0o777`` minus the umask: the mode ``mkdir()`` gives a new folder."""
    return 0o777 & ~_umask()


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when ``a`` and ``b`` name the same existing file by any path.

    Resolves ``./``, ``..`` and symbolic links, and compares device and inode numbers, so hard
    links count as the same file too. A path that does not exist is never the same file.
    """
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(path: str | os.PathLike[str], inputs: tuple[str | os.PathLike[str], ...] = (),
                      ) -> Path:
    """Refuses an output path that cannot be written as a file, before any work is done.

    Args:
        path: the file to be written.
        inputs: files that must not be overwritten (the output may not be any of them).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: the output is one of ``inputs`` (by any path, see :func:`same_file`), or
            exists and is not a regular file (a device such as ``/dev/null``, a FIFO).
        IsADirectoryError: the output is an existing folder.
        NotADirectoryError: a parent of the output is an existing file.
    """
    path = Path(path)
    for src in inputs:
        if same_file(path, src):
            raise ValueError(
                f"output {str(path)!r} is the input file {str(src)!r}; choose another output "
                "path (the input is never overwritten)"
            )
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"output {str(path)!r} is a folder, not a file")
    if path.exists() and not path.is_file():  # a device (/dev/null), a FIFO, a socket
        raise ValueError(f"output {str(path)!r} exists and is not a regular file; it would "
                         "be replaced by one")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR, f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a folder"
        )
    return path


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None],
                 suffix: str = ".tmp") -> None:
    """Calls ``write(tmp)`` on a temporary file next to ``path``, then renames it to ``path``.

    Missing parent folders are created. If anything fails, the temporary file is removed and
    ``path`` is left as it was.

    Args:
        path: the file to write.
        write: writes the complete content to the path it is given.
        suffix: suffix of the temporary name (some writers pick the format from it).

    Raises:
        OSError: the file cannot be written; the message names ``path`` (not the temporary
            file) and the reason (e.g. ``No space left on device``). The errno, and so the
            subclass (``PermissionError``…), is kept.
    """
    path = check_output_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise _named(exc, path) from exc
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        os_error = as_os_error(exc)
        if os_error is not None:
            raise _named(os_error, path) from exc
        raise


def as_os_error(exc: BaseException) -> OSError | None:
    """``exc`` if it is an OSError; an OSError for a library error that wraps one; else None.

    Writers implemented outside Python (safetensors' Rust I/O) report a full disk as their
    own exception type with ``"(os error 28)"`` in the message; this recovers the errno, so a
    full disk reads "No space left on device" whichever library wrote the file.
    """
    if isinstance(exc, OSError):
        return exc
    found = re.search(r"\(os error (\d+)\)", str(exc))
    if found:
        code = int(found.group(1))
        return OSError(code, os.strerror(code))
    return None


def _named(exc: OSError, path: Path) -> OSError:
    """The same kind of OSError, with a message naming the target ``path``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if str(path) in reason:
        return exc
    if exc.errno is None:
        return OSError(f"cannot write {str(path)!r}: {reason}")
    return OSError(exc.errno, f"cannot write {str(path)!r}: {reason}")


def missing_folders(path: str | os.PathLike[str]) -> list[Path]:
    """The folders that writing the file ``path`` would create, deepest first.

    A command line records them before it starts and, if it fails, removes those still
    empty (:func:`remove_empty_folders`), so a failed run leaves nothing behind.
    """
    made = []
    folder = Path(path).absolute().parent
    while not folder.exists() and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    return made


def remove_empty_folders(folders: list[Path]) -> None:
    """Removes each folder if it holds no file, with the empty folders inside it.

    Meant for folders a failed run created (:func:`missing_folders`): folders are removed only
    when empty, files are never touched, so whatever a run did write (checkpoints) stays.
    """
    for folder in sorted(set(folders), key=lambda p: len(p.parts), reverse=True):
        if not folder.is_dir():
            continue
        for root, _, _ in sorted(os.walk(folder), key=lambda t: len(t[0]), reverse=True):
            try:
                os.rmdir(root)
            except OSError:
                pass
