"""Runs as the dashboard reads them: opened once, cached in memory, refreshed when live.

Whole-run tables (metrics, per-layer statistics) are read once and then extended with new
records only, so moving the step slider reads just that step's arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labkit.errors import LabkitError
from labkit.runs import Run, RunSummary, list_runs, open_run


@dataclass
class CachedRun:
    """A run plus its whole-run tables, refreshed together."""

    run: Run
    records: int = 0
    metrics: list[dict] = field(default_factory=list)
    stats: np.ndarray | None = None  # (R, layers, 2, fields)
    hist: np.ndarray | None = None  # (R, layers, 2, bins)
    update_ratio: np.ndarray | None = None  # (R, params)

    def refresh(self) -> bool:
        """Pick up new records of a run still being written; True when something changed."""
        count = self.run.refresh()
        if count == self.records and self.stats is not None:
            return False
        self.metrics = self.run.metrics()
        if count:
            self.stats = self.run.array("stats")
            self.hist = self.run.array("hist")
            self.update_ratio = self.run.array("update_ratio")
        self.records = count
        return True


class RunStore:
    """The runs under one folder, by name."""

    def __init__(self, runs_dir: str | Path) -> None:
        self.runs_dir = Path(runs_dir)
        self._cache: dict[str, CachedRun] = {}

    def summaries(self) -> list[RunSummary]:
        """Every run in the folder (corrupt ones with their error); [] if there is none."""
        if not self.runs_dir.is_dir():
            return []
        return list_runs(self.runs_dir)

    def get(self, name: str) -> CachedRun:
        """The named run, opened on first use and refreshed on every call."""
        cached = self._cache.get(name)
        if cached is None:
            path = self.runs_dir / name
            if path.parent != self.runs_dir or not path.is_dir():
                raise LabkitError(f"{path}: no such run")
            cached = CachedRun(open_run(path))
            self._cache[name] = cached
        cached.refresh()
        return cached
