"""A run's files read and written without zarr: a record's chunk, encoded and decoded
as zarr would (the bytes of the row, little-endian, under zstd:
:data:`labkit.runs.format.WRITTEN_CODECS`), the shard files that hold a record array's
chunks (:class:`ShardAppender`, :func:`read_slot`), and the gradient-check reports.

Through zarr's async codec pipeline writing a record costs ~18 ms of mostly Python (which
training threads then wait on the GIL for) and reading one ~2 ms; this is a few ms and
~0.3 ms, in C. The writer creates every record array with exactly these codecs, and a
reader decodes this way only arrays whose metadata says so.
"""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import google_crc32c
import numpy as np
from numcodecs import Zstd

from labkit.runs.files import fsync_dir, write_all
from labkit.runs.format import (
    GRADCHECK_NAME,
    GRADCHECKS,
    RECORD_ZSTD_LEVEL,
    WRITTEN_CODECS,
    WRITTEN_INDEX_CODECS,
    chunk_path,
    dumps,
)

_ZSTD = Zstd(level=RECORD_ZSTD_LEVEL)  # what the arrays' ZstdCodec runs


def encode_row(value: np.ndarray) -> bytes:
    """One record of a record array as the bytes of its chunk file."""
    little = value.astype(value.dtype.newbyteorder("<"), copy=False)
    return _ZSTD.encode(np.ascontiguousarray(little))  # its buffer: no copy to bytes


def decode_row(data: bytes, shape: tuple[int, ...], dtype) -> np.ndarray:
    """The record a chunk file's bytes hold (ValueError and the like if they are garbled)."""
    row = np.frombuffer(_ZSTD.decode(data), dtype=np.dtype(dtype).newbyteorder("<"))
    return row.reshape(shape).astype(dtype, copy=False)


def _named(codecs: list[dict]) -> list[tuple]:
    return [(c.get("name"), c.get("configuration", {})) for c in codecs]


def as_written(codecs: list[dict]) -> bool:
    """Whether an array's codecs (its zarr metadata's ``"codecs"``) are the writer's for
    one chunk a file (``labkit-run/1``'s record arrays, whole-run copies)."""
    return _named(codecs) == WRITTEN_CODECS


def sharded_as_written(codecs: list[dict], row_shape: tuple[int, ...]) -> bool:
    """Whether an array's codecs are the writer's shards of one-record chunks of
    ``row_shape`` (``labkit-run/2``'s record arrays, see :mod:`labkit.runs.format`)."""
    if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
        return False
    config = codecs[0].get("configuration", {})
    return (
        list(config.get("chunk_shape", [])) == [1, *(max(1, d) for d in row_shape)]
        and _named(config.get("codecs", [])) == WRITTEN_CODECS
        and _named(config.get("index_codecs", [])) == WRITTEN_INDEX_CODECS
        and config.get("index_location") == "start"
    )


EMPTY_SLOT = 2**64 - 1  # an index entry's offset and length where a shard holds no chunk


def _index_bytes(entries: np.ndarray) -> bytes:
    """A shard's index as stored: the little-endian (offset, length) pairs, then CRC-32C."""
    data = entries.astype("<u8").tobytes()
    return data + google_crc32c.value(data).to_bytes(4, "little")


class ShardAppender:
    """An open shard file of one record array, for the writer: :meth:`append` writes a
    record's chunk at the end, then the index that points at it (an entry never points
    at bytes not yet written). A shard found with chunks in it is continued."""

    def __init__(self, path: str, records: int) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self.end = os.fstat(self.fd).st_size
            size = 16 * records + 4
            if self.end >= size:
                raw = os.pread(self.fd, 16 * records, 0)
                self.entries = np.frombuffer(raw, dtype="<u8").reshape(records, 2).copy()
            else:
                self.entries = np.full((records, 2), EMPTY_SLOT, dtype="<u8")
                os.pwrite(self.fd, _index_bytes(self.entries), 0)
                self.end = size
        except BaseException:
            os.close(self.fd)
            raise

    def append(self, slot: int, chunk: bytes) -> None:
        written = os.pwrite(self.fd, chunk, self.end)
        if written != len(chunk):
            raise OSError(f"short write ({written} of {len(chunk)} bytes)")
        self.entries[slot] = (self.end, len(chunk))
        self.end += len(chunk)
        os.pwrite(self.fd, _index_bytes(self.entries), 0)

    def close(self) -> None:
        os.close(self.fd)


def slot_entry(fd: int, slot: int) -> tuple[int, int] | None:
    """Where the chunk of record ``slot`` lies in an open shard file: (offset, length);
    None if the shard holds none. ValueError if the index is cut short."""
    raw = os.pread(fd, 16, 16 * slot)
    if len(raw) < 16:
        raise ValueError("the shard's index is truncated")
    offset, length = struct.unpack("<QQ", raw)
    return None if offset == EMPTY_SLOT and length == EMPTY_SLOT else (offset, length)


def read_slot(fd: int, slot: int) -> bytes | None:
    """The chunk of record ``slot`` in an open shard file; None if the shard holds none.
    ValueError if the index points past the end of the file (a truncated shard)."""
    entry = slot_entry(fd, slot)
    if entry is None:
        return None
    offset, length = entry
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise ValueError(f"the chunk of slot {slot} is truncated")
    return data


def row_chunk_path(
    run_path: Path, name: str, index: int, ndim: int, shard_records: int | None
) -> Path:
    """The file that holds row ``index``'s chunk of array ``name``: its own
    (``shard_records`` None) or its shard's (``ndim`` axes a row)."""
    number = index if shard_records is None else index // shard_records
    return chunk_path(run_path, name, number, ndim)


def read_row_chunk(
    run_path: Path, name: str, index: int, ndim: int, shard_records: int | None
) -> bytes | None:
    """The bytes of row ``index``'s chunk (see :func:`row_chunk_path`); None if its
    shard holds none. FileNotFoundError if its file is missing; OSError and ValueError
    if it cannot be read."""
    path = row_chunk_path(run_path, name, index, ndim, shard_records)
    if shard_records is None:
        return path.read_bytes()
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_slot(fd, index % shard_records)
    finally:
        os.close(fd)


def has_row_chunk(
    run_path: Path, name: str, index: int, ndim: int, shard_records: int | None
) -> bool:
    """Whether row ``index``'s chunk is there: its file, or its entry in its shard."""
    path = row_chunk_path(run_path, name, index, ndim, shard_records)
    if shard_records is None:
        return os.path.exists(path)  # a dangling link would read as zeros
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return slot_entry(fd, index % shard_records) is not None
    except (OSError, ValueError):
        return False
    finally:
        os.close(fd)


def codec_names(codecs: list[dict]) -> list:
    """The names of ``codecs`` and of every codec nested in a sharding codec's
    configuration (a shard's inner and index codecs are decoded too)."""
    names = []
    for codec in codecs:
        names.append(codec.get("name") if isinstance(codec, dict) else codec)
        config = codec.get("configuration", {}) if isinstance(codec, dict) else {}
        for nested in ("codecs", "index_codecs"):
            if isinstance(config, dict) and isinstance(config.get(nested), list | tuple):
                names += codec_names(config[nested])
    return names


def read_gradchecks(run_path: Path) -> list[dict]:
    """The run's gradient-check reports, oldest first (unreadable files are skipped)."""
    directory = run_path / GRADCHECKS
    try:
        names = [entry.name for entry in os.scandir(directory)]
    except OSError:
        return []
    keyed = []
    for name in names:
        match = GRADCHECK_NAME.match(name)
        if match:
            keyed.append(((match.group(1), int(match.group(2) or 1)), name))
    reports = []
    for _, name in sorted(keyed):
        try:
            report = json.loads((directory / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            continue
        if isinstance(report, dict):
            reports.append(report)
    return reports


def write_gradcheck(run_path: str | os.PathLike, report: dict) -> Path:
    """Store a gradient-check report in ``RUN/gradchecks/`` atomically; returns its path."""
    directory = Path(run_path) / GRADCHECKS
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tmp = directory / f".gradcheck-{stamp}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, (dumps(report, indent=2) + "\n").encode())
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
    fsync_dir(directory)
    return target
