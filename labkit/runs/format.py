"""The run store's format: a run folder's files, their names and what a reader checks.

A run is appended to while the network trains, can be followed by a reader while it
is still being written, reads any recorded step in time independent of the run's
length, and survives ``kill -9`` of the writer at any moment: every completed record
stays readable and no half-written record is ever visible. Nothing in it is pickled:
arrays are zarr v3, everything else is plain JSON.

Format ``labkit-run/2``
=======================

(``labkit-run/1`` differs only in its record arrays: one chunk file a record, see
below; readers read both.)

::

    RUN/
      manifest.json    the run's description (JSON object, see below)
      records.jsonl    the commit log: one JSON line per completed record
      metrics.jsonl    scalar rows (one JSON object per line)
      data.zarr/       a zarr v3 group holding every array
      gradchecks/      gradient-check reports, one JSON file each (and .check.lock,
                       held with flock(2) while the dashboard checks the run)
      .lock            held with flock(2) by the writer; holds its pid

All JSON is UTF-8 and strict: non-finite floats (NaN, +-inf) are written as ``null``.

``manifest.json`` is only ever replaced atomically (a temporary file in RUN is
written and fsynced, then renamed over it). Keys:

- ``"format"``: ``"labkit-run/2"``;
- ``"id"``: a random hex string, new for each run (an overwritten run gets a new one);
- ``"labkit_version"``: the writer's labkit version;
- ``"created"``: ISO 8601 local time with UTC offset;
- ``"status"``: ``"running"``, ``"completed"``, ``"interrupted"`` (Ctrl-C) or
  ``"failed"`` (an exception). A manifest saying ``"running"`` whose ``.lock`` is not
  held by any process belongs to a writer that died: readers report it as
  ``"crashed"`` (they never rewrite the manifest);
- ``"capacity"``: R, the number of records the arrays were preallocated for, at most
  ``MAX_CAPACITY``;
- ``"record_arrays"``: ``{name: {"shape": [per-record shape], "dtype": "float16"}}``;
- ``"static_arrays"``: ``{name: {"shape": [shape], "dtype": "uint8"}}``; a shape has at
  most ``MAX_NDIM`` axes, and one record of a record array (or a static array) holds at
  most ``MAX_ARRAY_BYTES`` (see *Limits*);
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
``{"kind": "epoch", "epoch": 1, "step": 63, "test_accuracy": 0.95}``: ``"step"`` and
``"epoch"`` are integers, ``"kind"`` a string, every other value a number or ``null``.
Readers skip a last line without a trailing newline and any row that breaks these rules
(not a JSON object, a value of the wrong type: :func:`metrics_row_problem`), so one bad
row never hides the others, nor shows as a number.

``data.zarr`` is a zarr v3 group on the local filesystem (nested groups for the
``/`` in array names). Every array uses the ``regular`` chunk grid, the ``default``
chunk key encoding with separator ``"."``, the codecs ``bytes`` (little endian) then
``zstd``, and fill value 0. Numeric and boolean dtypes only.

- A *record array* ``name`` of per-record shape S has shape ``(R, *S)`` and chunk
  shape ``(1, *S)`` (an axis of length 0 is chunked by 1), its chunks grouped in
  shards of ``K = min(RECORDS_PER_SHARD, R)`` records (zarr's ``sharding_indexed``
  codec, index at the start, inner codecs as above, index codecs ``bytes`` and
  ``crc32c``): records ``sK .. sK+K-1`` are the file ``data.zarr/<name>/c.<s>.0.0...``
  (one ``.0`` per axis of S). The shard starts with its index (K pairs of little-endian
  uint64: the offset and length of each record's chunk in the file, both ``2**64-1``
  for none; then the index's CRC-32C); the writer appends a record's chunk to its shard
  and then rewrites the index, so an index entry never points at bytes not yet
  written. Why shards: creating a file cost 0.07-0.85 ms here, 34 a lenet record, the
  largest part of writing one. Record arrays are created at full capacity and never
  resized (a resize rewrites metadata, which a crash could tear). The writer writes
  every committed record's chunk, zeros too, before its commit line: a committed record
  whose chunk is missing is corruption (zarr would read it as zeros, the fill value),
  and a reader refuses to read it. In ``labkit-run/1`` a record array has no shards:
  record ``i`` is the single file ``data.zarr/<name>/c.<i>.0.0...``.
- A *static array* (written once at creation) has its own shape and one chunk, which
  zarr leaves out when it holds only zeros (it reads as zeros).
- A *whole-run copy* ``consolidated/<name>``, made when the run closes for each
  record array of under 64 KB a record, holds its first ``count`` records (``count``
  from the manifest's ``"consolidated"``) in one chunk of shape ``(count, *S)``, so a
  viewer drawing every record reads one file. It is an optimisation: a reader that finds
  it missing or inconsistent reads the per-record chunks instead (a copy of only zeros
  has no chunk file either, so a missing one is read from the records, never as
  zeros). ``consolidated`` is therefore not allowed as the first part of another
  array's name.

Array names are ``/``-separated parts, each matching ``[A-Za-z0-9_][A-Za-z0-9_.+-]*``
(which arrays a recorded run holds is :mod:`labkit.recording`'s business); dtypes are
NumPy names (``float16``, ``float32``, ``int32``, ``uint8``, ``bool``, ...), the same as
zarr v3's. A reader refuses an array that is not zarr v3, disagrees with the manifest
in shape or dtype, or names a codec outside ``bytes``, ``transpose``, ``zstd``,
``gzip``, ``blosc``, ``crc32c``, ``sharding_indexed``.

``gradchecks/gradcheck-YYYYmmdd-HHMMSS[-n].json``: one gradient-check report per file
(n = 2, 3, ... when several land in the same second), written to a hidden temporary
file and then linked into place, so a visible report is always complete. Oldest first
is the order of (timestamp, n). A reader skips a report it cannot read or that is not a
JSON object; what a report holds is :mod:`labkit.reports`' business (readers by meaning
skip one of the wrong structure, :func:`labkit.reports.report_problem`).

``.lock``: the writer holds ``flock(LOCK_EX | LOCK_NB)`` on it for its lifetime (the
OS releases it when the process dies, even on ``kill -9``) and writes its pid into
it. A second writer on a locked run is refused.

Creating a run takes the lock, then writes the manifest (status ``"running"``) before
anything else and ``records.jsonl`` last, so a run without ``records.jsonl`` is still
being created: readers report it as ``"starting"`` (no records, whatever else is there
yet) while its writer holds the lock, and as ``"crashed"`` once no process holds it (a
writer that dies while creating leaves a crashed run, never an unrecognisable folder).
A folder without a manifest is no run, even while a process holds its lock. Overwriting
a finished run (only on request) keeps the folder and ``.lock``, first deletes
``records.jsonl`` (readers then see no records: the run is starting), writes the new
manifest (new ``"id"``: readers following the old run notice), then replaces
everything else.

Limits
------

A reader refuses a manifest over these (one line naming it), so a corrupt or hostile
number can't make it allocate terabytes or loop for ever:

- ``MAX_CAPACITY`` records: each record is a line of the commit log and a chunk per
  record array, so a billion is far beyond any run (a record at every step of a
  million steps is a thousandth of it); with ``MAX_ARRAY_BYTES`` it also keeps every
  array's element count under 2**63, which zarr's and NumPy's index arithmetic needs.
- ``MAX_ARRAY_BYTES`` a record of an array (and a static array): a record is one chunk,
  read and decoded whole into memory. lenet's largest is 295 KB (its first feature maps
  of the 16 probes), the tutorial's Dense(3380, 100) weights 1.4 MB; 1 GiB is far above
  what a NumPy lab trains, and far below what breaks a machine.
- ``MAX_NDIM`` axes: NumPy 1's limit (NumPy 2 allows 64); a layer's tensor has 4.

Guarantees hold against the death of the writer process; power loss can still lose
array data the OS had not flushed (chunk files are not fsynced, for speed).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "labkit-run/2"  # what the writer writes
READ_FORMATS = ("labkit-run/1", FORMAT)  # what a reader reads
RECORDS_PER_SHARD = 64  # records a shard file of a record array holds (see above)
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
SAFE_CODECS = frozenset(
    {"bytes", "transpose", "zstd", "gzip", "blosc", "crc32c", "sharding_indexed"}
)
GRADCHECK_NAME = re.compile(r"^gradcheck-(\d{8}-\d{6})(?:-(\d+))?\.json$")
CHUNK_KEYS = {"name": "default", "separator": "."}
# zstd level 1: records are written while training, where speed counts for more than
# the last few percent of size.
RECORD_ZSTD_LEVEL = 1
# Limits a reader holds a manifest to (why: "Limits" above).
MAX_CAPACITY = 10**9
MAX_ARRAY_BYTES = 2**30
MAX_NDIM = 32
_NAME_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


# The codecs of every record array as the writer creates it (zarr's metadata): a reader
# decodes a chunk of exactly these without zarr (RunWriter._write_rows encodes them so).
WRITTEN_CODECS = [
    ("bytes", {"endian": "little"}),
    ("zstd", {"level": RECORD_ZSTD_LEVEL, "checksum": False}),
]
WRITTEN_INDEX_CODECS = [("bytes", {"endian": "little"}), ("crc32c", {})]  # a shard's index


def records_per_shard(capacity: int) -> int:
    """K, the records a shard of a record array holds, for a run of ``capacity``."""
    return max(1, min(RECORDS_PER_SHARD, capacity))


def chunk_path(run_path: Path, name: str, index: int, ndim: int) -> Path:
    """The chunk file of record ``index`` of record array ``name`` (``ndim`` axes a record)."""
    return run_path / DATA / name / ".".join(["c", str(index)] + ["0"] * ndim)


# -- JSON: strict, with non-finite floats as null ------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python values and non-finite floats as None."""
    if isinstance(value, dict):
        return {
            (key.item() if isinstance(key, np.generic) else key): jsonable(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``value`` (see :func:`jsonable`)."""
    return json.dumps(jsonable(value), allow_nan=False, ensure_ascii=False, **kwargs)


# -- validation ------------------------------------------------------------------------


def check_name(name: str, kind: str) -> None:
    """ValueError unless ``name`` is ``/``-separated safe parts and not the store's own."""
    parts = name.split("/") if isinstance(name, str) else [""]
    if not all(_NAME_PART.match(part) for part in parts):
        raise ValueError(
            f"bad {kind} array name {name!r}: use '/'-separated parts of letters, digits, "
            "'_', '-', '.', '+'"
        )
    if parts[0] == CONSOLIDATED:
        raise ValueError(f"bad {kind} array name {name!r}: '{CONSOLIDATED}/' is the store's own")


def check_dtype(dtype: Any, name: str) -> np.dtype:
    """The dtype, if numeric or boolean (nothing that could hold objects); else ValueError."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise ValueError(f"array {name!r}: dtype {dtype} is not a numeric or boolean dtype")
    return dtype


def check_names(names: list[str]) -> None:
    """No name may be both an array and a group holding other arrays."""
    taken = set(names)
    for name in names:
        parts = name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in taken:
                raise ValueError(f"array {name!r} would sit inside array {'/'.join(parts[:i])!r}")


def _spec_problem(spec: Any, name: str, records: bool) -> str | None:
    """What is wrong with one array's ``{"shape", "dtype"}`` entry, or None."""
    shape = spec.get("shape") if isinstance(spec, dict) else None
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        return "its shape is not a list of sizes"
    if len(shape) > MAX_NDIM:
        return f"{len(shape)} axes (at most {MAX_NDIM})"
    try:
        dtype = check_dtype(spec.get("dtype"), name)
    except (ValueError, TypeError):
        return "no numeric or boolean dtype"
    size = math.prod(shape) * dtype.itemsize
    if size > MAX_ARRAY_BYTES:
        what = "a record" if records else "the array"
        return f"{size:,} bytes {what} is over the limit of {MAX_ARRAY_BYTES:,}"
    return None


def manifest_problem(document: dict) -> str | None:
    """What is wrong with a manifest's store-owned keys (types, then *Limits*), or None."""
    capacity = document.get("capacity")
    if type(capacity) is not int or capacity < 0:
        return f"bad capacity {capacity!r}"
    if capacity > MAX_CAPACITY:
        return f"capacity {capacity} is over the limit of {MAX_CAPACITY:,} records"
    if document.get("status") not in STATUSES:
        return f"bad status {document.get('status')!r}"
    if not isinstance(document.get("id"), str):
        return f"bad id {document.get('id')!r}"
    records = document.get("records", 0)
    if type(records) is not int or not 0 <= records <= capacity:
        return f"bad records {records!r}"
    for key in ("record_arrays", "static_arrays"):
        table = document.get(key)
        if not isinstance(table, dict):
            return f"'{key}' is missing or not an object"
        for name, spec in table.items():
            try:
                check_name(name, key)
            except ValueError:
                return f"bad entry {name!r} in '{key}'"
            problem = _spec_problem(spec, name, key == "record_arrays")
            if problem:
                return f"bad entry {name!r} in '{key}': {problem}"
    consolidated = document.get("consolidated", {})
    if not isinstance(consolidated, dict) or not all(
        type(count) is int and 0 <= count <= capacity and name in document["record_arrays"]
        for name, count in consolidated.items()
    ):
        return "bad 'consolidated' entry"
    return None


def metrics_row_problem(row: Any) -> str | None:
    """What makes a ``metrics.jsonl`` row unusable (see the format above), or None."""
    if not isinstance(row, dict):
        return "not a JSON object"
    for key, value in row.items():
        if key in ("step", "epoch"):
            fits = type(value) is int
        elif key == "kind":
            fits = isinstance(value, str)
        else:
            fits = value is None or type(value) in (int, float)
        if not fits:
            return f"{key!r} is {type(value).__name__} {value!r:.40}"
    return None
