"""The figures of ``labkit explain``, as pure functions: a layer's backward pass
(:class:`labkit.backprop.LayerBackward`) or a chain-rule sum in, a matplotlib ``Figure``
out; saving is the caller's job (as in :mod:`labkit.inspect`).

Every part is drawn the way ``labkit inspect`` and the dashboard draw a layer's output:
channels as tiles of :mod:`labkit.mosaic` (a convolution's kernels as its kernel grid),
a vector as bars. A signed part (an input, an output, any gradient) is on a diverging
scale with symmetric limits, so 0 is white and a sign reads at a glance; a mask or a
probability on a sequential scale from 0 (:func:`labkit.layer_views.colour_range`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import patheffects
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from labkit.backprop import SHOWN_TERMS, ChainRule, LayerBackward, Part
from labkit.inspect import input_digit
from labkit.layer_views import colour_range
from labkit.mosaic import kernel_columns, mosaic, square_columns

DIVERGING = "RdBu_r"  # labkit inspect's and the dashboard's signed scale, white at 0
# A mask or f'(X): white where it stops the gradient, green (no sign's colour) where it
# lets it through; the light end cut off, as labkit.inspect's maps, so a small f' reads.
SEQUENTIAL = LinearSegmentedColormap.from_list("through", ["#f7f7f7", "#74c476", "#00441b"])
POSITIVE, NEGATIVE, PLAIN = "#b2182b", "#2166ac", "#4c72b0"  # bars: RdBu's ends; unsigned
SEPARATE_BARS = 40  # a vector up to this long is drawn as separate bars
ENVELOPE = 256  # a longer one as its envelope over this many runs of neighbours
CURRENT = "#ff7f0e"  # the record the command was asked about, in the saliency strip
_OUTLINE = [patheffects.withStroke(linewidth=3.2, foreground="white")]
_THIN_OUTLINE = [patheffects.withStroke(linewidth=2.0, foreground="white")]


def symmetric_limit(values: np.ndarray) -> float:
    """The largest finite |value| (1 when all are 0): the limits ``±limit`` of a scale
    centred at 0. NaN (a mosaic's gaps) is ignored."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def part_scale(part: Part) -> tuple[str, float, float]:
    """``(colormap, low, high)`` of a part: symmetric around 0 on a diverging scale for a
    signed part, 0 to its largest on a sequential one for a mask or a probability."""
    if part.signed:
        limit = symmetric_limit(part.values)
        return DIVERGING, -limit, limit
    low, high, _ = colour_range(np.abs(part.values))
    return SEQUENTIAL, low, high


@dataclass(frozen=True)
class Canvas:
    """A part laid out as one image: the pixels, and where each element of it sits."""

    pixels: np.ndarray  # 2-D, NaN in the gaps between tiles
    tile_shape: tuple[int, int]  # (h, w) of one tile
    columns: int  # tiles per row
    matrix: bool  # a matrix (dense weights): drawn stretched to its panel, not square
    lead: tuple[int, ...] = ()  # the part's axes before a tile's two: (C,) or (D, C)

    def position(self, index: Sequence[int]) -> tuple[float, float]:
        """``(x, y)`` in pixels of the element at ``index`` of the part."""
        *lead, i, j = (int(i) for i in index)
        tile = int(np.ravel_multi_index(lead, self.lead)) if lead else 0
        row, column = divmod(tile, self.columns)
        h, w = self.tile_shape
        return column * (w + 1) + j, row * (h + 1) + i


def part_canvas(values: np.ndarray) -> Canvas | None:
    """How a part is laid out: a 2-D part as a matrix; ``(C, H, W)`` channels as tiles in a
    near-square grid (one channel: the image itself); ``(D, C, k, k)`` kernels as
    :func:`labkit.mosaic.kernel_columns` lays them. None for a vector (drawn as bars)."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 2:
        return Canvas(values, values.shape, 1, matrix=True)
    if values.ndim == 3:
        columns = square_columns(len(values))
        pixels, _ = mosaic(values, columns)
        return Canvas(pixels, values.shape[1:], columns, False, values.shape[:1])
    if values.ndim == 4:
        depth, channels, kh, kw = values.shape
        columns = kernel_columns(depth, channels)
        pixels, _ = mosaic(values.reshape(depth * channels, kh, kw), columns)
        return Canvas(pixels, (kh, kw), columns, False, values.shape[:2])
    return None


def element_name(key: str, index: Sequence[int]) -> str:
    """``dx[0,5,7]``: how the command and the figures name one element of a part."""
    return f"{key}[{','.join(str(int(i)) for i in index)}]"


def shape_text(shape: Sequence[int]) -> str:
    """``16×24×24``."""
    return "×".join(str(int(n)) for n in shape)


def backward_figure(
    backward: LayerBackward,
    title: str,
    chosen: str | None = None,
    element: Sequence[int] | None = None,
) -> Figure:
    """Every part of a layer's backward pass, one panel each in reading order (its forward
    parts, then the gradient arriving and what the layer makes of it), each titled with
    the part's title and formula, its shape and range under it; the ``element`` of the
    ``chosen`` part boxed and named, and the same place marked, thinner, on every part of
    its shape (X beside dX, W beside dW, the logits beside dz)."""
    parts = list(backward.parts.values())
    rows = -(-len(parts) // 4)
    columns = -(-len(parts) // rows)
    figure = Figure(figsize=(3.5 * columns, 3.3 * rows + 0.6), layout="constrained")
    grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    shape = backward.parts[chosen].values.shape if chosen in backward.parts else None
    for axes, part in zip(grid, parts, strict=False):
        mark = None
        if element is not None and part.values.shape == shape:
            mark = Mark(tuple(int(i) for i in element), part.key == chosen)
        draw_part(figure, axes, part, mark)
    for axes in grid[len(parts) :]:
        axes.set_axis_off()
    figure.suptitle(title, fontsize=10)
    return figure


@dataclass(frozen=True)
class Mark:
    """An element to mark on a part: the chosen one (a bold box), or the same place on a
    part of its shape (a thin one)."""

    index: tuple[int, ...]
    chosen: bool


def draw_part(figure: Figure, axes, part: Part, mark: Mark | None = None) -> None:
    """One part in ``axes``: a heatmap (tiles) with its colour bar, or bars for a vector;
    the ``mark``'s element boxed on the heatmap, pointed at on the bars."""
    values = np.asarray(part.values, dtype=np.float64)
    shown = part.formula and part.formula.replace(" ", "") not in part.title.replace(" ", "")
    axes.set_title(f"{part.title}\n{part.formula}" if shown else part.title, fontsize=8)
    caption = f"{part.key} {shape_text(values.shape)}, [{values.min():.2e}, {values.max():.2e}]"
    canvas = part_canvas(values)
    if canvas is None:
        _bars(axes, part, values.reshape(-1), mark, values.shape)
        if values.size > ENVELOPE:
            caption += f"\nbars: the extremes of {ENVELOPE} runs of neighbours"
    else:
        cmap, low, high = part_scale(part)
        drawn = axes.imshow(
            canvas.pixels,
            cmap=cmap,
            vmin=low,
            vmax=high,
            interpolation="nearest",
            aspect="auto" if canvas.matrix else "equal",
        )
        bar = figure.colorbar(drawn, ax=axes, shrink=0.85, pad=0.02)
        bar.ax.tick_params(labelsize=6)
        bar.ax.yaxis.get_offset_text().set_fontsize(6)
        axes.set_xticks([])
        axes.set_yticks([])
        if canvas.matrix:  # which axis is which, for W[i, j] and dW = dY xᵀ
            axes.set_ylabel(f"rows i (0–{values.shape[0] - 1})", fontsize=7)
            caption += f"; columns j (0–{values.shape[1] - 1})"
        if mark is not None:
            _box(axes, *canvas.position(mark.index), mark.chosen)
    if mark is not None:
        sign = "□" if mark.chosen else "▫"
        value = f"{values[mark.index] + 0.0:+.3e}"  # + 0.0: no "-0.000e+00"
        caption += f"\n{sign} {element_name(part.key, mark.index)} = {value}"
        caption += "" if mark.chosen else " (same place)"
    axes.set_xlabel(caption, fontsize=7)


def _box(axes, x: float, y: float, chosen: bool) -> None:
    """A box around pixel ``(x, y)``, a few points wide whatever the zoom, outlined in
    white so that it reads on either end of a scale: black for the chosen element, grey
    and thinner for the same place on another part."""
    axes.plot(
        [x],
        [y],
        marker="s",
        markersize=9 if chosen else 7,
        markerfacecolor="none",
        markeredgecolor="black" if chosen else "#555555",
        markeredgewidth=1.4 if chosen else 0.8,
        path_effects=_OUTLINE if chosen else _THIN_OUTLINE,
    )


def _bars(axes, part: Part, values: np.ndarray, mark: Mark | None, shape) -> None:
    """A vector as bars from 0: red up and blue down for a signed part, one colour for a
    mask or a probability; the mark's element pointed at above its bar. A long vector is
    drawn as its envelope, one filled outline per sign: each of ``ENVELOPE`` runs of
    neighbours as its largest and its most negative (thousands of bars as patches take
    seconds to draw, and are finer than the pixels anyway)."""
    positions = np.arange(len(values))
    low, high = min(0.0, float(values.min())), max(0.0, float(values.max()))
    pad = 0.15 * ((high - low) or 1.0)
    axes.set_ylim(low - (pad if low < 0 else 0), high + pad)
    if part.signed:
        axes.axhline(0, color="#7f8ea3", linewidth=0.6)
    if len(values) <= SEPARATE_BARS:
        colours = np.where(values >= 0, POSITIVE, NEGATIVE) if part.signed else PLAIN
        axes.bar(positions, values, width=0.8, color=colours)
    else:
        starts = np.unique(np.linspace(0, len(values), ENVELOPE, endpoint=False).astype(int))
        edges = np.r_[starts, len(values)] - 0.5
        up = np.maximum.reduceat(np.maximum(values, 0), starts)
        down = np.minimum.reduceat(np.minimum(values, 0), starts)
        axes.stairs(up, edges, fill=True, color=POSITIVE if part.signed else PLAIN)
        if part.signed:
            axes.stairs(down, edges, fill=True, color=NEGATIVE)
    axes.set_xlim(-0.6, len(values) - 0.4)
    axes.tick_params(labelsize=6)
    axes.yaxis.get_offset_text().set_fontsize(6)
    if len(values) <= 20:
        axes.set_xticks(positions)
    if mark is not None:
        at = int(np.ravel_multi_index(mark.index, shape))
        bottom, top = axes.get_ylim()
        colour = "black" if mark.chosen else "#555555"
        axes.axvline(at, color=colour, linewidth=0.8, alpha=0.35)
        tip = top - 0.05 * (top - bottom)
        axes.plot([at], [tip], marker="v", color=colour, markersize=7 if mark.chosen else 5)


# -- the chain rule -----------------------------------------------------------------------


def chain_rule_figure(rule: ChainRule, title: str, shown: int = SHOWN_TERMS) -> Figure:
    """The sum behind one element as horizontal bars: its ``shown`` largest terms (each
    labelled with its factors), the rest as one bar, and their total, read top down."""
    terms = list(rule.terms[:shown])
    rest = rule.terms[shown:]
    labels = [_term_label(term.label, term.factors) for term in terms]
    values = [term.value for term in terms]
    colours = [POSITIVE if v >= 0 else NEGATIVE for v in values]
    if rest:
        labels.append(f"the {len(rest)} smaller terms, summed")
        values.append(sum(term.value for term in rest))
        colours.append("#9aa5b4")
    labels.append(f"total: {rule.element}")
    values.append(rule.total)
    colours.append("#2a3f5f")
    height = 0.32 * len(values) + 1.6
    figure = Figure(figsize=(9.0, height), layout="constrained")
    axes = figure.subplots()
    rows = np.arange(len(values))
    axes.barh(rows, values, color=colours, height=0.7)
    axes.axhline(len(values) - 1.5, color="#7f8ea3", linewidth=0.6, linestyle="--")
    axes.axvline(0, color="#7f8ea3", linewidth=0.6)
    axes.set_yticks(rows, labels, fontsize=7)
    axes.invert_yaxis()
    limit = symmetric_limit(np.asarray(values)) * 1.35
    axes.set_xlim(-limit, limit)
    for row, value in zip(rows, values, strict=True):
        side = "left" if value >= 0 else "right"
        axes.text(value, row, f" {value:+.3e} ", va="center", ha=side, fontsize=7)
    axes.tick_params(axis="x", labelsize=7)
    axes.set_xlabel("term value (the bars above the dashed line add up to the total)", fontsize=8)
    count = f"{len(rule.terms)} term{'s' if len(rule.terms) != 1 else ''}"
    axes.set_title(f"{title}\n{rule.element} = {rule.formula}   ({count})", fontsize=9)
    return figure


def _term_label(label: str, factors: Sequence[float]) -> str:
    """``dY[3,2,1] × K[3,0,2,1]  (+1.2e-02 × −3.4e-01)``: a term's factors by name and
    value (one factor: its name alone, its value is the bar's)."""
    if len(factors) < 2:
        return label
    return f"{label}  ({' × '.join(f'{f:+.2e}' for f in factors)})"


# -- the saliency strip -------------------------------------------------------------------


def saliency_figure(
    steps: Sequence[int],
    maps: np.ndarray,
    current: int,
    title: str,
    image: np.ndarray | None = None,
    label: int | None = None,
) -> Figure:
    """The probe's input gradient (saliency) at each recorded step of ``steps``, after the
    digit itself when ``image`` is given: each map on its own symmetric scale, ±its
    largest |value| (written under it), since a trained network's gradients are orders
    of magnitude smaller than a fresh one's; the ``current`` step's framed."""
    maps = np.asarray(maps, dtype=np.float64)
    maps = maps.reshape(len(maps), *_image_shape(maps[0]))
    panels = len(maps) + (image is not None)
    columns = min(panels, 7)
    rows = -(-panels // columns)
    figure = Figure(figsize=(1.55 * columns + 0.8, 1.75 * rows + 0.8), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes in grid:
        axes.set_xticks([])
        axes.set_yticks([])
    first = 0
    if image is not None:
        input_digit(grid[0], np.reshape(image, maps.shape[1:]), label)
        first = 1
    drawn = None
    for axes, step, pixels in zip(grid[first:], steps, maps, strict=False):
        limit = symmetric_limit(pixels)
        drawn = axes.imshow(
            pixels / limit, cmap=DIVERGING, vmin=-1, vmax=1, interpolation="nearest"
        )
        here = int(step) == int(current)
        axes.set_title(
            f"step {int(step)}" + (" (explained)" if here else ""),
            fontsize=8,
            color=CURRENT if here else "black",
            fontweight="bold" if here else "normal",
        )
        axes.set_xlabel(f"±{limit:.1e}", fontsize=7)
        for spine in axes.spines.values():
            spine.set_edgecolor(CURRENT if here else "#bbbbbb")
            spine.set_linewidth(3 if here else 0.8)
    for axes in grid[panels:]:
        axes.set_axis_off()
    if drawn is not None:
        bar = figure.colorbar(drawn, ax=list(grid), shrink=0.8, ticks=[-1, 0, 1])
        bar.ax.set_yticklabels(["−max", "0", "+max"], fontsize=7)
        bar.set_label("share of each map's own largest |value|", fontsize=7)
    figure.suptitle(
        f"{title}\neach map on its own scale: ±its largest |value|, written under it", fontsize=9
    )
    return figure


def _image_shape(first: np.ndarray) -> tuple[int, int]:
    """A saliency map's ``(H, W)``: an image's last two axes (one channel), a square
    vector as its square, any other vector as one row."""
    if first.ndim >= 2:
        return int(np.prod(first.shape[:-1])), int(first.shape[-1])
    side = int(round(np.sqrt(first.size)))
    return (side, side) if side * side == first.size else (1, int(first.size))
