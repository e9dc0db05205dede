"""Matplotlib figures as pure functions (data in, Figure out); saving is the caller's job."""

from __future__ import annotations

import numpy as np
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.colors import LinearSegmentedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from labkit.mosaic import kernel_columns, kernel_labels, mosaic, square_columns

# Light ends cut off: the palest error and the weakest diagonal still read against white.
WRONG_MAP = LinearSegmentedColormap.from_list("wrong", ["#fcc5a9", "#ef553b", "#67000d"])
RIGHT_MAP = LinearSegmentedColormap.from_list("right", ["#c7e9c0", "#2ca02c", "#00441b"])


def figure_formats() -> list[str]:
    """The file extensions matplotlib can save a figure as (eps, pdf, png, svg, ...)."""
    return sorted(FigureCanvasBase.get_supported_filetypes())


def confusion_figure(matrix: np.ndarray, title: str = "Confusion matrix") -> Figure:
    """A confusion matrix a student can read: the diagonal (right) in green, the errors in
    red on a log scale of the true class's share, so that 1 error in 1,000 still shows
    beside a diagonal of 1,000; the count in every non-zero cell, zeros left blank."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    diagonal = np.eye(*matrix.shape, dtype=bool)
    floor = 1 / max(int(rows.max()), 1)  # one digit of the largest class: the palest red
    figure = Figure(figsize=(6.4, 5.4), layout="constrained")
    axes = figure.subplots()
    right = np.ma.masked_where(~diagonal, share)
    wrong = np.ma.masked_where(diagonal | (matrix == 0), share)
    axes.imshow(right, cmap=RIGHT_MAP, vmin=0, vmax=1)
    image = axes.imshow(wrong, cmap=WRONG_MAP, norm=LogNorm(vmin=floor, vmax=1))
    for (t, p), count in np.ndenumerate(matrix):
        if count:
            dark = share[t, p] > 0.5 if t == p else share[t, p] > floor ** (1 / 3)
            colour = "white" if dark else "black"
            axes.text(p, t, str(count), ha="center", va="center", fontsize=7, color=colour)
    classes = range(matrix.shape[0])
    axes.set_xticks(classes)
    axes.set_yticks(classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    axes.set_title(f"{title} — accuracy {accuracy:.2%}", fontsize=10)
    ticks = [t for t in np.outer(10.0 ** np.arange(-6, 1), (1, 2, 5)).ravel() if floor <= t <= 1]
    bar = figure.colorbar(image, ax=axes, ticks=ticks, format=FuncFormatter(_percent))
    bar.minorticks_off()
    bar.ax.tick_params(labelsize=7)
    bar.set_label("errors: % of the true class (log scale)", fontsize=8)
    return figure


def _percent(share: float, _position=None) -> str:
    """A share as a colour-bar label: 0.001 -> 0.1%, 0.5 -> 50%."""
    return f"{100 * share:.3g}%"


def kernel_grid_figure(kernels: np.ndarray, title: str) -> Figure:
    """Every kernel of a convolution on one symmetric colour scale around 0, laid out and
    labelled as in the dashboard (:func:`labkit.mosaic.kernel_labels`): one row per output
    channel k and one column per input channel c, or, for one input channel, a near-square
    grid in reading order with each kernel headed by its k."""
    depth, channels, kh, kw = kernels.shape
    tiles = kernels.reshape(depth * channels, kh, kw)
    canvas, _ = mosaic(tiles, kernel_columns(depth, channels))
    labels = kernel_labels(depth, channels, kh, kw)
    limit = float(np.nanmax(np.abs(canvas))) or 1.0
    width = min(9.0, max(3.0, canvas.shape[1] * 0.1 + 1.5))
    height = (width - 1.2) * canvas.shape[0] / canvas.shape[1] + 0.9
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(canvas, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    axes.set_xticks([x for x, _ in labels.columns], [c for _, c in labels.columns], fontsize=6)
    axes.set_yticks([y for y, _ in labels.rows], [k for _, k in labels.rows], fontsize=6)
    axes.tick_params(length=0)
    for x, y, k in labels.tiles:
        axes.text(x, y, k, ha="center", va="bottom", fontsize=6, color="#2a3f5f")
    if labels.tiles:  # room above the first row for its heads
        axes.set_ylim(canvas.shape[0] - 0.5, -1.5)
    axes.set_frame_on(False)
    axes.set_xlabel(labels.x_title, fontsize=8)
    axes.set_ylabel(labels.y_title, fontsize=8)
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, shrink=0.8)
    return figure


def feature_map_figure(maps: np.ndarray, title: str) -> Figure:
    """One probe digit's output of a layer: a mosaic of its channels, or bars for a vector."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 1:
        figure = Figure(figsize=(max(4, len(maps) * 0.04 + 2), 2.5), layout="constrained")
        axes = figure.subplots()
        axes.bar(np.arange(len(maps)), maps, width=1.0, color="#4c72b0")
        axes.set_xlabel("unit")
        axes.set_title(title, fontsize=9)
        return figure
    if maps.ndim == 2:
        maps = maps[None]
    canvas, _ = mosaic(maps, square_columns(len(maps)))
    height = canvas.shape[0] / canvas.shape[1] * 6
    figure = Figure(figsize=(6.5, max(2.0, height + 0.8)), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(canvas, cmap="viridis", interpolation="nearest")
    axes.set_axis_off()
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, shrink=0.8)
    return figure
