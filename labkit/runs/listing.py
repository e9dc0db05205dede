"""Listing a runs folder: one summary per run, a broken run listed with its error.

One bad run never hides the others: whatever reading a run raises, it is listed as
``corrupt`` with a one-line error, and a run its writer is still creating is
``starting``, never corrupt.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from labkit.errors import LabkitError, one_line
from labkit.runs.files import dir_size, writer_alive
from labkit.runs.format import MANIFEST
from labkit.runs.reader import Run, RunSummary, being_created, open_run


def _folders(directory: Path) -> Iterator[Path]:
    """The folders in ``directory``, by name (an entry that can't be examined is skipped)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as exc:
        raise LabkitError(f"{directory}: cannot list the folder ({one_line(exc)})") from None
    for entry in entries:
        try:
            if entry.is_dir():
                yield Path(entry.path)
        except OSError:  # a symlink loop, no permission: not a run folder we can read
            continue


def iter_run_dirs(directory: Path) -> Iterator[Path]:
    """The folders in ``directory`` that hold a run manifest, by name."""
    for path in _folders(directory):
        if has_manifest(path):
            yield path


def has_manifest(folder: Path) -> bool:
    """Whether the folder holds a run manifest (a link to one counts: the reader says
    whether it can be read): what makes a folder a run."""
    return os.path.lexists(folder / MANIFEST)


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a run folder: :func:`iter_run_dirs` asked of one name, without
    listing the whole folder."""
    try:
        return path.is_dir() and has_manifest(path)
    except OSError:
        return False


def summarize(
    path: Path, check: Callable[[Run], object] | None = None, with_size: bool = True
) -> RunSummary:
    """The run at ``path`` as a row of :func:`list_runs` (``check``: see there;
    ``with_size=False`` leaves ``size_bytes`` None instead of walking the run's files)."""
    size = dir_size if with_size else lambda path: None
    try:
        run = open_run(path)
        if check is not None:
            check(run)
        return run.summary(with_size)
    except Exception as exc:  # whatever one run raises, the listing goes on
        if being_created(path) and writer_alive(path):  # being replaced as we read it
            return RunSummary(path, "starting", 0, None, None, size(path))
        if isinstance(exc, LabkitError):
            error = one_line(exc)
        else:
            error = f"{path}: cannot read the run ({type(exc).__name__}: {one_line(exc)})"
        return RunSummary(path, "corrupt", 0, None, None, size(path), error=error)


def list_runs(
    directory: str | os.PathLike, check: Callable[[Run], object] | None = None
) -> list[RunSummary]:
    """One summary per run in ``directory``, by name: a run that can't be read is listed
    as ``corrupt`` with its error, one its writer is still creating as ``starting``. A
    folder without a manifest is no run (yet), even while a writer holds its lock: a
    training that records nothing holds it too.

    ``check(run)``, if given, may raise a LabkitError for what a reader by meaning needs
    beyond the store's format (e.g. :class:`labkit.recording.Recording`'s description).
    """
    directory = Path(directory)
    if not directory.is_dir():
        what = "no such folder" if not directory.exists() else "not a folder"
        raise LabkitError(f"{directory}: {what}")
    return [summarize(path, check) for path in iter_run_dirs(directory)]
