"""Run ids as requests send them, resolved against the runs folder in one place.

A callback request is any JSON a client cares to post, so a run id from it is a name to
check, never a path to open: :func:`resolve_run` is what every callback that takes a run
id calls first, and what it refuses never reaches the file system.
"""

from __future__ import annotations

import os
from pathlib import Path

from labkit.errors import LabkitError
from labkit.runs import iter_run_dirs
from labkit.runs.format import GRADCHECKS


class BadRunId(LabkitError):
    """A run id no run list of this dashboard offers; its message is for the panel."""


def resolve_run(runs_dir: str | os.PathLike, name: object) -> str:
    """``name`` if it is a run the run list of ``runs_dir`` offers, else :class:`BadRunId`.

    A name is one folder entry: not empty, no ``/`` or ``\\``, not ``.`` or ``..``, not
    absolute; it must be a run folder directly in ``runs_dir`` (what the run list shows),
    and its real path, links followed, must stay inside ``runs_dir``.
    """
    if not isinstance(name, str) or not name or name in (".", "..") or not is_one_part(name):
        raise BadRunId(f"{name!r} is not a run name")
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir() or name not in {path.name for path in iter_run_dirs(runs_dir)}:
        raise BadRunId(f"{name!r} is not a run in this folder")
    if leads_out(runs_dir, name):
        raise BadRunId(f"{name!r} links outside the runs folder")
    return name


def is_one_part(name: str) -> bool:
    """Whether ``name`` is a single path component (nothing a join would climb or root)."""
    return not ({"/", "\\", "\0"} & set(name)) and not os.path.isabs(name)


def leads_out(runs_dir: str | os.PathLike, name: str) -> bool:
    """Whether ``runs_dir/name``, or the report folder a check writes into, resolves (links
    followed) to a place outside the real ``runs_dir``."""
    root = os.path.realpath(runs_dir)
    run = os.path.realpath(os.path.join(runs_dir, name))
    reports = os.path.realpath(os.path.join(run, GRADCHECKS))
    return not (inside(run, root) and run != root and inside(reports, run))


def inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root
