"""Matplotlib figures as pure functions (data in, Figure out); saving is the caller's job."""

from __future__ import annotations

import numpy as np
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.colors import LinearSegmentedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from labkit.layer_views import colour_range, shape_only_note, unit_axis
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


def feature_map_figure(
    maps: np.ndarray,
    title: str,
    *,
    layer_class: str | None = None,
    previous: str | None = None,
    last: bool = False,
    image: np.ndarray | None = None,
    label: int | None = None,
) -> Figure:
    """One probe digit's output of a layer, with the digit itself first when ``image`` is
    given: a mosaic of its channels (a diverging scale centred on 0 when signed, a
    sequential one from 0 when not), bars for a vector (classes for the ``last`` layer),
    or, for a Reshape or Flatten, a note that it repeats the layer before (``previous``);
    the rules of :mod:`labkit.layer_views`, as in the dashboard."""
    maps = np.asarray(maps, dtype=np.float32)
    note = shape_only_note(layer_class, maps.shape, previous)
    if note is None and maps.ndim == 2:
        maps = maps[None]
    if note is not None:
        size = (6.5, 2.2)
    elif maps.ndim == 1:
        size = (max(4, len(maps) * 0.04 + 2), 2.5)
    else:
        canvas, _ = mosaic(maps, square_columns(len(maps)))
        size = (6.5, max(2.0, canvas.shape[0] / canvas.shape[1] * 6 + 0.8))
    digit = image is not None
    width = size[0] + (min(2.0, size[1]) if digit else 0)
    figure = Figure(figsize=(width, size[1]), layout="constrained")
    if digit:
        digit_axes, axes = figure.subplots(1, 2, width_ratios=(min(2.0, size[1]), size[0]))
        input_digit(digit_axes, image, label)
    else:
        axes = figure.subplots()
    axes.set_title(title, fontsize=9)
    if note is not None:
        hint = f"see the figure of {previous or 'the layer before'}"
        hint += " for them as maps" if maps.ndim == 1 else ""
        axes.text(0.5, 0.5, f"{note}\n{hint}", ha="center", va="center", color="#7f8ea3")
        axes.set_axis_off()
    elif maps.ndim == 1:
        axes.bar(np.arange(len(maps)), maps, width=0.8 if last else 1.0, color="#4c72b0")
        axes.set_xlabel(unit_axis(last, layer_class))
        if last:
            axes.set_xticks(np.arange(len(maps)))
    else:
        low, high, diverging = colour_range(canvas)
        cmap = "RdBu_r" if diverging else "viridis"
        drawn = axes.imshow(canvas, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
        axes.set_axis_off()
        figure.colorbar(drawn, ax=axes, shrink=0.8)
    return figure


def input_digit(axes, image: np.ndarray, label: int | None) -> None:
    """The probe digit, dark ink on white, titled with its label."""
    image = np.asarray(image, dtype=np.float32)
    low, high = min(0.0, float(image.min())), max(1.0, float(image.max()))
    pixels = image.reshape(image.shape[-2:])
    axes.imshow(pixels, cmap="gray_r", vmin=low, vmax=high, interpolation="nearest")
    axes.set_title("input" if label is None else f"input: digit {label}", fontsize=9)
    axes.set_xticks([])
    axes.set_yticks([])
