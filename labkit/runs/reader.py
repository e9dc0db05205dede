"""The run store's reader: open a run (live or finished) and read its records.

A reader never writes: a run whose writer died is reported as ``crashed``, one still
being created as ``starting``, and what a live writer adds is picked up by
:meth:`Run.refresh`. Whatever breaks the format (an unreadable file, a manifest of the
wrong types or sizes, a committed record's missing chunk) is a one-line
:class:`~labkit.errors.CorruptRunError` naming the run. What the arrays *mean* (layers,
statistics, feature maps) is :mod:`labkit.recording`'s business, not this module's.
"""

from __future__ import annotations

import bisect
import json
import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from labkit.errors import CorruptRunError, LabkitError, one_line
from labkit.runs.chunks import (
    as_written,
    codec_names,
    decode_row,
    has_row_chunk,
    read_gradchecks,
    read_row_chunk,
    row_chunk_path,
    sharded_as_written,
)
from labkit.runs.files import dir_size, writer_alive
from labkit.runs.format import (
    CHUNK_KEYS,
    CONSOLIDATED,
    DATA,
    MANIFEST,
    METRICS,
    READ_FORMATS,
    RECORDS,
    SAFE_CODECS,
    manifest_problem,
    metrics_row_problem,
)


def _read_manifest(path: Path) -> dict:
    manifest_path = path / MANIFEST
    if not path.exists():
        raise LabkitError(f"{path}: no such run folder")
    if not path.is_dir():
        raise LabkitError(f"{path}: not a run folder (it is a file)")
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabkitError(f"{path}: not a labkit run (no {MANIFEST})") from None
    except (OSError, UnicodeDecodeError) as exc:
        message = f"{manifest_path}: cannot read the manifest ({one_line(exc)})"
        raise CorruptRunError(message) from None
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CorruptRunError(f"{manifest_path}: not valid JSON ({one_line(exc)})") from None
    if not isinstance(document, dict) or "format" not in document:
        raise CorruptRunError(f"{manifest_path}: not a labkit run manifest (no 'format')")
    if document["format"] not in READ_FORMATS:
        raise LabkitError(
            f"{manifest_path}: unknown run format {document['format']!r} "
            f"(this labkit reads {' and '.join(READ_FORMATS)})"
        )
    problem = manifest_problem(document)
    if problem:
        raise CorruptRunError(f"{manifest_path}: {problem}")
    return document


def _complete_lines(path: Path, offset: int) -> list[bytes]:
    """The newline-terminated lines of ``path`` from byte ``offset``, without the newlines
    (none while it does not exist; CorruptRunError if it can't be read)."""
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            data = file.read()
    except FileNotFoundError:
        return []
    except OSError as exc:  # a directory, a symlink loop, no permission, an I/O error
        raise CorruptRunError(f"{path}: cannot read ({one_line(exc)})") from None
    end = data.rfind(b"\n")
    return data[:end].split(b"\n") if end >= 0 else []


_CHUNK_KEY_ENCODING = {
    "name": CHUNK_KEYS["name"],
    "configuration": {"separator": CHUNK_KEYS["separator"]},
}


@dataclass(frozen=True)
class RunSummary:
    """One run in a runs folder, as ``labkit runs list`` shows it."""

    path: Path
    status: str
    steps: int  # committed records
    last_step: int | None
    best_test_accuracy: float | None
    size_bytes: int | None  # None: not measured (a listing that doesn't need it)
    error: str | None = None
    model: str | None = None  # the manifest's "model": what the run was trained from
    created: str | None = None  # the manifest's "created" (ISO 8601), when it has one


class Run:
    """A run opened for reading; ``refresh()`` picks up what a live writer added since."""

    def __init__(self, path: Path, manifest: dict) -> None:
        self.path = path
        self.manifest = manifest
        self._group: zarr.Group | None = None
        self._arrays: dict[str, zarr.Array] = {}
        self._statics: dict[str, np.ndarray] = {}
        self._records: list[dict] = []
        self._steps: list[int] = []
        self._records_offset = 0
        self._records_stuck = False
        self._metrics: list[dict] = []
        self._metrics_offset = 0
        if not being_created(path):  # else its group may not exist yet: opened when read
            self._open_group()

    # -- state

    @property
    def capacity(self) -> int:
        return int(self.manifest["capacity"])

    @property
    def status(self) -> str:
        """The manifest's status; ``"starting"`` while the writer is still creating the run
        (no ``records.jsonl`` yet), ``"crashed"`` for a "running" run no writer holds."""
        status = self.manifest["status"]
        if being_created(self.path) and writer_alive(self.path):
            return "starting"
        if status == "running" and not writer_alive(self.path):
            return "crashed"
        return status

    def refresh(self) -> int:
        """Re-read the manifest, commit log and metrics; returns how many records are visible."""
        manifest = _read_manifest(self.path)
        if manifest.get("id") != self.manifest.get("id"):  # replaced by an overwrite
            self.__init__(self.path, manifest)
        self.manifest = manifest
        self._read_records()
        self._read_metrics()
        return len(self._records)

    def _read_records(self) -> None:
        if self._records_stuck:
            return
        for raw in _complete_lines(self.path / RECORDS, self._records_offset):
            record = self._parse_record(raw)
            if record is None:  # corrupt: trust nothing from here on
                self._records_stuck = True
                return
            self._records.append(record)
            self._steps.append(record["step"])
            self._records_offset += len(raw) + 1

    def _parse_record(self, raw: bytes) -> dict | None:
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(record, dict):
            return None
        index, step = record.get("record"), record.get("step")
        if index != len(self._records) or type(index) is not int or index >= self.capacity:
            return None
        if type(step) is not int or (self._steps and step <= self._steps[-1]):
            return None
        return record

    def _read_metrics(self) -> None:
        for raw in _complete_lines(self.path / METRICS, self._metrics_offset):
            self._metrics_offset += len(raw) + 1
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                continue
            if metrics_row_problem(row) is None:
                self._metrics.append(row)

    def __len__(self) -> int:
        return len(self._records)

    @property
    def records(self) -> list[dict]:
        """The committed records: ``{"record", "step", "epoch", "time"}``, oldest first."""
        return list(self._records)

    @property
    def steps(self) -> np.ndarray:
        """The committed records' steps (int64, ascending)."""
        return np.array(self._steps, dtype=np.int64)

    def record_at(self, step: int) -> int:
        """Index of the committed record taken at exactly ``step``."""
        i = bisect.bisect_left(self._steps, step)
        if i == len(self._steps) or self._steps[i] != step:
            raise LabkitError(f"{self.path}: no record at step {step} ({self._steps_text()})")
        return i

    def nearest_record(self, step: int) -> int:
        """Index of the committed record whose step is nearest ``step`` (the earlier on a tie)."""
        if not self._steps:
            raise LabkitError(f"{self.path}: the run has no records yet")
        i = bisect.bisect_left(self._steps, step)
        if i == len(self._steps):
            return i - 1
        if i > 0 and step - self._steps[i - 1] <= self._steps[i] - step:
            return i - 1
        return i

    def _steps_text(self) -> str:
        if not self._steps:
            return "it has no records yet"
        return f"{len(self._steps)} records, steps {self._steps[0]}..{self._steps[-1]}"

    # -- arrays

    def _open_group(self) -> None:
        data = self.path / DATA
        try:
            self._group = zarr.open_group(
                store=LocalStore(data, read_only=True),
                mode="r",
                zarr_format=3,
                use_consolidated=False,
            )
        except Exception as exc:  # zarr raises several types for a missing/bad group
            message = f"{data}: corrupt or missing zarr group ({one_line(exc)})"
            raise CorruptRunError(message) from None

    def _array(self, name: str, table: str) -> zarr.Array:
        if name in self._arrays:
            return self._arrays[name]
        spec = self.manifest[table].get(name)
        if spec is None:
            kind = "record" if table == "record_arrays" else "static"
            raise LabkitError(f"{self.path}: no {kind} array {name!r}")
        where = self.path / DATA / name
        if self._group is None:
            if being_created(self.path) and writer_alive(self.path):
                raise LabkitError(f"{self.path}: the run is still being created (no records yet)")
            self._open_group()
        try:
            array = self._group[name]
        except Exception as exc:
            message = f"{where}: missing or corrupt array ({one_line(exc)})"
            raise CorruptRunError(message) from None
        expected = tuple(spec["shape"])
        if table == "record_arrays":
            expected = (self.capacity, *expected)
        problem = None
        if not isinstance(array, zarr.Array) or array.metadata.zarr_format != 3:
            problem = "not a zarr v3 array"
        elif array.shape != expected or np.dtype(array.dtype) != np.dtype(spec["dtype"]):
            problem = f"{array.dtype}{list(array.shape)} does not match the manifest"
        elif table == "record_arrays" and array.chunks != (1, *(max(1, d) for d in expected[1:])):
            problem = f"chunks {list(array.chunks)} are not one record per chunk"
        elif array.metadata.to_dict().get("chunk_key_encoding") != _CHUNK_KEY_ENCODING:
            problem = "not the format's chunk key encoding"
        else:
            codecs = codec_names(array.metadata.to_dict().get("codecs", []))
            unsafe = [codec for codec in codecs if codec not in SAFE_CODECS]
            if unsafe:
                problem = f"codec {unsafe[0]!r} is not allowed"
        if problem:
            raise CorruptRunError(f"{where}: {problem}")
        self._arrays[name] = array
        return array

    def _read(self, array: zarr.Array, selection: Any, name: str) -> np.ndarray:
        try:
            return np.asarray(array[selection])
        except Exception as exc:
            message = f"{self.path / DATA / name}: cannot read ({one_line(exc)})"
            raise CorruptRunError(message) from None

    def _has_chunk(self, array: zarr.Array, name: str, index: int) -> bool:
        """Whether row ``index``'s only chunk (one a row: checked when opened) is there."""
        shards = None if array.shards is None else array.shards[0]
        return has_row_chunk(self.path, name, index, array.ndim - 1, shards)

    def _check_chunks(self, array: zarr.Array, name: str, rows: range) -> None:
        """CorruptRunError unless every committed record in ``rows`` has its chunk: zarr
        would read a missing one as zeros (its fill value), which the writer never leaves."""
        for index in rows:
            if not self._has_chunk(array, name, index):
                raise CorruptRunError(
                    f"{self.path}: array {name!r} is missing the chunk of record "
                    f"{index} (step {self._steps[index]}): the run is corrupt"
                )

    def array(self, name: str, record: int | slice | None = None) -> np.ndarray:
        """A record array: one record (int), several (slice) or all committed ones (None)."""
        array = self._array(name, "record_arrays")
        n = len(self._records)
        if record is None:
            whole = self._consolidated(name, n)
            if whole is not None:
                return whole
            record = slice(None)
        if isinstance(record, slice):
            rows = range(n)[record]
            if len(rows) == 0:
                return np.zeros((0, *array.shape[1:]), dtype=array.dtype)
            self._check_chunks(array, name, rows)
            if rows.step > 0:
                return self._read(array, slice(rows.start, rows.stop, rows.step), name)
            low, high = rows[-1], rows[0] + 1
            block = self._read(array, slice(low, high), name)
            return block[np.asarray(rows) - low]
        index = operator.index(record)
        if not -n <= index < n:
            raise LabkitError(f"{self.path}: no record {index} ({n} records committed)")
        codecs = array.metadata.to_dict().get("codecs", [])
        if as_written(codecs) or sharded_as_written(codecs, array.shape[1:]):
            return self._read_row(array, name, index % n)  # decoded without zarr
        self._check_chunks(array, name, range(index % n, index % n + 1))
        return self._read(array, index % n, name)

    def _read_row(self, array: zarr.Array, name: str, index: int) -> np.ndarray:
        """Record ``index``, decoded without zarr (:func:`.chunks.read_row_chunk`; its
        pipeline took most of a dashboard step move). A missing chunk is corruption."""
        shards = None if array.shards is None else array.shards[0]
        path = row_chunk_path(self.path, name, index, array.ndim - 1, shards)
        try:
            data = read_row_chunk(self.path, name, index, array.ndim - 1, shards)
        except FileNotFoundError:
            data = None
        except (OSError, ValueError) as exc:
            raise CorruptRunError(f"{path}: cannot read ({one_line(exc)})") from None
        if data is None:
            self._check_chunks(array, name, range(index, index + 1))  # raises, with the step
        try:
            return decode_row(data, array.shape[1:], array.dtype)
        except Exception as exc:  # a truncated or garbled chunk: a corrupt run, one line
            raise CorruptRunError(f"{path}: cannot read ({one_line(exc)})") from None

    def _consolidated(self, name: str, count: int) -> np.ndarray | None:
        """The whole-run copy of a small record array, when the writer made one of these
        ``count`` records (see RunWriter._consolidate); None otherwise."""
        if self.manifest.get("consolidated", {}).get(name) != count or count == 0:
            return None
        spec = self.manifest["record_arrays"][name]
        try:
            array = self._group[f"{CONSOLIDATED}/{name}"]
        except Exception:
            return None
        expected = (count, *spec["shape"])
        if (
            not isinstance(array, zarr.Array)
            or array.shape != expected
            or array.chunks != tuple(max(1, d) for d in expected)
            or np.dtype(array.dtype) != np.dtype(spec["dtype"])
            or not self._has_chunk(array, f"{CONSOLIDATED}/{name}", 0)
        ):
            return None
        return self._read(array, slice(None), name)

    def arrays(self, prefix: str = "") -> list[str]:
        """Names of the record arrays starting with ``prefix`` (e.g. ``"a/"``), sorted."""
        return sorted(name for name in self.manifest["record_arrays"] if name.startswith(prefix))

    def static(self, name: str) -> np.ndarray:
        """A static array (written once at creation, as one chunk the writer always
        stores): a missing chunk file is corruption, never zeros. Read once per opened
        run (an overwrite opens it anew), and returned read-only."""
        if name in self._statics:
            return self._statics[name]
        array = self._array(name, "static_arrays")
        if array.size and not self._has_chunk(array, name, 0):
            raise CorruptRunError(f"{self.path}: static array {name!r} is missing its chunk file")
        value = self._read(array, ..., name)
        value.flags.writeable = False
        self._statics[name] = value
        return value

    # -- the rest

    def metrics(self) -> list[dict]:
        """Every complete metrics row, in the order written."""
        return list(self._metrics)

    @property
    def gradchecks(self) -> list[dict]:
        """The gradient-check reports, oldest first (unreadable files are skipped)."""
        return read_gradchecks(self.path)

    def size_bytes(self) -> int:
        """Total size of the run's files."""
        return dir_size(self.path)

    def summary(self, with_size: bool = True) -> RunSummary:
        """The run as one row of ``list_runs`` (``with_size=False``: without walking its
        files for their size, which for a long run is thousands of chunk files)."""
        accuracies = [
            row["test_accuracy"]
            for row in self._metrics
            if isinstance(row.get("test_accuracy"), int | float)
            and not isinstance(row.get("test_accuracy"), bool)
        ]
        return RunSummary(
            path=self.path,
            status=self.status,
            steps=len(self._records),
            last_step=self._steps[-1] if self._steps else None,
            best_test_accuracy=float(max(accuracies)) if accuracies else None,
            size_bytes=self.size_bytes() if with_size else None,
            model=model if isinstance(model := self.manifest.get("model"), str) else None,
            created=created if isinstance(created := self.manifest.get("created"), str) else None,
        )

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status!r}, records={len(self)})"


def being_created(path: Path) -> bool:
    """Whether the run at ``path`` has no commit log yet (see :mod:`labkit.runs.format`)."""
    try:
        os.lstat(path / RECORDS)
    except FileNotFoundError:
        return True
    except OSError:
        return False  # there, but unreadable: reading it says so
    return False


def open_run(path: str | os.PathLike) -> Run:
    """Open a run for reading; LabkitError (one line naming the path) if it is not a good run."""
    path = Path(path)
    run = Run(path, _read_manifest(path))
    run.refresh()
    return run
