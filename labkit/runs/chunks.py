"""A run's files read and written without zarr: a record's chunk file, encoded and
decoded as zarr would (the bytes of the row, little-endian, under zstd:
:data:`labkit.runs.format.WRITTEN_CODECS`), and the stored gradient-check reports.

Through zarr's async codec pipeline writing a record costs ~18 ms of mostly Python (which
training threads then wait on the GIL for) and reading one ~2 ms; this is a few ms and
~0.3 ms, in C. The writer creates every record array with exactly these codecs, and a
reader decodes this way only arrays whose metadata says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from numcodecs import Zstd

from labkit.runs.format import GRADCHECK_NAME, GRADCHECKS, RECORD_ZSTD_LEVEL, WRITTEN_CODECS

_ZSTD = Zstd(level=RECORD_ZSTD_LEVEL)  # what the arrays' ZstdCodec runs


def encode_row(value: np.ndarray) -> bytes:
    """One record of a record array as the bytes of its chunk file."""
    little = value.astype(value.dtype.newbyteorder("<"), copy=False)
    return _ZSTD.encode(np.ascontiguousarray(little))  # its buffer: no copy to bytes


def decode_row(data: bytes, shape: tuple[int, ...], dtype) -> np.ndarray:
    """The record a chunk file's bytes hold (ValueError and the like if they are garbled)."""
    row = np.frombuffer(_ZSTD.decode(data), dtype=np.dtype(dtype).newbyteorder("<"))
    return row.reshape(shape).astype(dtype, copy=False)


def as_written(codecs: list[dict]) -> bool:
    """Whether an array's codecs (its zarr metadata's ``"codecs"``) are the writer's."""
    return [(c.get("name"), c.get("configuration", {})) for c in codecs] == WRITTEN_CODECS


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
