"""Runs as the dashboard reads them: opened once, cached in memory, refreshed when live.

Whole-run tables (per-layer statistics, histograms, update ratios) are read once and then
extended with new records only, so moving the step slider reads just that step's arrays.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dashboards.runindex import RunIndex
from labkit.errors import LabkitError
from labkit.recording import HIST, STATS, UPDATE_RATIO, Recording, open_recording
from labkit.usercode import Model, with_layers

MAX_OPEN_RUNS = 12  # runs kept open per server process (a 2,000-record run's tables: ~10 MB)


@dataclass
class CachedRun:
    """A recorded run plus its whole-run tables (:data:`labkit.recording.WHOLE_RUN_TABLES`).

    ``Recording.refresh`` already follows the commit log and metrics; this keeps the
    tables in step with it, reading only the records added since the last refresh.
    """

    run: Recording
    tables: dict[str, np.ndarray] = field(default_factory=dict)
    _run_id: str | None = None

    @property
    def records(self) -> int:
        return len(self.run)

    @property
    def metrics(self) -> list[dict]:
        return self.run.metrics()

    @property
    def stats(self) -> np.ndarray:  # (R, layers, 2, fields)
        return self.tables[STATS]

    @property
    def hist(self) -> np.ndarray:  # (R, layers, 2, bins)
        return self.tables[HIST]

    @property
    def update_ratio(self) -> np.ndarray:  # (R, params)
        return self.tables[UPDATE_RATIO]

    def refresh(self) -> None:
        """Pick up what a run still being written (or overwritten) has added."""
        count = self.run.refresh()
        run_id = self.run.manifest.get("id")
        if run_id != self._run_id:  # first read, or the folder now holds another run
            self.tables, self._run_id = {}, run_id
        held = len(self.tables[STATS]) if self.tables else 0
        if count == held:
            return
        if held == 0:
            self.tables = self.run.tables()  # a finished run's one-chunk copies
            return
        new = self.run.tables(slice(held, count))
        self.tables = {name: np.concatenate([self.tables[name], new[name]]) for name in new}


class RunStore:
    """The runs under one folder, by name: the run list (:class:`RunIndex`) and the
    :data:`MAX_OPEN_RUNS` most recently viewed runs, open."""

    def __init__(self, runs_dir: str | Path, models: Sequence[Model] = ()) -> None:
        self.runs_dir = Path(runs_dir)
        self.models = tuple(models)
        self.index = RunIndex(self.runs_dir)
        self._cache: OrderedDict[str, CachedRun] = OrderedDict()
        self._lock = threading.Lock()  # the server answers callbacks on several threads

    def model_for(self, run: Recording) -> Model | None:
        """The ``--model`` given to the dashboard that the run was trained from, if any;
        else every layer class the given models bring (a preset's run needs none)."""
        same = [model for model in self.models if model.spec == run.model]
        if same:
            return same[0]
        classes = [cls for model in self.models for cls in model.classes]
        return with_layers(None, dict.fromkeys(classes))

    def get(self, name: str) -> CachedRun:
        """The named run, opened on first use and refreshed on every call."""
        with self._lock:
            cached = self._cache.get(name)
            if cached is None:
                path = self.runs_dir / name
                if path.parent != self.runs_dir or not path.is_dir():
                    raise LabkitError(f"{path}: no such run")
                cached = CachedRun(open_recording(path))
                self._cache[name] = cached
                while len(self._cache) > MAX_OPEN_RUNS:
                    self._cache.popitem(last=False)  # the least recently viewed
            self._cache.move_to_end(name)
            try:
                cached.refresh()
            except LabkitError:
                self._cache.pop(name, None)  # broken since it was opened: open it anew next time
                raise
            return cached
