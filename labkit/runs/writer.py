"""The run store's writer: creates a run, appends records and metrics, closes it.

One writer per run, held by a lock (see :mod:`labkit.runs.format` for the files and the
order of writes that keeps a run readable whenever the writer dies).
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from labkit import __version__
from labkit.errors import LabkitError, one_line
from labkit.runs.chunks import (
    ShardAppender,
    decode_row,
    encode_row,
    read_slot,
    write_gradcheck,
)
from labkit.runs.files import (
    acquire_lock,
    atomic_write,
    fsync_dir,
    lock_pid,
    now_iso,
    release_lock,
    write_all,
    writer_alive,
)
from labkit.runs.format import (
    CHUNK_KEYS,
    CONSOLIDATE_BELOW,
    CONSOLIDATED,
    DATA,
    FIXED_KEYS,
    FORMAT,
    GRADCHECKS,
    LOCK,
    MANIFEST,
    MAX_CAPACITY,
    METRICS,
    RECORD_ZSTD_LEVEL,
    RECORDS,
    RESERVED_KEYS,
    STATUSES,
    check_dtype,
    check_name,
    check_names,
    chunk_path,
    dumps,
    jsonable,
    records_per_shard,
)


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
        self._last_step: int | None = None
        self._shard_records = records_per_shard(self.capacity)
        self._shards: dict[str, tuple[int, ShardAppender]] = {}  # name: (shard, its file)
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
        if capacity > MAX_CAPACITY:  # a reader would refuse the run: say so before training
            raise LabkitError(
                f"{path}: {capacity:,} records are more than a run holds ({MAX_CAPACITY:,}); "
                "record less often (--record-every)"
            )
        specs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for name, (shape, dtype) in record_arrays.items():
            check_name(name, "record")
            specs[name] = (tuple(operator.index(d) for d in shape), check_dtype(dtype, name))
        statics: dict[str, np.ndarray] = {}
        for name, value in (static_arrays or {}).items():
            check_name(name, "static")
            value = np.asarray(value)
            check_dtype(value.dtype, name)
            statics[name] = np.ascontiguousarray(value)
        both = sorted(set(specs) & set(statics))
        if both:
            raise ValueError(f"array {both[0]!r} is both a record and a static array")
        check_names([*specs, *statics])
        extra = jsonable(dict(manifest or {}))
        clash = sorted(RESERVED_KEYS & set(extra))
        if clash:
            raise ValueError(f"manifest key {clash[0]!r} is set by the run store itself")
        dumps(extra)  # not JSON-able: fail now, before touching the disk

        if path.exists() and not path.is_dir():
            raise LabkitError(f"{path}: exists and is not a directory")
        cls._refuse(path, overwrite)  # before touching anything
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LabkitError(f"{path}: cannot create the run ({one_line(exc)})") from None
        lock_fd = acquire_lock(path)
        try:
            cls._refuse(path, overwrite, locked=True)  # again, now that nobody else can start
            document = {
                "format": FORMAT,
                "id": uuid.uuid4().hex,
                "labkit_version": __version__,
                "created": now_iso(),
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
            release_lock(lock_fd)
            if isinstance(exc, OSError):
                raise LabkitError(f"{path}: cannot create the run ({one_line(exc)})") from None
            raise

    @staticmethod
    def _refuse(path: Path, overwrite: bool, locked: bool = False) -> None:
        if not path.is_dir():
            return
        if (path / MANIFEST).exists():
            if not locked and writer_alive(path):
                raise LabkitError(f"{path} is being written by another process ({lock_pid(path)})")
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
        atomic_write(path / MANIFEST, dumps(document, indent=2) + "\n")
        for entry in os.scandir(path):
            if entry.name in (MANIFEST, LOCK):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        (path / GRADCHECKS).mkdir()
        group = zarr.open_group(store=LocalStore(path / DATA), mode="w-", zarr_format=3)
        shard = records_per_shard(capacity)
        for name, (shape, dtype) in specs.items():
            row = tuple(max(1, d) for d in shape)
            group.create_array(
                name,
                shape=(capacity, *shape),
                chunks=(1, *row),
                shards={"shape": (shard, *row), "index_location": "start"},
                dtype=dtype,
                chunk_key_encoding=CHUNK_KEYS,
                compressors=zarr.codecs.ZstdCodec(level=RECORD_ZSTD_LEVEL),
            )
        for name, value in statics.items():
            array = group.create_array(
                name,
                shape=value.shape,
                chunks=tuple(max(1, d) for d in value.shape),
                dtype=value.dtype,
                chunk_key_encoding=CHUNK_KEYS,
                config={"write_empty_chunks": True},  # a reader can tell "gone" from zeros
            )
            array[...] = value
        for name in (METRICS, RECORDS):  # the commit log last: its existence means ready
            os.close(os.open(path / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        fsync_dir(path)
        return group

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"{self.path}: the run writer is closed")

    def write_record(self, step: int, epoch: int, arrays: dict[str, np.ndarray]) -> int:
        """Write one record (every record array), then commit it; returns its index."""
        index = self.next_record(step)
        self.write_rows(index, arrays)
        return self.commit_record(index, step, epoch)

    def next_record(self, step: int) -> int:
        """The index the record of ``step`` will have (the run open, not full, and the
        steps increasing): :meth:`write_rows` then :meth:`commit_record` it."""
        self._check_open()
        step = operator.index(step)
        index = self.records_written
        if index >= self.capacity:
            raise LabkitError(f"{self.path}: the run is full ({self.capacity} records)")
        if self._last_step is not None and step <= self._last_step:
            raise ValueError(f"steps must increase: step {step} after step {self._last_step}")
        return index

    def write_rows(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        """Write row ``index`` of every record array, not yet committed (readers see it
        only once :meth:`commit_record` has run). Uses the run's path, the arrays' specs
        and shard files it opens itself, so a forked copy of the writer may call it
        (:mod:`labkit.record_process`); one process writes a run's rows.

        Row ``index`` of each record array is one chunk, appended to its shard file as
        zarr would read it (:func:`labkit.runs.chunks.encode_row`, without zarr's slow
        pipeline, which rewrites a whole shard to add a chunk)."""
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
        shard, slot = divmod(index, self._shard_records)
        try:
            for name, value in values.items():
                number, appender = self._shards.pop(name, (None, None))
                if number != shard:
                    if appender is not None:
                        appender.close()
                    path = chunk_path(self.path, name, shard, value.ndim)
                    appender = ShardAppender(str(path), self._shard_records)
                self._shards[name] = (shard, appender)
                appender.append(slot, encode_row(value))
        except OSError as exc:
            raise LabkitError(
                f"{self.path}: cannot write record {index} ({one_line(exc)})"
            ) from None

    def commit_record(self, index: int, step: int, epoch: int) -> int:
        """Commit record ``index`` (its rows written): one line in the commit log, synced;
        returns ``index``."""
        if index != self.next_record(step):
            raise ValueError(f"record {index} is not the next one ({self.records_written})")
        step, epoch = operator.index(step), operator.index(epoch)
        line = dumps(
            {"record": index, "step": step, "epoch": epoch, "time": round(time.time(), 3)},
            separators=(",", ":"),
        )
        try:
            write_all(self._records_fd, (line + "\n").encode())
            os.fsync(self._records_fd)
        except OSError as exc:
            raise LabkitError(
                f"{self.path}: cannot write record {index} ({one_line(exc)})"
            ) from None
        self.records_written = index + 1
        self._last_step = step
        return index

    def _committed_rows(self, name: str, count: int) -> np.ndarray:
        """Records ``0..count-1`` of a record array, decoded from the shard files written
        here (reading them back through zarr costs ~0.5 ms of Python a chunk)."""
        shape, dtype = self._specs[name]
        rows = np.empty((count, *shape), dtype=np.dtype(dtype).newbyteorder("<"))
        for shard in range(-(-count // self._shard_records)):
            fd = os.open(chunk_path(self.path, name, shard, len(shape)), os.O_RDONLY)
            try:
                first = shard * self._shard_records
                for index in range(first, min(count, first + self._shard_records)):
                    chunk = read_slot(fd, index - first)
                    if chunk is None:
                        raise ValueError(f"array {name!r}: record {index} was not written")
                    rows[index] = decode_row(chunk, tuple(shape), dtype)
            finally:
                os.close(fd)
        return rows

    def append_metrics(self, rows: list[dict]) -> None:
        """Append scalar rows (JSON objects) to ``metrics.jsonl``; visible to readers at once."""
        self._check_open()
        if not rows:
            return
        if not all(isinstance(row, dict) for row in rows):
            raise ValueError("metrics rows must be dicts")
        text = "".join(dumps(row, separators=(",", ":")) + "\n" for row in rows)
        try:
            write_all(self._metrics_fd, text.encode())
        except OSError as exc:
            raise LabkitError(f"{self.path}: cannot write metrics ({one_line(exc)})") from None

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
        document = {**self._manifest, **jsonable(fields)}
        text = dumps(document, indent=2) + "\n"
        try:
            atomic_write(self.path / MANIFEST, text)
        except OSError as exc:
            message = f"{self.path}: cannot write the manifest ({one_line(exc)})"
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
                    "ended": now_iso(),
                    "consolidated": consolidated,
                }
            )
        finally:
            self.closed = True
            for _, appender in self._shards.values():
                with contextlib.suppress(OSError):
                    appender.close()
            self._shards.clear()
            for fd in (self._records_fd, self._metrics_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):
                release_lock(self._lock_fd)

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
            self._group.create_array(
                f"{CONSOLIDATED}/{name}",
                shape=rows.shape,
                chunks=tuple(max(1, d) for d in rows.shape),
                dtype=rows.dtype,
                chunk_key_encoding=CHUNK_KEYS,
                compressors=zarr.codecs.ZstdCodec(level=RECORD_ZSTD_LEVEL),
                overwrite=True,
            )
            # its one chunk, encoded as a record's (the same codecs), not through zarr's
            # pipeline: ~6 ms an array
            copy_path = chunk_path(self.path, f"{CONSOLIDATED}/{name}", 0, len(shape))
            with open(copy_path, "wb") as chunk:
                chunk.write(encode_row(rows))
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
