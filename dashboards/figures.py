"""Pure figure functions for the dashboard: run data in, ``plotly.graph_objects.Figure`` out.

Nothing here reads a file or knows :class:`labkit.runs.Run`: the app reads a run and
hands plain numpy arrays, dicts and lists to these functions (as plotly's
dash-sample-apps keep figures apart from layout and callbacks), so each one is tested
on small synthetic arrays.

They are built for the dashboard's budget (every panel of a 2,000-record run within
150 ms): arrays go to plotly whole, with no Python loop over records or pixels; a grid
of kernels or feature maps is ONE heatmap of a padded mosaic; marker lines and bands are
layout shapes (``add_vline``/``add_hrect`` cost ~3 ms each); subplots are laid out by
hand (``make_subplots`` costs ~9 ms); traces are plain dicts (a ``go.Scatter`` is
validated once when made and again by the figure). The look is ``TEMPLATE``, the 2-D
part of plotly's ``plotly_white`` with small fonts and compact margins: the full
``plotly_white`` is validated again for every figure that names it, ~12 ms each.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from itertools import pairwise

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from labkit.mosaic import kernel_columns, mosaic, square_columns
from labkit.recording import STATS_FIELDS

MAX_POINTS = 2_000  # per-step curves are thinned by striding to about this many points
GRADIENT_NORM_THRESHOLDS = (1e-7, 1e2)  # below: vanishing, above: exploding
UPDATE_RATIO_THRESHOLDS = (1e-5, 1e-1)  # |delta p| / |p| per step
DEAD_FRACTION = 0.9  # a ReLU with more exact zeros than this is flagged (MNIST background
# alone makes 60-80% of a healthy ReLU's outputs zero)
SATURATED_FRACTION = 0.3  # a sigmoid/tanh with more saturated outputs than this is flagged

MARKER_COLOR = "#2a3f5f"
RIGHT_COLOR = "#2ca02c"
WRONG_COLOR = "#EF553B"
NEUTRAL_COLOR = "#aab4c3"
BAR_COLOR = "#636efa"
VANISHING_FILL = "rgba(99, 110, 250, 0.12)"
EXPLODING_FILL = "rgba(239, 85, 59, 0.12)"
DIVERGING_SCALE = "RdBu_r"  # negative blue, zero white, positive red
SEQUENTIAL_SCALE = "Viridis"
INK_SCALE = [[0.0, "white"], [1.0, "black"]]  # a digit as dark ink on white paper

GRADCHECK_COLUMNS = [
    {"name": name, "id": key}
    for key, name in (
        ("subject", "subject"),
        ("layer", "layer"),
        ("tensor", "tensor"),
        ("shape", "shape"),
        ("mode", "mode"),
        ("checked", "checked"),
        ("max_abs_error", "max abs err"),
        ("max_rel_error", "max rel err"),
        ("worst_index", "worst at"),
        ("status", "status"),
    )
]


def _make_template() -> go.layout.Template:
    """plotly_white's 2-D layout, small fonts and compact margins, cheap to validate."""
    white = pio.templates["plotly_white"].layout
    keep = (
        "autotypenumbers",
        "colorway",
        "font",
        "hovermode",
        "hoverlabel",
        "paper_bgcolor",
        "plot_bgcolor",
        "xaxis",
        "yaxis",
        "coloraxis",
        "shapedefaults",
        "annotationdefaults",
    )
    template = go.layout.Template(layout={key: white[key] for key in keep})
    template.layout.update(
        font_size=11,
        margin={"l": 52, "r": 16, "t": 36, "b": 40},
        title={"font_size": 13, "x": 0.01, "xanchor": "left"},
        legend={"font_size": 10},
        hoverlabel={"font_size": 11},
    )
    return template


TEMPLATE = _make_template()


# ---------------------------------------------------------------------------- helpers


def _figure(data: list, title: str, **layout) -> go.Figure:
    """A figure in the dashboard's look."""
    return go.Figure(data=data, layout={"template": TEMPLATE, "title_text": title, **layout})


def _step_line(step: float | None, xref: str = "x") -> list[dict]:
    """The current-step marker as a layout shape (empty when there is no current step)."""
    if step is None:
        return []
    return [
        {
            "type": "line",
            "xref": xref,
            "yref": "paper",
            "x0": step,
            "x1": step,
            "y0": 0,
            "y1": 1,
            "line": {"color": MARKER_COLOR, "width": 1.5, "dash": "dot"},
            "label": {
                "text": f"step {step}",
                "textposition": "end",
                "textangle": 0,
                "xanchor": "left",
                "font": {"size": 10, "color": MARKER_COLOR},
            },
        }
    ]


def _short(value: float | None, digits: int = 2) -> str:
    """A number in few characters: ``3e-9``, ``5.6e-2``, ``0.25``, ``1.8e2`` (no padding)."""
    if value is None:
        return "non-finite"  # the run store writes NaN and inf as JSON null
    small = 0 < abs(value) < 0.1
    text = f"{value:.{digits - 1}e}" if small else f"{value:.{digits}g}"
    if "e" in text:  # 5.60e-03 -> 5.6e-3, 1.00e-02 -> 1e-2
        mantissa, _, exponent = text.partition("e")
        if "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    return text


def _sci(value: float | None) -> str:
    """An error in a table: ``1.23e-10`` (as ``labkit gradcheck`` prints it), ``0`` for 0."""
    if value is None:
        return "non-finite"
    return "0" if value == 0 else f"{value:.2e}"


def _floats(values) -> np.ndarray:
    """``values`` as a floating array, keeping float32/float64 as they are."""
    values = np.asarray(values)
    return values if values.dtype.kind == "f" else values.astype(np.float64)


def _image_axes(rows: int, columns: int) -> dict:
    """Layout for a mosaic or image: square pixels, row 0 at the top, no grid."""
    common = {"showgrid": False, "zeroline": False, "showticklabels": False, "ticks": ""}
    return {
        "xaxis": {**common, "range": [-0.5, columns - 0.5], "constrain": "domain"},
        "yaxis": {
            **common,
            "range": [rows - 0.5, -0.5],
            "scaleanchor": "x",
            "constrain": "domain",
        },
    }


@functools.lru_cache(maxsize=16)
def _bin_axis(
    edges: tuple[float, ...],
) -> tuple[tuple[str, ...], tuple[float, ...], tuple[str, ...]]:
    """Category names of the bins of ``edges``, and tick positions and labels at round edges.

    Names read ``[1e-2, 1.8e-2)``; the end bins, into which the recorder clips outliers,
    read ``< -56`` and ``>= 56``. Ticks sit on edges that are powers of ten (every other
    decade when there are many), the bin holding 0 is labelled ``0``.
    """
    e = np.asarray(edges, dtype=np.float64)
    bins = len(e) - 1
    for digits in range(2, 8):  # enough digits for every name to be distinct
        names = [f"[{_short(lo, digits)}, {_short(hi, digits)})" for lo, hi in pairwise(e)]
        names[0] = f"< {_short(e[1], digits)}"
        names[-1] = f"≥ {_short(e[-2], digits)}"
        if len(set(names)) == bins:
            break
    with np.errstate(divide="ignore"):
        exponent = np.log10(np.abs(e))
    rounded = np.round(exponent)
    power = np.flatnonzero(np.isfinite(exponent) & (np.abs(exponent - rounded) < 1e-9))
    zero_bin = np.flatnonzero((e[:-1] <= 0) & (e[1:] > 0))
    if zero_bin.size:  # the edges of the bin around 0 are too close to label
        power = power[(power != zero_bin[0]) & (power != zero_bin[0] + 1)]
    if power.size:
        every = max(1, math.ceil(np.unique(rounded[power]).size / 5))
        power = power[rounded[power] % every == 0]
        tickvals = [float(i) - 0.5 for i in power]
        ticktext = [
            ("-" if e[i] < 0 else "") + ("1" if rounded[i] == 0 else f"1e{int(rounded[i])}")
            for i in power
        ]
    else:
        power = np.unique(np.linspace(0, bins, 9).round().astype(int))
        tickvals = [float(i) - 0.5 for i in power]
        ticktext = [_short(e[i]) for i in power]
    if zero_bin.size:
        tickvals.append(float(zero_bin[0]))
        ticktext.append("0")
    return tuple(names), tuple(tickvals), tuple(ticktext)  # cached: immutable


def _bins_for(
    edges: np.ndarray, bins: int
) -> tuple[tuple[str, ...], tuple[float, ...], tuple[str, ...]]:
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) != bins + 1:
        raise ValueError(f"{bins} bins need {bins + 1} edges, got shape {edges.shape}")
    return _bin_axis(tuple(edges.tolist()))


# ---------------------------------------------------------------------------- figures


def empty_figure(message: str) -> go.Figure:
    """A blank panel that says ``message`` (no run, no record, nothing recorded)."""
    return _figure(
        [],
        "",
        xaxis={"visible": False},
        yaxis={"visible": False},
        annotations=[
            {
                "text": message,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
                "showarrow": False,
                "font": {"size": 13, "color": "#7f8ea3"},
            }
        ],
    )


def training_curves(metrics_rows: list[dict], current_step: int | None) -> go.Figure:
    """Loss (log) above, batch and test accuracy below, against step; current step marked."""
    step_rows = [row for row in metrics_rows if "loss" in row and "kind" not in row]
    epoch_rows = [row for row in metrics_rows if "test_accuracy" in row]
    if not step_rows:
        return empty_figure("no training metrics yet")
    stride = max(1, math.ceil(len(step_rows) / MAX_POINTS))
    kept = step_rows[::stride]
    if kept[-1] is not step_rows[-1]:
        kept.append(step_rows[-1])  # the newest step is always shown
    steps = np.array([row.get("step") for row in kept], dtype=np.float64)
    loss = np.array([row.get("loss") for row in kept], dtype=np.float32)  # None -> NaN
    accuracy = np.array([row.get("accuracy") for row in kept], dtype=np.float32)
    epoch_steps = np.array([row.get("step") for row in epoch_rows], dtype=np.float64)
    test_accuracy = np.array([row.get("test_accuracy") for row in epoch_rows], dtype=np.float64)
    epochs = np.array([row.get("epoch") for row in epoch_rows], dtype=object)
    traces = [
        dict(
            type="scatter",
            x=steps,
            y=loss,
            name="loss",
            mode="lines",
            line={"width": 1.2},
            hovertemplate="step %{x}<br>loss %{y:.4g}<extra></extra>",
        ),
        dict(
            type="scatter",
            x=steps,
            y=accuracy,
            name="batch accuracy",
            mode="lines",
            line={"width": 1},
            opacity=0.7,
            xaxis="x2",
            yaxis="y2",
            hovertemplate="step %{x}<br>batch accuracy %{y:.1%}<extra></extra>",
        ),
        dict(
            type="scatter",
            x=epoch_steps,
            y=test_accuracy,
            customdata=epochs,
            name="test accuracy",
            mode="markers+lines",
            marker={"size": 8, "symbol": "diamond"},
            line={"width": 1, "dash": "dot"},
            xaxis="x2",
            yaxis="y2",
            hovertemplate="epoch %{customdata} (step %{x})<br>test accuracy %{y:.2%}"
            "<extra></extra>",
        ),
    ]
    title = "training curves" + (f" (one point per {stride} steps)" if stride > 1 else "")
    return _figure(
        traces,
        title,
        xaxis={"anchor": "y", "matches": "x2", "showticklabels": False},
        yaxis={"domain": [0.55, 1.0], "type": "log", "title_text": "loss"},
        xaxis2={"anchor": "y2", "title_text": "step"},
        yaxis2={"domain": [0.0, 0.45], "title_text": "accuracy", "tickformat": ".0%"},
        shapes=_step_line(current_step),
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
        hovermode="closest",
    )


def histogram_at_step(counts: np.ndarray, edges: np.ndarray, title: str) -> go.Figure:
    """One record's histogram as bars over the sign-log bins (``-1e-2`` .. ``0`` .. ``1e-2``)."""
    counts = np.asarray(counts)
    names, tickvals, ticktext = _bins_for(edges, counts.shape[-1])
    if counts.shape != (len(names),):
        raise ValueError(f"counts must have shape ({len(names)},), got {counts.shape}")
    bar = dict(
        type="bar",
        x=names,
        y=counts,
        marker={"color": BAR_COLOR, "line_width": 0},
        hovertemplate="%{x}<br>%{y} values<extra></extra>",
    )
    return _figure(
        [bar],
        title,
        bargap=0.05,
        xaxis={
            "type": "category",
            "tickmode": "array",
            "tickvals": tickvals,
            "ticktext": ticktext,
            "tickangle": 0,
            "title_text": "value (sign-log bins)",
        },
        yaxis={"title_text": "count"},
    )


def histogram_over_time(
    steps: np.ndarray,
    counts: np.ndarray,
    edges: np.ndarray,
    current_step: int | None,
    title: str = "distribution over training",
) -> go.Figure:
    """Every record's histogram as one heatmap (step x bin, colour log(1 + count))."""
    steps = np.asarray(steps)
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[0] != len(steps):
        raise ValueError(f"counts must be (records={len(steps)}, bins), got {counts.shape}")
    if len(steps) == 0:
        return empty_figure("no records yet")
    names, tickvals, ticktext = _bins_for(edges, counts.shape[1])
    by_bin = counts.T
    if by_bin.dtype.kind in "iu" and by_bin.min() >= 0:  # the smallest type on the wire
        by_bin = by_bin.astype(np.min_scalar_type(int(by_bin.max())))
    heatmap = dict(
        type="heatmap",
        x=steps,
        y=names,
        z=np.log1p(by_bin.astype(np.float32)),
        customdata=by_bin,
        colorscale="Blues",
        colorbar={"title": {"text": "log(1+n)", "side": "right"}, "thickness": 10},
        hovertemplate="step %{x}<br>%{y}<br>%{customdata} values<extra></extra>",
    )
    return _figure(
        [heatmap],
        title,
        xaxis={"title_text": "step", "showgrid": False},
        yaxis={
            "type": "category",
            "tickmode": "array",
            "tickvals": tickvals,
            "ticktext": ticktext,
            "showgrid": False,
            "title_text": "value",
        },
        shapes=_step_line(current_step),
    )


def gradient_flow(
    steps: np.ndarray,
    names: list[str],
    values: np.ndarray,
    current_step: int | None,
    title: str = "gradient norm per layer",
    thresholds: tuple[float, float] = GRADIENT_NORM_THRESHOLDS,
) -> go.Figure:
    """One line per layer (gradient norm or update ratio) on a log axis, with danger bands."""
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(steps), len(names)):
        raise ValueError(
            f"values must be (records={len(steps)}, layers={len(names)}), got {values.shape}"
        )
    if len(steps) == 0:
        return empty_figure("no records yet")
    low, high = thresholds
    # A log axis cannot show 0, negatives or non-finite values: they are gaps in the line.
    drawable = np.isfinite(values) & (values > 0)
    shown = np.where(drawable, values, np.nan).astype(np.float32)
    present = values[drawable]
    data_low = float(present.min()) if present.size else low
    data_high = float(present.max()) if present.size else high
    bottom = math.log10(min(data_low, low)) - 0.5
    top = math.log10(max(data_high, high)) + 0.5
    mode = "lines+markers" if len(steps) <= 30 else "lines"
    traces = [
        dict(
            type="scatter",
            x=steps,
            y=shown[:, j],
            name=name,
            mode=mode,
            line={"width": 1.3},
            marker={"size": 4},
            hovertemplate=f"{name}<br>step %{{x}}<br>%{{y:.2e}}<extra></extra>",
        )
        for j, name in enumerate(names)  # one trace per layer: a handful
    ]
    band = {"type": "rect", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "layer": "below"}
    label_font = {"size": 10, "color": "#7f8ea3"}
    shapes = [
        {
            **band,
            "y0": 10**bottom,
            "y1": low,
            "fillcolor": VANISHING_FILL,
            "line": {"width": 0},
            "label": {
                "text": f"vanishing (< {_short(low)})",
                "textposition": "top left",
                "font": label_font,
            },
        },
        {
            **band,
            "y0": high,
            "y1": 10**top,
            "fillcolor": EXPLODING_FILL,
            "line": {"width": 0},
            "label": {
                "text": f"exploding (> {_short(high)})",
                "textposition": "bottom left",
                "font": label_font,
            },
        },
        *_step_line(current_step),
    ]
    return _figure(
        traces,
        title,
        xaxis={"title_text": "step"},
        yaxis={"type": "log", "range": [bottom, top], "exponentformat": "power"},
        shapes=shapes,
        hovermode="closest",
    )


def health_warnings(
    layer_names: Sequence[str],
    stats_last: Mapping[str, np.ndarray],
    classes: Sequence[str],
    *,
    fields: Sequence[str] = STATS_FIELDS,
    update_ratios: Mapping[str, float] | None = None,
) -> list[str]:
    """Readable warnings about one record: dead ReLUs, saturation, vanishing/exploding.

    ``stats_last`` is ``{"activation": (L, F), "gradient": (L, F)}`` (one record of the
    run's ``stats`` array, split by kind; columns in ``fields`` order);
    ``update_ratios`` optionally maps parameter names to their update-to-weight ratio.
    A warning fires strictly beyond its threshold (``DEAD_FRACTION``,
    ``SATURATED_FRACTION``, ``GRADIENT_NORM_THRESHOLDS``, ``UPDATE_RATIO_THRESHOLDS``).
    """
    fields = list(fields)
    activation = _floats(stats_last["activation"])
    gradient = _floats(stats_last["gradient"])
    if not (len(layer_names) == len(classes) == len(activation) == len(gradient)):
        raise ValueError("layer_names, classes and the stats must have one entry per layer")
    zeros = activation[:, fields.index("zero_fraction")]
    saturated = activation[:, fields.index("saturated_fraction")]
    activation_norm = activation[:, fields.index("l2")]
    gradient_norm = gradient[:, fields.index("l2")]
    # Thresholds in the statistics' own precision: a float32 0.3 is a hair above 0.3.
    dead = activation.dtype.type(DEAD_FRACTION)
    saturation = activation.dtype.type(SATURATED_FRACTION)
    low, high = (gradient.dtype.type(t) for t in GRADIENT_NORM_THRESHOLDS)
    warnings = []
    for i, name in enumerate(layer_names):  # one pass over the layers: a handful
        if classes[i] == "ReLU" and zeros[i] > dead:
            warnings.append(f"{name}: {zeros[i]:.0%} of outputs are exactly 0 (dying ReLUs?)")
        if saturated[i] > saturation:  # NaN (not a sigmoid/tanh) never fires
            warnings.append(f"{name}: {saturated[i]:.0%} saturated")
        if not np.isfinite(activation_norm[i]):
            warnings.append(f"{name}: activation norm {_short(activation_norm[i])} (non-finite)")
        norm = gradient_norm[i]
        if not np.isfinite(norm):
            warnings.append(f"{name}: gradient norm {_short(norm)} (non-finite)")
        elif norm < low:
            warnings.append(f"{name}: gradient norm {_short(norm)} (vanishing)")
        elif norm > high:
            warnings.append(f"{name}: gradient norm {_short(norm)} (exploding)")
    for name, value in (update_ratios or {}).items():
        ratio = _floats(value)[()]
        ratio_low, ratio_high = (ratio.dtype.type(t) for t in UPDATE_RATIO_THRESHOLDS)
        if not np.isfinite(ratio):
            warnings.append(f"{name}: update ratio {_short(ratio)} (non-finite)")
        elif ratio < ratio_low:
            warnings.append(f"{name}: update ratio {_short(ratio)} (too small)")
        elif ratio > ratio_high:
            warnings.append(f"{name}: update ratio {_short(ratio)} (too large)")
    return warnings


def kernel_grid(kernels: np.ndarray, title: str, diverging: bool = True) -> go.Figure:
    """Every kernel of a conv layer, (out x in) or wrapped, as ONE mosaic heatmap.

    ``kernels`` is ``(D, C, k, k)``: D rows by C columns, or, for one input channel,
    the D kernels wrapped into a near-square grid. A 2-D array (a dense layer's weights)
    is shown as one matrix. ``diverging`` centres a symmetric colour scale on 0 (for
    weights, and for ``kernels_now - kernels_at_step0``); otherwise a sequential scale.
    """
    kernels = np.asarray(kernels, dtype=np.float32)
    if kernels.ndim == 2:
        z = kernels
        customdata = None
        hover = "out %{y}, in %{x}<br>%{z:.3g}<extra></extra>"
        layout = {
            "xaxis": {"title_text": "input", "showgrid": False, "zeroline": False},
            "yaxis": {"title_text": "output", "autorange": "reversed", "showgrid": False},
        }
    elif kernels.ndim == 4:
        depth, channels, kh, kw = kernels.shape
        columns = kernel_columns(depth, channels)
        z, owner = mosaic(kernels.reshape(depth * channels, kh, kw), columns)
        customdata = np.stack([owner // channels, owner % channels], axis=-1)
        hover = "kernel %{customdata[0]}, input %{customdata[1]}<br>%{z:.3g}<extra></extra>"
        layout = _image_axes(*z.shape)
        if channels > 1:  # label the rows (kernels) and columns (input channels)
            for axis, count, size in (("xaxis", channels, kw), ("yaxis", depth, kh)):
                ticks = np.arange(0, count, max(1, math.ceil(count / 8)))
                layout[axis].update(
                    showticklabels=True,
                    tickmode="array",
                    tickvals=ticks * (size + 1) + (size - 1) / 2,
                    ticktext=[str(t) for t in ticks],
                )
            layout["xaxis"]["title_text"] = "input channel"
            layout["yaxis"]["title_text"] = "kernel"
    else:
        raise ValueError(f"kernels must be (D, C, k, k) or 2-D, got shape {kernels.shape}")
    if diverging:
        finite = np.abs(z[np.isfinite(z)])
        bound = float(finite.max()) if finite.size else 0.0
        bound = bound if bound > 0 else 1.0
        colour = {"colorscale": DIVERGING_SCALE, "zmin": -bound, "zmax": bound, "zmid": 0}
    else:
        colour = {"colorscale": SEQUENTIAL_SCALE}
    heatmap = dict(
        type="heatmap",
        z=z,
        customdata=customdata,
        hoverongaps=False,
        hovertemplate=hover,
        colorbar={"thickness": 10},
        **colour,
    )
    return _figure([heatmap], title, **layout)


def feature_map_grid(maps: np.ndarray, title: str) -> go.Figure:
    """One probe digit's outputs of a layer: maps ``(C, H, W)`` as a mosaic, ``(n,)`` as bars."""
    maps = np.asarray(maps, dtype=np.float32)  # float16 as stored: plotly.js has no float16
    if maps.ndim == 1:
        bar = dict(
            type="bar",
            x=np.arange(len(maps)),
            y=maps,
            marker={"color": BAR_COLOR, "line_width": 0},
            hovertemplate="unit %{x}<br>%{y:.3g}<extra></extra>",
        )
        return _figure(
            [bar], title, bargap=0.1, xaxis={"title_text": "unit"}, yaxis={"title_text": "output"}
        )
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3:
        raise ValueError(f"maps must be (C, H, W), (H, W) or (n,), got shape {maps.shape}")
    z, owner = mosaic(maps, square_columns(len(maps)))
    heatmap = dict(
        type="heatmap",
        z=z,
        customdata=owner,
        colorscale=SEQUENTIAL_SCALE,
        hoverongaps=False,
        hovertemplate="channel %{customdata}<br>%{z:.3g}<extra></extra>",
        colorbar={"thickness": 10},
    )
    return _figure([heatmap], title, **_image_axes(*z.shape))


def probabilities_bar(probs: np.ndarray, label: int) -> go.Figure:
    """The class probabilities; the true label in green, a wrong prediction in red."""
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    predicted = int(np.argmax(probs))
    colours = np.full(len(probs), NEUTRAL_COLOR, dtype=object)
    colours[predicted] = WRONG_COLOR
    colours[label] = RIGHT_COLOR
    bar = dict(
        type="bar",
        x=[str(c) for c in range(len(probs))],
        y=probs,
        marker={"color": colours, "line_width": 0},
        hovertemplate="P(%{x}) = %{y:.3f}<extra></extra>",
    )
    verdict = "right" if predicted == label else "wrong"
    return _figure(
        [bar],
        f"probabilities: label {label}, predicted {predicted} ({verdict})",
        bargap=0.15,
        xaxis={"type": "category", "title_text": "class"},
        yaxis={"range": [0, 1], "tickformat": ".0%"},
    )


def probe_image(image: np.ndarray, label: int, predicted: int) -> go.Figure:
    """A probe digit as dark ink on white, titled with its label and the prediction."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 2:
        raise ValueError(f"image must be (1, H, W) or (H, W), got shape {image.shape}")
    heatmap = dict(
        type="heatmap",
        z=image,
        colorscale=INK_SCALE,
        zmin=min(0.0, float(image.min())),
        zmax=max(1.0, float(image.max())),
        showscale=False,
        hovertemplate="(%{y}, %{x})<br>%{z:.2f}<extra></extra>",
    )
    right = predicted == label
    return _figure(
        [heatmap],
        f"label {label}, predicted {predicted}",
        title_font_color=RIGHT_COLOR if right else WRONG_COLOR,
        **_image_axes(*image.shape),
    )


def gradcheck_table(report: dict) -> list[dict]:
    """Rows for a Dash DataTable (columns ``GRADCHECK_COLUMNS``) from a gradcheck report.

    ``report`` is the JSON document ``labkit gradcheck`` writes (``{"reports": [...]}``)
    or one report of it (``{"subject", "passed", "checks"}``); the status is rebuilt from
    the check's fields, as the CLI prints it (a stored ``status`` may be the old short one).
    """
    from labkit.reports import status_text

    reports = report.get("reports", [report]) if isinstance(report, dict) else []
    rows = []
    for sub in reports:
        for check in sub.get("checks", []):
            failures, checked = check.get("failures", 0), check.get("checked", 0)
            note = check.get("note") or ""
            worst = check.get("worst_index")
            shape = check.get("shape") or []
            rows.append(
                {
                    "subject": sub.get("subject", ""),
                    "layer": check.get("layer", ""),
                    "tensor": check.get("tensor", ""),
                    "shape": str(tuple(shape)),
                    "mode": check.get("mode", ""),
                    "checked": checked,
                    "failures": failures,
                    "kinks": check.get("kinks", 0),
                    "max_abs_error": _sci(check.get("max_abs_error")),
                    "max_rel_error": _sci(check.get("max_rel_error")),
                    "worst_index": "-" if worst is None else str(tuple(worst)),
                    "status": status_text(check),
                    "passed": bool(check.get("passed", not failures and not note)),
                }
            )
    return rows
