"""Tiles (kernels, feature maps) laid out in one image: the layout both the matplotlib
figures (:mod:`labkit.inspect`) and the dashboard use, so they show the same grid."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def square_columns(count: int) -> int:
    """Columns of a near-square grid of ``count`` tiles."""
    return max(1, math.ceil(math.sqrt(count)))


def kernel_columns(depth: int, channels: int) -> int:
    """Columns for a convolution's ``depth x channels`` kernels: one per input channel
    (a row per kernel), or a near-square grid when there is a single input channel."""
    return channels if channels > 1 else square_columns(depth)


def mosaic(tiles: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Tiles ``(n, h, w)`` laid row-major into ``columns``, one NaN pixel between them.

    Returns the mosaic ``(rows*(h+1)-1, columns*(w+1)-1)`` (float32, NaN in the gaps) and,
    of the same shape, the index of the tile each pixel belongs to (-1 in the gaps; int16
    when it fits, to keep a dashboard's hover data small on the wire).
    """
    tiles = np.asarray(tiles)
    n, h, w = tiles.shape
    rows = -(-n // columns)
    padded = np.full((rows * columns, h + 1, w + 1), np.nan, dtype=np.float32)
    padded[:n, :h, :w] = tiles
    index_type = np.int16 if n < 2**15 else np.int32
    owner = np.full((rows * columns, h + 1, w + 1), -1, dtype=index_type)
    owner[:n, :h, :w] = np.arange(n, dtype=index_type)[:, None, None]

    def lay(blocks: np.ndarray) -> np.ndarray:
        blocks = blocks.reshape(rows, columns, h + 1, w + 1).transpose(0, 2, 1, 3)
        return blocks.reshape(rows * (h + 1), columns * (w + 1))[:-1, :-1]

    return lay(padded), lay(owner)


@dataclass(frozen=True)
class KernelLabels:
    """Where a kernel mosaic's indices go, in mosaic pixel coordinates (x right, y down)."""

    rows: list[tuple[float, str]]  # (y of a row's centre, its output channel k)
    columns: list[tuple[float, str]]  # (x of a column's centre, its input channel c)
    tiles: list[tuple[float, float, str]]  # (x of a tile's centre, y of its top edge, k)
    x_title: str
    y_title: str


def kernel_labels(depth: int, channels: int, height: int, width: int) -> KernelLabels:
    """The labels of :func:`kernel_columns`' layout: with several input channels, a tick
    on every row (output channel k) and column (input channel c); with one, each tile
    headed by its k, in reading order (a wrapped grid has no row or column meaning)."""
    if channels > 1:
        return KernelLabels(
            rows=[(k * (height + 1) + (height - 1) / 2, str(k)) for k in range(depth)],
            columns=[(c * (width + 1) + (width - 1) / 2, str(c)) for c in range(channels)],
            tiles=[],
            x_title="input channel c",
            y_title="output channel k",
        )
    columns = kernel_columns(depth, channels)
    tiles = []
    for k in range(depth):
        row, column = divmod(k, columns)
        tiles.append((column * (width + 1) + (width - 1) / 2, row * (height + 1) - 0.5, str(k)))
    return KernelLabels(
        rows=[],
        columns=[],
        tiles=tiles,
        x_title=f"output channel k (one input channel), {columns} per row",
        y_title="",
    )
