"""The run list of a runs folder, kept incrementally: a run is reopened only when its
files say it changed, so a folder of 200 runs costs a few hundred ``stat`` calls per
refresh, not 200 opened runs and their folders walked.

A run's *signature* is the size, modification time and inode of the files a writer
changes as it goes (manifest, commit log, metrics); a live run's status also depends on
whether its writer still holds the lock, which no file shows, so runs that say they are
running are summarized anew on every refresh (a class has a few live runs, not 200).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dashboards.runids import leads_out
from labkit.recording import Recording
from labkit.runs.format import MANIFEST, METRICS, RECORDS
from labkit.runs.listing import iter_run_dirs, summarize
from labkit.runs.reader import RunSummary

LIVE = ("running", "starting")  # statuses that can change with no file changing
WATCHED = (MANIFEST, RECORDS, METRICS)


@dataclass(frozen=True)
class RunEntry:
    """One run as the run pickers show it."""

    name: str
    option: dict  # {"label", "value"[, "disabled"]} for a dcc.Dropdown
    created: float  # when the run was created (Unix seconds), for "the newest run"
    status: str
    error: str | None = None  # why a corrupt run can't be shown (one line)

    @property
    def usable(self) -> bool:
        return not self.option.get("disabled")


def signature(path: Path) -> tuple:
    """What changes whenever a writer changes the run (missing files count too)."""
    parts = []
    for name in WATCHED:
        try:
            stat = os.stat(path / name)
        except OSError:
            parts.append(None)
            continue
        parts.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return tuple(parts)


def created_time(summary: RunSummary) -> float:
    """The manifest's ``created``, else the folder's modification time (0 if unknown)."""
    if summary.created:
        try:
            return datetime.fromisoformat(summary.created).timestamp()
        except ValueError:
            pass
    try:
        return summary.path.stat().st_mtime
    except OSError:
        return 0.0


def entry_for(runs_dir: Path, path: Path) -> RunEntry:
    """Summarize one run (without its size) into what the pickers show."""
    name = path.name
    summary = summarize(path, check=Recording, with_size=False)
    if reason := leads_out(runs_dir, name):
        option = {"label": f"{name} — {reason}", "value": name, "disabled": True}
    elif summary.error is not None:
        option = {"label": f"{name} — corrupt: {summary.error}", "value": name, "disabled": True}
    else:
        made = f", --model {summary.model}" if summary.model else ""
        option = {"label": f"{name} ({summary.status}{made})", "value": name}
    return RunEntry(name, option, created_time(summary), summary.status, summary.error)


class RunIndex:
    """Every run of ``runs_dir`` by name, refreshed incrementally; safe across threads."""

    def __init__(self, runs_dir: str | os.PathLike) -> None:
        self.runs_dir = Path(runs_dir)
        self._known: dict[str, tuple[tuple, RunEntry]] = {}
        self._lock = threading.Lock()
        self.reopened = 0  # runs summarized since creation: what a refresh cost

    def refresh(self) -> list[RunEntry]:
        """The runs now in the folder, by name: new and changed ones summarized, removed
        ones dropped, unchanged ones as they were."""
        if not self.runs_dir.is_dir():
            with self._lock:
                self._known = {}
            return []
        paths = list(iter_run_dirs(self.runs_dir))
        with self._lock:
            known = self._known
            fresh: dict[str, tuple[tuple, RunEntry]] = {}
            for path in paths:
                mark = signature(path)
                held = known.get(path.name)
                if held is None or held[0] != mark or held[1].status in LIVE:
                    held = (mark, entry_for(self.runs_dir, path))
                    self.reopened += 1
                fresh[path.name] = held
            self._known = fresh
            return [entry for _, entry in fresh.values()]

    def options(self) -> list[dict]:
        """Dropdown options for every run, by name."""
        return [entry.option for entry in self.refresh()]

    def newest(self, entries: list[RunEntry] | None = None) -> str | None:
        """The name of the most recently created usable run (ties: the last by name)."""
        usable = [
            entry for entry in (self.refresh() if entries is None else entries) if entry.usable
        ]
        if not usable:
            return None
        return max(usable, key=lambda entry: (entry.created, entry.name)).name


def version_of(options: list[dict]) -> str:
    """A short digest of a run list: the same in every server process for the same runs,
    so a page can be told "nothing changed" without being sent the list again."""
    text = json.dumps(options, sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
