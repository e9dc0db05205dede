"""The check button and the table of stored checks: one check at a time per run, a
report stored once, and the table served a page at a time."""

from __future__ import annotations

import fcntl
import json
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from dashboards import figures
from dashboards.store import CachedRun
from labkit.errors import LabkitError
from labkit.runs.format import GRADCHECKS, dumps
from labkit.usercode import Model

BUSY = "a check is already running for this run"
VOLATILE = ("created", "seconds")  # what differs between two runs of the same check
MAX_PAGE_SIZE = 100
NUMERIC_COLUMNS = {"checked", "failures", "kinks", "max_abs_error", "max_rel_error"}
SORTABLE = {column["id"] for column in figures.GRADCHECK_COLUMNS}

CHECK_LOCK = ".check.lock"  # in the run's gradchecks/ (readers take only gradcheck-*.json)

_running: set[str] = set()
_running_lock = threading.Lock()


class CheckRunning(LabkitError):
    """A check of this run is under way (in this server or another); the click is refused."""


@contextmanager
def one_check_at_a_time(run_path: os.PathLike) -> Iterator[None]:
    """Hold the run's check slot, or raise :class:`CheckRunning` at once if it is taken.

    Across processes (gunicorn's workers, a second dashboard) the slot is a non-blocking
    ``flock`` on ``gradchecks/.check.lock``, released by the kernel when its holder ends,
    however it ends. The in-process set comes first: it refuses a second thread without
    touching the disk, and where flock is emulated by per-process locks (NFS) it is what
    keeps two threads of one worker apart.
    """
    key = os.path.realpath(run_path)
    with _running_lock:
        if key in _running:
            raise CheckRunning(BUSY)
        _running.add(key)
    try:
        fd = lock_checks(key)
        try:
            yield
        finally:
            os.close(fd)  # releases the flock
    finally:
        with _running_lock:
            _running.discard(key)


def lock_checks(run_path: str) -> int:
    """The run's check lock, held (an open descriptor: close it to release); CheckRunning if
    another process holds it, LabkitError if the run's folder cannot hold it."""
    folder = os.path.join(run_path, GRADCHECKS)
    try:
        os.makedirs(folder, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(os.path.join(folder, CHECK_LOCK), flags, 0o644)
    except OSError as exc:
        raise LabkitError(
            f"cannot check {os.path.basename(run_path)!r} here: {exc.strerror} ({folder})"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CheckRunning(BUSY) from None
    except OSError:
        os.close(fd)
        raise
    return fd


def result_of(document: dict) -> dict:
    """A report document as stored (JSON round trip) without when it ran and how long."""
    stored = json.loads(dumps(document))
    return {key: value for key, value in stored.items() if key not in VOLATILE}


def check_at_step(cached: CachedRun, record: int, model: Model | None = None) -> str:
    """Run a fast gradient check on the weights of the record's step and store it, unless
    the run holds the same result for that step already (``model``: the user's code, for
    a run of their own layers). One check at a time per run: :class:`CheckRunning`."""
    from labkit.checks import check_all
    from labkit.runs import write_gradcheck

    run = cached.run
    if cached.records == 0:
        return "no record to check yet"
    step = int(run.steps[int(np.clip(record, 0, cached.records - 1))])
    with one_check_at_a_time(run.path):
        network = run.network_at(step, model)
        suite = check_all(network, fast=True, subject=f"run {run.path.name} at step {step}")
        suite.step = step
        document = suite.to_dict()
        result = result_of(document)
        same = any(
            report.get("step") == step and result_of(report) == result for report in run.gradchecks
        )
        if not same:
            write_gradcheck(run.path, document)
    verdict = "all passed" if suite.passed else "FAILED"
    return f"step {step:,}: {verdict}" + (" (the same as the stored report)" if same else "")


def gradcheck_rows(cached: CachedRun) -> list[dict]:
    """Every stored gradient-check report of the run, newest first, as table rows."""
    reports = cached.run.gradchecks
    rows = []
    for number in range(len(reports), 0, -1):
        rows.extend(figures.gradcheck_table(reports[number - 1], number))
    return rows


def sort_key(column: str):
    """Numbers by value (a non-finite error last), anything else as text."""
    if column not in NUMERIC_COLUMNS:
        return lambda row: str(row.get(column, ""))

    def number(row: dict) -> float:
        try:
            value = float(row.get(column))
        except (TypeError, ValueError):
            return math.inf
        return math.inf if math.isnan(value) else value

    return number


def gradcheck_page(rows: list[dict], page: object, size: object, sort_by: object) -> tuple:
    """``(rows of the page, page count, page)`` for the table's ``page_current``,
    ``page_size`` and ``sort_by`` as a request sent them (anything odd: the defaults)."""
    size = size if isinstance(size, int) and 0 < size <= MAX_PAGE_SIZE else 12
    for spec in reversed(sort_by if isinstance(sort_by, list) else []):
        if isinstance(spec, dict) and spec.get("column_id") in SORTABLE:
            descending = spec.get("direction") == "desc"
            rows = sorted(rows, key=sort_key(spec["column_id"]), reverse=descending)
    count = max(math.ceil(len(rows) / size), 1)
    page = min(max(page, 0), count - 1) if isinstance(page, int) else 0
    return rows[page * size : (page + 1) * size], count, page
