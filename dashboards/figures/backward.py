"""Figures of the backward view: one part of a layer's backward pass for one probe (a
heatmap mosaic, a matrix or bars), the mark on a clicked element, and the saliency strip.

A part of any shape is drawn in one of four layouts, and :func:`element_at` maps a click
back to the part's element the same way (so the page sends only the click's x and y):

- ``(n,)``: bars, one per element;
- ``(m, n)``: a matrix, one cell per element (a dense layer's W and dW);
- ``(C, H, W)``: C maps in a near-square mosaic, as the feature maps (:mod:`labkit.mosaic`);
- ``(D, C, k, k)``: kernels, a row per output channel (or wrapped, for one input
  channel), as the kernel panel lays them out.

A signed part (a gradient, a weight, an output) is drawn on a diverging scale centred at
0 and symmetric (white is 0 however the values lean: :data:`ZERO_WHITE_SCALE`); a 0/1
mask black for 1, light grey for 0 (:data:`MASK_SCALE`); bars always show their 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from dashboards.figures.images import kernel_axes, tile_heads
from dashboards.figures.style import (
    BAR_COLOR,
    MARKER_COLOR,
    SEQUENTIAL_SCALE,
    empty_figure,
    figure,
    image_axes,
)
from labkit.mosaic import kernel_columns, kernel_labels, mosaic, square_columns

# ColorBrewer's RdBu (plotly.colors.diverging.RdBu_r): white at 0, so a sparse gradient
# reads as a few marks on paper (the named "RdBu_r" of the other panels is grey at 0)
ZERO_WHITE_SCALE = [
    [i / 10, colour]
    for i, colour in enumerate(
        (
            "rgb(5,48,97)",
            "rgb(33,102,172)",
            "rgb(67,147,195)",
            "rgb(146,197,222)",
            "rgb(209,229,240)",
            "rgb(247,247,247)",
            "rgb(253,219,199)",
            "rgb(244,165,130)",
            "rgb(214,96,77)",
            "rgb(178,24,43)",
            "rgb(103,0,31)",
        )
    )
]
MASK_SCALE = [[0.0, "#e8ecf2"], [1.0, "black"]]  # 1 black, 0 light grey: the gaps, white,
# still part the tiles
MARK_COLOR = "#00b050"  # the clicked element's frame: green reads on red, blue and white
VALUE_KEYS = (
    "z",
    "zmin",
    "zmax",
    "zmid",
    "colorscale",
    "colorbar",
    "y",
)  # the first trace's keys that
# hold a part's values (:func:`part_values`): all a step move changes
MAX_EXACT_CELLS = 2**16  # a larger matrix (the tutorial's 100 x 3380 W) is sent as 255
# levels (uint8: a quarter of the bytes, 0.5 MB, not 1.8 MB, each move); lenet's 128 x 512 W
# is exact. A click still gives the element's exact value (the chain-rule panel)
LEVELS = 127  # a coarse matrix's levels either side of 0
COLORBAR = {"thickness": 8, "exponentformat": "e", "xpad": 2}
MAX_TICKED_BARS = 32  # bars up to this many get a tick each (the loss's 10 classes)


@dataclass(frozen=True)
class Tiling:
    """How a part of ``shape`` is laid out: ``tiles`` tiles of ``height x width`` in
    ``columns`` columns, one gap pixel between them (none for bars and matrices)."""

    shape: tuple[int, ...]
    tiles: int
    height: int
    width: int
    columns: int

    @property
    def tiled(self) -> bool:
        return len(self.shape) >= 3


def tiling(shape: tuple[int, ...]) -> Tiling:
    """The layout of a part of ``shape`` (see the module docstring)."""
    shape = tuple(int(n) for n in shape)
    if len(shape) == 1:
        return Tiling(shape, 1, 1, shape[0], 1)
    if len(shape) == 2:
        return Tiling(shape, 1, shape[0], shape[1], 1)
    if len(shape) == 3:
        return Tiling(shape, shape[0], shape[1], shape[2], square_columns(shape[0]))
    if len(shape) == 4:
        depth, channels, height, width = shape
        return Tiling(shape, depth * channels, height, width, kernel_columns(depth, channels))
    raise ValueError(f"a part must have 1 to 4 axes, got shape {shape}")


def element_at(shape: tuple[int, ...], x: float, y: float) -> tuple[int, ...] | None:
    """The element of a part of ``shape`` drawn at ``(x, y)`` (a bar's x, a pixel's
    column and row), or None for a gap between tiles or a point outside."""
    lay = tiling(shape)
    column, row = int(round(float(x))), int(round(float(y)))
    if len(shape) == 1:
        return (column,) if 0 <= column < shape[0] else None
    if not lay.tiled:
        return (row, column) if 0 <= row < shape[0] and 0 <= column < shape[1] else None
    tile_row, i = divmod(row, lay.height + 1)
    tile_column, j = divmod(column, lay.width + 1)
    tile = tile_row * lay.columns + tile_column
    if row < 0 or column < 0 or i == lay.height or j == lay.width:
        return None
    if tile_column >= lay.columns or tile >= lay.tiles:
        return None
    if len(shape) == 3:
        return (tile, i, j)
    return (*divmod(tile, shape[1]), i, j)


def pixel_of(shape: tuple[int, ...], index: tuple[int, ...]) -> tuple[int, int]:
    """Where element ``index`` of a part of ``shape`` is drawn: ``(x, y)``; y is 0 for bars."""
    lay = tiling(shape)
    if len(shape) == 1:
        return int(index[0]), 0
    if not lay.tiled:
        return int(index[1]), int(index[0])
    tile = index[0] if len(shape) == 3 else index[0] * shape[1] + index[1]
    i, j = index[-2:]
    tile_row, tile_column = divmod(int(tile), lay.columns)
    return tile_column * (lay.width + 1) + int(j), tile_row * (lay.height + 1) + int(i)


def drawn_rows(shape: tuple[int, ...]) -> int:
    """How many pixel rows a tiled part's mosaic has (0 for bars and matrices, which fit
    any height): a tall mosaic needs a taller figure to show its tiles."""
    lay = tiling(shape)
    if not lay.tiled:
        return 0
    return -(-lay.tiles // lay.columns) * (lay.height + 1) - 1


def element_grid(shape: tuple[int, ...]) -> np.ndarray:
    """``(rows, columns, axes)``: every drawn pixel's element index (-1 in the gaps), for
    the hover text; int8 when the indices fit (it is sent with the figure)."""
    lay = tiling(shape)
    flat = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    if lay.tiled:
        flat, _ = mosaic(flat.reshape(lay.tiles, lay.height, lay.width), lay.columns)
    gaps = ~np.isfinite(flat)
    indices = np.stack(np.unravel_index(np.where(gaps, 0, flat).astype(np.int64), shape), -1)
    indices[gaps] = -1
    kind = np.int8 if max(shape) <= 127 else np.int16
    return indices.astype(kind)


def drawn(values: np.ndarray) -> np.ndarray:
    """A part's values as the heatmap draws them (tiled; NaN in the gaps), float32."""
    values = np.asarray(values, dtype=np.float32)
    lay = tiling(values.shape)
    if not lay.tiled:
        return values
    z, _ = mosaic(values.reshape(lay.tiles, lay.height, lay.width), lay.columns)
    return z


def colours(values: np.ndarray, signed: bool) -> dict:
    """The colour scale: signed, diverging and symmetric around 0; a 0/1 mask, 1 black
    and 0 light grey; anything else unsigned, sequential from 0."""
    finite = np.abs(values[np.isfinite(values)])
    largest = float(finite.max()) if finite.size else 0.0
    largest = largest if largest > 0 else 1.0
    if signed:
        return {"colorscale": ZERO_WHITE_SCALE, "zmin": -largest, "zmax": largest, "zmid": 0}
    if np.all(np.isin(values[np.isfinite(values)], (0.0, 1.0))):
        return {"colorscale": MASK_SCALE, "zmin": 0, "zmax": 1, "zmid": None}
    return {"colorscale": SEQUENTIAL_SCALE, "zmin": 0, "zmax": largest, "zmid": None}


def part_values(values: np.ndarray, signed: bool = True) -> dict:
    """The keys of a part's first trace that hold its values: bars' ``y``, or a heatmap's
    ``z`` and its colour scale (the rest of its figure is the same at every step)."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 1:
        return {"y": values}
    if coarse(values.shape):
        return coarse_values(values, signed)
    return {"z": drawn(values), **colours(values, signed), "colorbar": COLORBAR}


def coarse(shape: tuple[int, ...]) -> bool:
    """Whether a part is drawn in :data:`LEVELS` steps (a matrix of over
    :data:`MAX_EXACT_CELLS`), not exactly."""
    return len(shape) == 2 and int(np.prod(shape)) > MAX_EXACT_CELLS


def coarse_values(values: np.ndarray, signed: bool) -> dict:
    """A large matrix as uint8 levels on its colour scale (128 is 0 when signed), the
    colour bar ticked with the values the levels stand for."""
    scale = colours(values, signed)
    low, high = float(scale["zmin"]), float(scale["zmax"])
    codes = np.round((np.nan_to_num(values) - low) / (high - low) * 2 * LEVELS)
    ticks = np.linspace(0, 2 * LEVELS, 5)
    labels = [f"{low + (high - low) * t / (2 * LEVELS):.2g}" for t in ticks]
    colorbar = {**COLORBAR, "tickmode": "array", "tickvals": ticks.tolist(), "ticktext": labels}
    return {
        "z": np.clip(codes, 0, 2 * LEVELS).astype(np.uint8),
        "colorscale": scale["colorscale"],
        "zmin": 0,
        "zmax": 2 * LEVELS,
        "zmid": LEVELS if signed else None,
        "colorbar": colorbar,
    }


def mark(shape: tuple[int, ...], index: tuple[int, ...] | None) -> list[dict]:
    """The clicked element's frame as layout shapes (none without an element): a bar's
    column, or a square round its cell (a pixel wider on a large tile, so it shows), and
    a thin frame round the tile it is in."""
    if index is None:
        return []
    x, y = pixel_of(shape, index)
    frame = {"type": "rect", "line": {"color": MARK_COLOR, "width": 2.5}, "layer": "above"}
    if len(shape) == 1:
        return [{**frame, "xref": "x", "yref": "paper", "x0": x - 0.5, "x1": x + 0.5, "y0": 0}]
    lay = tiling(shape)
    margin = 1.0 if max(lay.height, lay.width) > 8 else 0.5
    box = {"xref": "x", "yref": "y"}
    frames = [
        {**frame, **box, "x0": x - margin, "x1": x + margin, "y0": y - margin, "y1": y + margin}
    ]
    if (
        lay.tiled and lay.tiles > 1
    ):  # and, thinly, its tile: a small kernel's element is a pixel or two wide
        left, top = x - int(index[-1]), y - int(index[-2])
        tile = {"x0": left - 0.5, "x1": left + lay.width - 0.5, "y0": top - 0.5}
        tile["y1"] = top + lay.height - 0.5
        frames.append({**frame, **box, **tile, "line": {"color": MARK_COLOR, "width": 1}})
    return frames


def _index_text(axes: int) -> str:
    return ",".join(f"%{{customdata[{axis}]}}" for axis in range(axes))


def part_figure(
    values: np.ndarray,
    title: str,
    formula: str = "",
    *,
    symbol: str = "",
    signed: bool = True,
    marked: tuple[int, ...] | None = None,
) -> go.Figure:
    """One part of a layer's backward pass: titled with ``title`` and, under it, its
    ``formula``; each element's hover names it as ``symbol[index]``; ``marked`` is framed.
    The first trace is the part's values (a click on it is a click on an element)."""
    values = np.asarray(values, dtype=np.float32)
    shape = values.shape
    if formula and formula not in title:
        head = f"{title}<br><span style='font-size:11px'>{formula}</span>"
    else:
        head, formula = title, ""
    layout: dict = {"margin": {"t": 48 if formula else 32, "l": 36, "r": 8, "b": 28}}
    if len(shape) == 1:
        bar = dict(
            type="bar",
            x=np.arange(len(values)),
            **part_values(values, signed),
            marker={"color": BAR_COLOR, "line_width": 0},
            hovertemplate=f"{symbol}[%{{x}}] = %{{y:.4g}}<extra></extra>",
        )
        xaxis: dict = {"range": [-0.5, len(values) - 0.5]}
        if len(values) <= MAX_TICKED_BARS:
            xaxis.update(tickmode="linear", dtick=1 if len(values) <= 16 else 4, tick0=0)
        return figure(
            [bar],
            head,
            bargap=0.1,
            hovermode="x",  # anywhere in a bar's column: a bar near 0 is clicked too
            xaxis=xaxis,
            yaxis={"zeroline": True, "exponentformat": "e"},  # bars start at 0: it is in view
            shapes=mark(shape, marked),
            **layout,
        )
    shown = part_values(values, signed)
    value = "%{z:.4g}"
    if len(shape) == 2:  # a matrix's x and y are its indices
        customdata, where = None, "%{y},%{x}"
        if coarse(shape):
            value = "(drawn in 255 levels: click for its value)"
    else:  # a gap's 0 is never shown (no hover on gaps), and -1 would be "////" in base64,
        customdata = np.maximum(element_grid(shape), 0)  # which JSON sends as \u002f (6 bytes each)
        where = _index_text(len(shape))
    heatmap = dict(
        type="heatmap",
        **shown,
        customdata=customdata,
        hoverongaps=False,
        hovertemplate=f"{symbol}[{where}] = {value}<extra></extra>",
    )
    traces: list = [heatmap]
    if len(shape) == 2:
        axes = {
            "xaxis": {"showgrid": False, "zeroline": False, "title_text": "input (column j)"},
            "yaxis": {"showgrid": False, "autorange": "reversed", "title_text": "output (row i)"},
        }
    elif len(shape) == 4:
        labels = kernel_labels(*shape)
        axes = kernel_axes(shown["z"].shape, labels)
        traces += tile_heads(labels)
    else:
        axes = image_axes(*shown["z"].shape)
    return figure(traces, head, shapes=mark(shape, marked), **axes, **layout)


def saliency_figure(steps: np.ndarray, maps: np.ndarray, step: int, title: str) -> go.Figure:
    """The probe's input gradient at the records ``steps``, one tile each (oldest
    first), each scaled to its own largest |value| (the hover gives the value itself):
    the record at ``step`` framed and its step in bold."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 4:  # (records, channels, H, W): the first channel
        maps = maps[:, 0]
    if maps.ndim != 3 or not len(maps):
        return empty_figure("no saliency recorded")
    count, height, width = maps.shape
    largest = np.max(np.abs(maps.reshape(count, -1)), axis=1)
    scaled = maps / np.where(largest > 0, largest, 1.0)[:, None, None]
    z, _ = mosaic(scaled, count)
    values, _ = mosaic(maps, count)
    centres = [k * (width + 1) + (width - 1) / 2 for k in range(count)]
    current = [int(s) == int(step) for s in steps]
    text = [
        f"<b>step {int(s):,}</b>" if now else f"step {int(s):,}"
        for s, now in zip(steps, current, strict=True)
    ]
    heatmap = dict(
        type="heatmap",
        z=z,
        customdata=values,
        colorscale=ZERO_WHITE_SCALE,
        zmin=-1,
        zmax=1,
        zmid=0,
        hoverongaps=False,
        hovertemplate="%{customdata:.3g}<br>(%{z:.2f} of this record's largest)<extra></extra>",
        colorbar={"thickness": 8, "title_text": "÷ largest", "title_side": "right"},
    )
    heads = dict(
        type="scatter",
        mode="text",
        x=centres,
        y=[height + 0.5] * count,
        text=text,
        textposition="bottom center",
        textfont={"size": 10, "color": MARKER_COLOR},
        hoverinfo="skip",
        showlegend=False,
    )
    frames = [
        {
            "type": "rect",
            "xref": "x",
            "yref": "y",
            "x0": k * (width + 1) - 1,
            "x1": k * (width + 1) + width,
            "y0": -1,
            "y1": height,
            "line": {"color": MARK_COLOR, "width": 3},
        }
        for k, now in enumerate(current)
        if now
    ]
    axes = image_axes(height + 4, z.shape[1])
    axes["xaxis"]["range"] = [-1.5, z.shape[1] + 0.5]  # room for the frame round a tile
    axes["yaxis"]["range"] = [height + 3.5, -1.5]
    return figure([heatmap, heads], title, shapes=frames, **axes, margin={"t": 36, "b": 4})
