"""Run ids as requests send them, resolved against the runs folder in one place.

A callback request is any JSON a client cares to post, so a run id from it is a name to
check, never a path to open: :func:`resolve_run` is what every callback that takes a run
id calls first, and what it refuses never reaches the file system.
"""

from __future__ import annotations

import os
from pathlib import Path

from labkit.errors import LabkitError
from labkit.runs.format import GRADCHECKS
from labkit.runs.listing import is_run_folder


class BadRunId(LabkitError):
    """A run id no run list of this dashboard offers; its message is for the panel."""


def resolve_run(runs_dir: str | os.PathLike, name: object) -> str:
    """``name`` if it is a run the run list of ``runs_dir`` offers, else :class:`BadRunId`.

    A name is one folder entry: not empty, no ``/`` or ``\\``, not ``.`` or ``..``, not
    absolute; it must be a run folder directly in ``runs_dir`` (what the run list shows),
    and its real path, links followed, must stay inside ``runs_dir`` (and the folder a
    check writes its report into, inside the run).
    """
    if not isinstance(name, str) or not name or name in (".", "..") or not is_one_part(name):
        raise BadRunId(f"{name!r} is not a run name")
    runs_dir = Path(runs_dir)
    if not is_run_folder(runs_dir / name):
        raise BadRunId(f"{name!r} is not a run in this folder")
    reason = leads_out(runs_dir, name)
    if reason:
        raise BadRunId(f"{name!r} {reason}")
    return name


def is_one_part(name: str) -> bool:
    """Whether ``name`` is a single path component (nothing a join would climb or root)."""
    return not ({"/", "\\", "\0"} & set(name)) and not os.path.isabs(name)


def leads_out(runs_dir: str | os.PathLike, name: str) -> str | None:
    """Why ``runs_dir/name``, or the report folder a check writes into, resolves (links
    followed) to a place outside the real ``runs_dir``; None if neither does."""
    root = os.path.realpath(runs_dir)
    run = os.path.realpath(os.path.join(runs_dir, name))
    if run == root or not inside(run, root):
        return "links outside the runs folder"
    if not inside(os.path.realpath(os.path.join(run, GRADCHECKS)), run):
        return f"has a {GRADCHECKS} folder that links outside the run"
    return None


def inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root
