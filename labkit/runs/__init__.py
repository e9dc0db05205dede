"""The run store: a folder written while training and read for replay and figures.

:mod:`labkit.runs.format` is the format (``labkit-run/2``: the files, their names, the
order of writes and what a reader checks), :mod:`labkit.runs.writer` the writer
(locking, fsync, atomic writes), :mod:`labkit.runs.reader` the reader and
:mod:`labkit.runs.listing` the listing of a runs folder. The store is
generic: what the recorder puts into a run, and how to read it back by meaning, is
:mod:`labkit.recording`.
"""

from labkit.runs.chunks import write_gradcheck
from labkit.runs.files import writer_alive
from labkit.runs.format import FORMAT, STATUSES
from labkit.runs.listing import iter_run_dirs, list_runs
from labkit.runs.reader import Run, RunSummary, open_run
from labkit.runs.writer import RunWriter

__all__ = [
    "FORMAT",
    "STATUSES",
    "Run",
    "RunSummary",
    "RunWriter",
    "iter_run_dirs",
    "list_runs",
    "open_run",
    "write_gradcheck",
    "writer_alive",
]
