"""The run store: a directory written while training and read for replay and figures.

A run is appended to while the network trains, can be followed by a reader while it
is still being written, reads any recorded step in time independent of the run's
length, and survives ``kill -9`` of the writer at any moment: every completed record
stays readable and no half-written record is ever visible. Nothing in it is pickled:
arrays are zarr v3, everything else is plain JSON.

Format ``labkit-run/1``
=======================

::

    RUN/
      manifest.json    the run's description (JSON object, see below)
      records.jsonl    the commit log: one JSON line per completed record
      metrics.jsonl    scalar rows (one JSON object per line)
      data.zarr/       a zarr v3 group holding every array
      gradchecks/      gradient-check reports, one JSON file each
      .lock            held with flock(2) by the writer; holds its pid

All JSON is UTF-8 and strict: non-finite floats (NaN, +-inf) are written as ``null``.

``manifest.json`` is only ever replaced atomically (a temporary file in RUN is
written and fsynced, then renamed over it). Keys:

- ``"format"``: ``"labkit-run/1"``;
- ``"id"``: a random hex string, new for each run (an overwritten run gets a new one);
- ``"labkit_version"``: the writer's labkit version;
- ``"created"``: ISO 8601 local time with UTC offset;
- ``"status"``: ``"running"``, ``"completed"``, ``"interrupted"`` (Ctrl-C) or
  ``"failed"`` (an exception). A manifest saying ``"running"`` whose ``.lock`` is not
  held by any process belongs to a writer that died: readers report it as
  ``"crashed"`` (they never rewrite the manifest);
- ``"capacity"``: R, the number of records the arrays were preallocated for;
- ``"record_arrays"``: ``{name: {"shape": [per-record shape], "dtype": "float16"}}``;
- ``"static_arrays"``: ``{name: {"shape": [shape], "dtype": "uint8"}}``;
- on close, ``"records"`` (how many were committed), ``"ended"`` (ISO time) and
  ``"consolidated"``: ``{name: count}`` for the whole-run copies described below;
- any other keys the creator passed (configuration, architecture, layers, seed,
  data source, histogram edges, ...), stored verbatim.

``records.jsonl`` is the commit log. Line ``i`` (0-based) is
``{"record": i, "step": s, "epoch": e, "time": t}`` (``t`` in Unix seconds); steps
strictly increase. A line is appended (one ``write``), flushed and fsynced only after
every array row of record ``i`` is written. A reader trusts exactly the longest prefix
of complete lines (ending in ``\\n``) that parse as JSON objects with
``"record"`` equal to their line number and increasing integer steps; anything after
(a torn last line from a crash, a line still being written) is ignored. Rows of the
arrays beyond the committed records may hold data of an uncommitted record: they are
invisible.

``metrics.jsonl``: one JSON object per line, appended by the writer, e.g.
``{"step": 120, "epoch": 1, "loss": 0.31, "accuracy": 0.9, "lr": 0.001}`` or
``{"kind": "epoch", "epoch": 1, "step": 63, "test_accuracy": 0.95}``. Readers skip a
last line without a trailing newline and any line that is not a JSON object.

``data.zarr`` is a zarr v3 group on the local filesystem (nested groups for the
``/`` in array names). Every array uses the ``regular`` chunk grid, the ``default``
chunk key encoding with separator ``"."``, the codecs ``bytes`` (little endian) then
``zstd``, and fill value 0; a chunk holding only zeros may be absent (it reads as
zeros). Numeric and boolean dtypes only.

- A *record array* ``name`` of per-record shape S has shape ``(R, *S)`` and chunk
  shape ``(1, *S)``: record ``i`` is the single file
  ``data.zarr/<name>/c.<i>.0.0...`` (one ``.0`` per axis of S). Record arrays are
  created at full capacity and never resized (a resize rewrites metadata, which a
  crash could tear).
- A *static array* (written once at creation, e.g. ``probe/images``) has its own
  shape and one chunk.
- A *whole-run copy* ``consolidated/<name>``, made when the run closes for each
  record array of under 64 KB a record, holds its first ``count`` records (``count``
  from the manifest's ``"consolidated"``) in one chunk of shape ``(count, *S)``, so a
  viewer drawing every record reads one file. It is an optimisation: a reader that finds
  it missing or inconsistent reads the per-record chunks instead. ``consolidated`` is
  therefore not allowed as the first part of another array's name.

Array names are ``/``-separated parts, each matching ``[A-Za-z0-9_][A-Za-z0-9_.+-]*``
(a layer's part is :func:`labkit.network.layer_key`, e.g. ``features/03-Convolutional``); dtypes are
NumPy names (``float16``, ``float32``, ``int32``, ``uint8``, ``bool``, ...), the same as
zarr v3's. A reader refuses an array that is not zarr v3, disagrees with the manifest
in shape or dtype, or names a codec outside ``bytes``, ``transpose``, ``zstd``,
``gzip``, ``blosc``, ``crc32c``.

``gradchecks/gradcheck-YYYYmmdd-HHMMSS[-n].json``: one gradient-check report per file
(n = 2, 3, ... when several land in the same second), written to a hidden temporary
file and then linked into place, so a visible report is always complete. Oldest first
is the order of (timestamp, n).

``.lock``: the writer holds ``flock(LOCK_EX | LOCK_NB)`` on it for its lifetime (the
OS releases it when the process dies, even on ``kill -9``) and writes its pid into
it. A second writer on a locked run is refused.

Creating a run writes the manifest (status ``"running"``) before anything else, so a
writer that dies while creating leaves a crashed run, never an unrecognisable folder.
Overwriting a finished run (only on request) keeps the folder and ``.lock``, first
deletes ``records.jsonl`` (readers then see no records), writes the new manifest
(new ``"id"``: readers following the old run notice), then replaces everything else.

Guarantees hold against the death of the writer process; power loss can still lose
array data the OS had not flushed (chunk files are not fsynced, for speed).
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import json
import math
import operator
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numcodecs import Zstd
from zarr.storage import LocalStore

from labkit import __version__
from labkit.errors import LabkitError

FORMAT = "labkit-run/1"
STATUSES = ("running", "completed", "interrupted", "failed")
MANIFEST = "manifest.json"
RECORDS = "records.jsonl"
METRICS = "metrics.jsonl"
DATA = "data.zarr"
GRADCHECKS = "gradchecks"
LOCK = ".lock"
CONSOLIDATED = "consolidated"  # group of whole-run copies of small record arrays
CONSOLIDATE_BELOW = 64 * 1024  # bytes per record: what a viewer reads for every record
# Keys the store sets; FIXED_KEYS never change after creation.
FIXED_KEYS = frozenset(
    {"format", "id", "labkit_version", "created", "capacity", "record_arrays", "static_arrays"}
)
RESERVED_KEYS = FIXED_KEYS | {"status", "records", "ended", "consolidated"}
# Codecs a reader accepts: plain byte layout, compression and checksums, never a codec
# that could deserialize objects.
SAFE_CODECS = frozenset({"bytes", "transpose", "zstd", "gzip", "blosc", "crc32c"})
_NAME_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")
_GRADCHECK_NAME = re.compile(r"^gradcheck-(\d{8}-\d{6})(?:-(\d+))?\.json$")
_CHUNK_KEYS = {"name": "default", "separator": "."}

# zstd level 1: records are written while training, where speed counts for more than
# the last few percent of size.
_RECORD_ZSTD_LEVEL = 1


# --------------------------------------------------------------------------- helpers


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python values and non-finite floats as None."""
    if isinstance(value, dict):
        return {
            (key.item() if isinstance(key, np.generic) else key): _jsonable(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(_jsonable(value), allow_nan=False, ensure_ascii=False, **kwargs)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _lock_pid(run_path: Path) -> str:
    try:
        text = (run_path / LOCK).read_text().strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"


def writer_alive(run_path: str | os.PathLike) -> bool:
    """Whether a live process holds the run's writer lock (a quick, read-only probe)."""
    try:
        fd = os.open(Path(run_path) / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _acquire_lock(run_path: Path) -> int:
    """Take the writer lock, writing our pid into it; LabkitError if a live process has it."""
    lock_path = run_path / LOCK
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + 0.25  # a reader's probe holds it for microseconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            os.close(fd)
            raise LabkitError(
                f"{run_path} is being written by another process ({_lock_pid(run_path)})"
            ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _check_name(name: str, kind: str) -> None:
    parts = name.split("/") if isinstance(name, str) else [""]
    if not all(_NAME_PART.match(part) for part in parts):
        raise ValueError(
            f"bad {kind} array name {name!r}: use '/'-separated parts of letters, digits, "
            "'_', '-', '.', '+'"
        )
    if parts[0] == CONSOLIDATED:
        raise ValueError(f"bad {kind} array name {name!r}: '{CONSOLIDATED}/' is the store's own")


def _check_dtype(dtype: Any, name: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise ValueError(f"array {name!r}: dtype {dtype} is not a numeric or boolean dtype")
    return dtype


def _check_names(names: list[str]) -> None:
    """No name may be both an array and a group holding other arrays."""
    taken = set(names)
    for name in names:
        parts = name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in taken:
                raise ValueError(f"array {name!r} would sit inside array {'/'.join(parts[:i])!r}")


def _dir_size(path: Path) -> int:
    total = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def write_gradcheck(run_path: str | os.PathLike, report: dict) -> Path:
    """Store a gradient-check report in ``RUN/gradchecks/`` atomically; returns its path."""
    directory = Path(run_path) / GRADCHECKS
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = directory / f".gradcheck-{stamp}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, (_dumps(report, indent=2) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        n = 1
        while True:
            target = directory / (
                f"gradcheck-{stamp}.json" if n == 1 else f"gradcheck-{stamp}-{n}.json"
            )
            try:
                os.link(tmp, target)  # atomic, and never replaces a report
            except FileExistsError:
                n += 1
                continue
            break
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(directory)
    return target


# ---------------------------------------------------------------------------- writer


class RunWriter:
    """Appends records to a run; holds the run's lock until closed."""

    def __init__(
        self,
        path: Path,
        lock_fd: int,
        group: zarr.Group,
        record_arrays: dict[str, tuple[tuple[int, ...], np.dtype]],
        manifest: dict,
    ) -> None:
        self.path = path
        self.capacity = int(manifest["capacity"])
        self.records_written = 0
        self.closed = False
        self._lock_fd = lock_fd
        self._manifest = manifest
        self._specs = record_arrays
        self._group = group
        self._zstd = Zstd(level=_RECORD_ZSTD_LEVEL)  # what the arrays' ZstdCodec runs
        self._last_step: int | None = None
        self._records_fd = os.open(path / RECORDS, os.O_WRONLY | os.O_APPEND)
        self._metrics_fd = os.open(path / METRICS, os.O_WRONLY | os.O_APPEND)

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        capacity: int,
        record_arrays: dict[str, tuple[tuple[int, ...], str]],
        static_arrays: dict[str, np.ndarray] | None = None,
        manifest: dict | None = None,
        overwrite: bool = False,
    ) -> RunWriter:
        """Create a run at ``path`` (replacing a finished run only with ``overwrite``)."""
        path = Path(path)
        capacity = operator.index(capacity)
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        specs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for name, (shape, dtype) in record_arrays.items():
            _check_name(name, "record")
            specs[name] = (tuple(operator.index(d) for d in shape), _check_dtype(dtype, name))
        statics: dict[str, np.ndarray] = {}
        for name, value in (static_arrays or {}).items():
            _check_name(name, "static")
            value = np.asarray(value)
            _check_dtype(value.dtype, name)
            statics[name] = np.ascontiguousarray(value)
        both = sorted(set(specs) & set(statics))
        if both:
            raise ValueError(f"array {both[0]!r} is both a record and a static array")
        _check_names([*specs, *statics])
        extra = _jsonable(dict(manifest or {}))
        clash = sorted(RESERVED_KEYS & set(extra))
        if clash:
            raise ValueError(f"manifest key {clash[0]!r} is set by the run store itself")
        _dumps(extra)  # not JSON-able: fail now, before touching the disk

        if path.exists() and not path.is_dir():
            raise LabkitError(f"{path}: exists and is not a directory")
        cls._refuse(path, overwrite)  # before touching anything
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LabkitError(f"{path}: cannot create the run ({_one_line(exc)})") from None
        lock_fd = _acquire_lock(path)
        try:
            cls._refuse(path, overwrite, locked=True)  # again, now that nobody else can start
            document = {
                "format": FORMAT,
                "id": uuid.uuid4().hex,
                "labkit_version": __version__,
                "created": _now_iso(),
                "status": "running",
                "capacity": capacity,
                "record_arrays": {
                    name: {"shape": list(shape), "dtype": dtype.name}
                    for name, (shape, dtype) in specs.items()
                },
                "static_arrays": {
                    name: {"shape": list(value.shape), "dtype": value.dtype.name}
                    for name, value in statics.items()
                },
                **extra,
            }
            group = cls._build(path, capacity, specs, statics, document)
            return cls(path, lock_fd, group, specs, document)
        except BaseException as exc:
            os.close(lock_fd)
            if isinstance(exc, OSError):
                raise LabkitError(f"{path}: cannot create the run ({_one_line(exc)})") from None
            raise

    @staticmethod
    def _refuse(path: Path, overwrite: bool, locked: bool = False) -> None:
        if not path.is_dir():
            return
        if (path / MANIFEST).exists():
            if not locked and writer_alive(path):
                raise LabkitError(f"{path} is being written by another process ({_lock_pid(path)})")
            if not overwrite:
                raise LabkitError(f"{path}: a run already exists there (not overwriting it)")
        elif any(entry.name != LOCK for entry in os.scandir(path)):
            raise LabkitError(f"{path}: the folder is not empty and holds no labkit run")

    @staticmethod
    def _build(
        path: Path,
        capacity: int,
        specs: dict[str, tuple[tuple[int, ...], np.dtype]],
        statics: dict[str, np.ndarray],
        document: dict,
    ) -> zarr.Group:
        # Order matters for crash safety: readers must see zero records first, and the
        # folder must hold a manifest all along, so that a crash here leaves a run that
        # reads as crashed (and can be overwritten), never a mix of old and new.
        (path / RECORDS).unlink(missing_ok=True)
        _atomic_write(path / MANIFEST, _dumps(document, indent=2) + "\n")
        for entry in os.scandir(path):
            if entry.name in (MANIFEST, LOCK):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        (path / GRADCHECKS).mkdir()
        group = zarr.open_group(store=LocalStore(path / DATA), mode="w-", zarr_format=3)
        for name, (shape, dtype) in specs.items():
            group.create_array(
                name,
                shape=(capacity, *shape),
                chunks=(1, *(max(1, d) for d in shape)),
                dtype=dtype,
                chunk_key_encoding=_CHUNK_KEYS,
                compressors=zarr.codecs.ZstdCodec(level=_RECORD_ZSTD_LEVEL),
            )
        for name, value in statics.items():
            array = group.create_array(
                name,
                shape=value.shape,
                chunks=tuple(max(1, d) for d in value.shape),
                dtype=value.dtype,
                chunk_key_encoding=_CHUNK_KEYS,
            )
            array[...] = value
        for name in (METRICS, RECORDS):  # the commit log last: its existence means ready
            os.close(os.open(path / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        _fsync_dir(path)
        return group

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"{self.path}: the run writer is closed")

    def write_record(self, step: int, epoch: int, arrays: dict[str, np.ndarray]) -> int:
        """Write one record (every record array), then commit it; returns its index."""
        self._check_open()
        step, epoch = operator.index(step), operator.index(epoch)
        index = self.records_written
        if index >= self.capacity:
            raise LabkitError(f"{self.path}: the run is full ({self.capacity} records)")
        if self._last_step is not None and step <= self._last_step:
            raise ValueError(f"steps must increase: step {step} after step {self._last_step}")
        missing = sorted(set(self._specs) - set(arrays))
        unknown = sorted(set(arrays) - set(self._specs))
        if missing or unknown:
            raise ValueError(
                f"record arrays: missing {missing or 'none'}, unknown {unknown or 'none'}"
            )
        values = {}
        for name, (shape, dtype) in self._specs.items():
            value = np.asarray(arrays[name])
            if value.shape != shape:
                raise ValueError(f"array {name!r}: expected shape {shape}, got {value.shape}")
            if not np.can_cast(value.dtype, dtype, casting="same_kind"):
                raise ValueError(f"array {name!r}: cannot store {value.dtype} as {dtype}")
            values[name] = np.ascontiguousarray(value, dtype=np.dtype(dtype).newbyteorder("<"))
        line = _dumps(
            {"record": index, "step": step, "epoch": epoch, "time": round(time.time(), 3)},
            separators=(",", ":"),
        )
        try:
            self._write_rows(index, values)
            _write_all(self._records_fd, (line + "\n").encode())
            os.fsync(self._records_fd)
        except OSError as exc:
            raise LabkitError(
                f"{self.path}: cannot write record {index} ({_one_line(exc)})"
            ) from None
        self.records_written = index + 1
        self._last_step = step
        return index

    def _write_rows(self, index: int, values: dict[str, np.ndarray]) -> None:
        """Row ``index`` of each record array is one chunk: encode it as the array's codecs
        do (little-endian bytes, then zstd) and write the chunk file zarr would write.

        Through zarr's async codec pipeline a record costs ~18 ms of mostly Python, which
        the training threads then wait on the GIL for; this costs a few ms, in C.
        """
        for name, value in values.items():
            with open(self._chunk_path(name, index, value.ndim), "wb") as chunk:
                chunk.write(self._zstd.encode(value.tobytes()))

    def _chunk_path(self, name: str, index: int, ndim: int) -> Path:
        """The chunk file of record ``index`` of a record array with ``ndim`` axes per record."""
        return self.path / DATA / name / ".".join(["c", str(index)] + ["0"] * ndim)

    def _committed_rows(self, name: str, count: int) -> np.ndarray:
        """Records ``0..count-1`` of a record array, decoded from the chunk files written
        here (reading them back through zarr costs ~0.5 ms of Python a chunk)."""
        shape, dtype = self._specs[name]
        rows = np.empty((count, *shape), dtype=np.dtype(dtype).newbyteorder("<"))
        for index in range(count):
            data = self._zstd.decode(self._chunk_path(name, index, len(shape)).read_bytes())
            rows[index] = np.frombuffer(data, dtype=rows.dtype).reshape(shape)
        return rows

    def append_metrics(self, rows: list[dict]) -> None:
        """Append scalar rows (JSON objects) to ``metrics.jsonl``; visible to readers at once."""
        self._check_open()
        if not rows:
            return
        if not all(isinstance(row, dict) for row in rows):
            raise ValueError("metrics rows must be dicts")
        text = "".join(_dumps(row, separators=(",", ":")) + "\n" for row in rows)
        try:
            _write_all(self._metrics_fd, text.encode())
        except OSError as exc:
            raise LabkitError(f"{self.path}: cannot write metrics ({_one_line(exc)})") from None

    def add_gradcheck(self, report: dict) -> Path:
        """Store a gradient-check report in the run; returns its path."""
        self._check_open()
        return write_gradcheck(self.path, report)

    def update_manifest(self, **fields: Any) -> None:
        """Set manifest fields (e.g. ``status``) and rewrite the manifest atomically."""
        self._check_open()
        self._update_manifest(fields)

    def _update_manifest(self, fields: dict) -> None:
        fixed = sorted(FIXED_KEYS & set(fields))
        if fixed:
            raise ValueError(f"manifest key {fixed[0]!r} cannot change")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {fields['status']!r}")
        document = {**self._manifest, **_jsonable(fields)}
        text = _dumps(document, indent=2) + "\n"
        try:
            _atomic_write(self.path / MANIFEST, text)
        except OSError as exc:
            message = f"{self.path}: cannot write the manifest ({_one_line(exc)})"
            raise LabkitError(message) from None
        self._manifest = document

    def close(self, status: str = "completed") -> None:
        """Record the final status, close the files and release the lock (idempotent)."""
        if self.closed:
            return
        if status not in STATUSES or status == "running":
            raise ValueError(f"final status must be completed/interrupted/failed, not {status!r}")
        try:
            try:
                consolidated = self._consolidate()
            except (OSError, ValueError):  # only a speed-up: the final status matters more
                consolidated = {}
            self._update_manifest(
                {
                    "status": status,
                    "records": self.records_written,
                    "ended": _now_iso(),
                    "consolidated": consolidated,
                }
            )
        finally:
            self.closed = True
            for fd in (self._records_fd, self._metrics_fd, self._lock_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _consolidate(self) -> dict[str, int]:
        """Copy each small record array's committed rows into one chunk, for whole-run reads.

        A viewer reads every record of the per-layer statistics to draw them over time;
        from one file per record that costs ~0.4 ms a record, from one chunk almost
        nothing. The manifest lists a copy only once it is complete, so a crash here just
        leaves the per-record chunks to be read instead.
        """
        count = self.records_written
        done: dict[str, int] = {}
        if count == 0:
            return done
        for name, (shape, dtype) in self._specs.items():
            if np.dtype(dtype).itemsize * math.prod(shape) >= CONSOLIDATE_BELOW:
                continue
            rows = self._committed_rows(name, count)
            copy = self._group.create_array(
                f"{CONSOLIDATED}/{name}",
                shape=rows.shape,
                chunks=tuple(max(1, d) for d in rows.shape),
                dtype=rows.dtype,
                chunk_key_encoding=_CHUNK_KEYS,
                compressors=zarr.codecs.ZstdCodec(level=_RECORD_ZSTD_LEVEL),
                overwrite=True,
            )
            copy[...] = rows
            done[name] = count
        return done

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            status = "completed"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "interrupted"
        else:
            status = "failed"
        self.close(status)

    def __repr__(self) -> str:
        return f"RunWriter({str(self.path)!r}, records={self.records_written}/{self.capacity})"


# ---------------------------------------------------------------------------- reader


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
        raise LabkitError(f"{manifest_path}: cannot read the manifest ({_one_line(exc)})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabkitError(f"{manifest_path}: not valid JSON ({_one_line(exc)})") from None
    if not isinstance(document, dict) or "format" not in document:
        raise LabkitError(f"{manifest_path}: not a labkit run manifest (no 'format')")
    if document["format"] != FORMAT:
        raise LabkitError(
            f"{manifest_path}: unknown run format {document['format']!r} "
            f"(this labkit reads {FORMAT})"
        )
    problem = _manifest_problem(document)
    if problem:
        raise LabkitError(f"{manifest_path}: {problem}")
    return document


def _manifest_problem(document: dict) -> str | None:
    capacity = document.get("capacity")
    if type(capacity) is not int or capacity < 0:
        return f"bad capacity {capacity!r}"
    if document.get("status") not in STATUSES:
        return f"bad status {document.get('status')!r}"
    for key in ("record_arrays", "static_arrays"):
        table = document.get(key)
        if not isinstance(table, dict):
            return f"'{key}' is missing or not an object"
        for name, spec in table.items():
            try:
                _check_name(name, key)
                shape = spec["shape"]
                if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
                    raise ValueError
                _check_dtype(spec["dtype"], name)
            except (ValueError, TypeError, KeyError):
                return f"bad entry {name!r} in '{key}'"
    consolidated = document.get("consolidated", {})
    if not isinstance(consolidated, dict) or not all(
        type(count) is int and name in document["record_arrays"]
        for name, count in consolidated.items()
    ):
        return "bad 'consolidated' entry"
    return None


def _complete_lines(path: Path, offset: int) -> list[bytes]:
    """The newline-terminated lines of ``path`` from byte ``offset``, without the newlines."""
    try:
        with open(path, "rb") as file:
            file.seek(offset)
            data = file.read()
    except FileNotFoundError:
        return []
    end = data.rfind(b"\n")
    return data[:end].split(b"\n") if end >= 0 else []


@dataclass(frozen=True)
class RunSummary:
    """One run in a runs folder, as ``labkit runs list`` shows it."""

    path: Path
    status: str
    steps: int  # committed records
    last_step: int | None
    best_test_accuracy: float | None
    size_bytes: int
    error: str | None = None


class Run:
    """A run opened for reading; ``refresh()`` picks up what a live writer added since."""

    def __init__(self, path: Path, manifest: dict) -> None:
        self.path = path
        self.manifest = manifest
        self._group: zarr.Group | None = None
        self._arrays: dict[str, zarr.Array] = {}
        self._records: list[dict] = []
        self._steps: list[int] = []
        self._records_offset = 0
        self._records_stuck = False
        self._metrics: list[dict] = []
        self._metrics_offset = 0
        self._open_group()

    # -- state

    @property
    def capacity(self) -> int:
        return int(self.manifest["capacity"])

    @property
    def status(self) -> str:
        """The manifest's status, or ``"crashed"`` for a "running" run no writer holds."""
        status = self.manifest["status"]
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
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(row, dict):
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
            raise LabkitError(f"{data}: corrupt or missing zarr group ({_one_line(exc)})") from None

    def _array(self, name: str, table: str) -> zarr.Array:
        if name in self._arrays:
            return self._arrays[name]
        spec = self.manifest[table].get(name)
        if spec is None:
            kind = "record" if table == "record_arrays" else "static"
            raise LabkitError(f"{self.path}: no {kind} array {name!r}")
        where = self.path / DATA / name
        try:
            array = self._group[name]
        except Exception as exc:
            raise LabkitError(f"{where}: missing or corrupt array ({_one_line(exc)})") from None
        expected = tuple(spec["shape"])
        if table == "record_arrays":
            expected = (self.capacity, *expected)
        problem = None
        if not isinstance(array, zarr.Array) or array.metadata.zarr_format != 3:
            problem = "not a zarr v3 array"
        elif array.shape != expected or np.dtype(array.dtype) != np.dtype(spec["dtype"]):
            problem = f"{array.dtype}{list(array.shape)} does not match the manifest"
        elif table == "record_arrays" and array.chunks[0] != 1:
            problem = "not chunked one record per chunk"
        else:
            codecs = [codec.get("name") for codec in array.metadata.to_dict().get("codecs", [])]
            unsafe = [codec for codec in codecs if codec not in SAFE_CODECS]
            if unsafe:
                problem = f"codec {unsafe[0]!r} is not allowed"
        if problem:
            raise LabkitError(f"{where}: {problem}")
        self._arrays[name] = array
        return array

    def _read(self, array: zarr.Array, selection: Any, name: str) -> np.ndarray:
        try:
            return np.asarray(array[selection])
        except Exception as exc:
            raise LabkitError(
                f"{self.path / DATA / name}: cannot read ({_one_line(exc)})"
            ) from None

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
            if rows.step > 0:
                return self._read(array, slice(rows.start, rows.stop, rows.step), name)
            low, high = rows[-1], rows[0] + 1
            block = self._read(array, slice(low, high), name)
            return block[np.asarray(rows) - low]
        index = operator.index(record)
        if not -n <= index < n:
            raise LabkitError(f"{self.path}: no record {index} ({n} records committed)")
        return self._read(array, index % n, name)

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
            or np.dtype(array.dtype) != np.dtype(spec["dtype"])
        ):
            return None
        return self._read(array, slice(None), name)

    def arrays(self, prefix: str = "") -> list[str]:
        """Names of the record arrays starting with ``prefix`` (e.g. ``"features/"``), sorted."""
        return sorted(name for name in self.manifest["record_arrays"] if name.startswith(prefix))

    def static(self, name: str) -> np.ndarray:
        """A static array (written once at creation, e.g. ``probe/images``)."""
        return self._read(self._array(name, "static_arrays"), ..., name)

    # -- the rest

    def metrics(self) -> list[dict]:
        """Every complete metrics row, in the order written."""
        return list(self._metrics)

    @property
    def gradchecks(self) -> list[dict]:
        """The gradient-check reports, oldest first (unreadable files are skipped)."""
        directory = self.path / GRADCHECKS
        try:
            names = [entry.name for entry in os.scandir(directory)]
        except OSError:
            return []
        keyed = []
        for name in names:
            match = _GRADCHECK_NAME.match(name)
            if match:
                keyed.append(((match.group(1), int(match.group(2) or 1)), name))
        reports = []
        for _, name in sorted(keyed):
            try:
                report = json.loads((directory / name).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(report, dict):
                reports.append(report)
        return reports

    def size_bytes(self) -> int:
        """Total size of the run's files."""
        return _dir_size(self.path)

    def summary(self) -> RunSummary:
        """The run as one row of ``list_runs``."""
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
            size_bytes=self.size_bytes(),
        )

    # -- what labkit.recorder writes, by meaning rather than by array name ----------------

    @property
    def layers(self) -> list[dict]:
        """The recorded layers: ``key``, ``name``, ``class``, ``output_shape``, ``params``."""
        return list(self.manifest.get("layers", []))

    def _layer_index(self, layer: int | str) -> int:
        for index, entry in enumerate(self.layers):
            if layer in (index, entry.get("key"), entry.get("name")):
                return index
        names = ", ".join(entry.get("key", "?") for entry in self.layers) or "none"
        raise LabkitError(f"{self.path}: no recorded layer {layer!r} (layers: {names})")

    def layer_stats(self, layer: int | str) -> dict:
        """Every record's statistics for one layer (by index, key or name).

        ``{"steps", "activation": {field: (R,)}, "gradient": {field: (R,)},
        "hist_activation": (R, bins), "hist_gradient": (R, bins), "edges": (bins + 1,)}``
        """
        index = self._layer_index(layer)
        stats = self.array("stats")[:, index]
        hist = self.array("hist")[:, index]
        fields = self.manifest["stats_fields"]
        return {
            "steps": self.steps,
            "activation": {f: stats[:, 0, i] for i, f in enumerate(fields)},
            "gradient": {f: stats[:, 1, i] for i, f in enumerate(fields)},
            "hist_activation": hist[:, 0],
            "hist_gradient": hist[:, 1],
            "edges": np.asarray(self.manifest["hist_edges"]),
        }

    def weights(self, step: int) -> dict[str, dict[str, np.ndarray]]:
        """Every parameter at the record taken at ``step``: ``{layer key: {name: array}}``."""
        record = self.record_at(step)
        return {
            entry["key"]: {
                name: self.array(f"params/{entry['key']}/{name}", record)
                for name in entry.get("params", {})
            }
            for entry in self.layers
        }

    def feature_maps(self, step: int) -> dict[str, np.ndarray]:
        """Every layer's output for the probe digits at ``step``: ``{layer key: (16, ...)}``."""
        record = self.record_at(step)
        return {e["key"]: self.array(f"features/{e['key']}", record) for e in self.layers}

    def probabilities(self, step: int) -> np.ndarray:
        """The network's class probabilities for the probe digits at ``step``."""
        return self.array("probs", self.record_at(step))

    def update_ratios(self) -> tuple[list[str], np.ndarray]:
        """Parameter names and their update-to-weight ratios, one row per record."""
        return list(self.manifest["update_ratio_names"]), self.array("update_ratio")

    @property
    def probe_images(self) -> np.ndarray:
        return self.static("probe/images")

    @property
    def probe_labels(self) -> np.ndarray:
        return self.static("probe/labels")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status!r}, records={len(self)})"


def open_run(path: str | os.PathLike) -> Run:
    """Open a run for reading; LabkitError (one line naming the path) if it is not a good run."""
    path = Path(path)
    run = Run(path, _read_manifest(path))
    run.refresh()
    return run


def iter_run_dirs(directory: Path) -> Iterator[Path]:
    """The folders in ``directory`` that hold a run manifest, by name."""
    for entry in sorted(os.scandir(directory), key=lambda entry: entry.name):
        if entry.is_dir() and os.path.exists(os.path.join(entry.path, MANIFEST)):
            yield Path(entry.path)


def list_runs(directory: str | os.PathLike) -> list[RunSummary]:
    """One summary per run in ``directory``; a corrupt run is listed with its error."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "no such folder" if not directory.exists() else "not a folder"
        raise LabkitError(f"{directory}: {what}")
    summaries = []
    for path in iter_run_dirs(directory):
        try:
            summaries.append(open_run(path).summary())
        except LabkitError as exc:
            summaries.append(
                RunSummary(path, "corrupt", 0, None, None, _dir_size(path), error=str(exc))
            )
    return summaries
