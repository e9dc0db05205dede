"""Where the benchmarks read MNIST from: one rule for every script beside this one."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist.npz"
DATA_HELP = f"MNIST .npz (default: $LABKIT_DATA, {DEFAULT_DATA}, else the bundled sample)"


def data_source(explicit: str | None) -> str:
    """``--data``, else ``$LABKIT_DATA``, else the shared MNIST file, else the bundled sample."""
    if explicit:
        return explicit
    if os.environ.get("LABKIT_DATA"):
        return os.environ["LABKIT_DATA"]
    return str(DEFAULT_DATA) if DEFAULT_DATA.is_file() else "sample"
