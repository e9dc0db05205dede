"""The one exception type for mistakes a user can fix (bad file, bad shape, bad option)."""

from __future__ import annotations

import sysconfig
import traceback
from pathlib import Path

_LABKIT = str(Path(__file__).resolve().parent)
_LIBRARIES = tuple(
    str(Path(path).resolve())
    for path in {sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib")}
)


class LabkitError(Exception):
    """A problem with the user's input; the CLI prints it as one line and exits with status 2."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _users(filename: str) -> bool:
    """Whether a traceback frame's file is the user's own code (not labkit's, not a library's)."""
    path = str(Path(filename).resolve()) if not filename.startswith("<") else filename
    return (
        not path.startswith(_LABKIT)
        and not path.startswith(_LIBRARIES)
        and "importlib" not in path
        and not path.startswith("<frozen")
    )


def _innermost(exc: BaseException) -> str | None:
    """``file:line`` of the innermost frame of the user's own code, or None."""
    own = [frame for frame in traceback.extract_tb(exc.__traceback__) if _users(frame.filename)]
    if not own:
        return None
    try:
        filename = str(Path(own[-1].filename).resolve().relative_to(Path.cwd()))
    except ValueError:
        filename = own[-1].filename
    return f"{filename}:{own[-1].lineno}"


def raised(exc: BaseException) -> str:
    """``KeyError: 'weigths' (my_layer.py:41)``: what the user's code raised, and where."""
    kind, detail = type(exc).__name__, one_line(exc)
    said = kind if detail == kind else f"{kind}: {detail}"
    where = _innermost(exc)
    return f"{said} ({where})" if where else said


def user_frame(exc: BaseException) -> str:
    """``file:line: Error: message`` at the innermost frame of the user's own code (no
    labkit, standard-library or installed-package frame), or ``Error: message``."""
    own = [frame for frame in traceback.extract_tb(exc.__traceback__) if _users(frame.filename)]
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f"{exc.filename}:{exc.lineno}: "
    elif own:
        where = f"{own[-1].filename}:{own[-1].lineno}: "
    else:
        where = ""
    return f"{where}{type(exc).__name__}: {one_line(exc)}"


class CorruptRunError(LabkitError):
    """A run folder whose files break its format (a missing chunk, a manifest of the wrong
    types, an unreadable commit log): one line naming the run and what is wrong."""
