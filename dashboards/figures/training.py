"""Figures over training: curves, histograms and their distribution over steps,
gradient and update flow, and the health warnings."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from itertools import pairwise

import numpy as np
import plotly.graph_objects as go

from dashboards.figures.style import (
    BAR_COLOR,
    DEAD_FRACTION,
    EXPLODING_FILL,
    GRADIENT_NORM_THRESHOLDS,
    MAX_POINTS,
    SATURATED_FRACTION,
    UPDATE_RATIO_THRESHOLDS,
    VANISHING_FILL,
    as_floats,
    empty_figure,
    figure,
    short_number,
    step_line,
)
from labkit.recording import STATS_FIELDS


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
        names = [
            f"[{short_number(lo, digits)}, {short_number(hi, digits)})" for lo, hi in pairwise(e)
        ]
        names[0] = f"< {short_number(e[1], digits)}"
        names[-1] = f"≥ {short_number(e[-2], digits)}"
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
        ticktext = [short_number(e[i]) for i in power]
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
    return figure(
        traces,
        title,
        xaxis={"anchor": "y", "matches": "x2", "showticklabels": False},
        yaxis={"domain": [0.55, 1.0], "type": "log", "title_text": "loss"},
        xaxis2={"anchor": "y2", "title_text": "step"},
        yaxis2={"domain": [0.0, 0.45], "title_text": "accuracy", "tickformat": ".0%"},
        shapes=step_line(current_step),
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
    return figure(
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
    return figure(
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
        shapes=step_line(current_step),
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
                "text": f"vanishing (< {short_number(low)})",
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
                "text": f"exploding (> {short_number(high)})",
                "textposition": "bottom left",
                "font": label_font,
            },
        },
        *step_line(current_step),
    ]
    return figure(
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
    activation = as_floats(stats_last["activation"])
    gradient = as_floats(stats_last["gradient"])
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
            warnings.append(
                f"{name}: activation norm {short_number(activation_norm[i])} (non-finite)"
            )
        norm = gradient_norm[i]
        if not np.isfinite(norm):
            warnings.append(f"{name}: gradient norm {short_number(norm)} (non-finite)")
        elif norm < low:
            warnings.append(f"{name}: gradient norm {short_number(norm)} (vanishing)")
        elif norm > high:
            warnings.append(f"{name}: gradient norm {short_number(norm)} (exploding)")
    for name, value in (update_ratios or {}).items():
        ratio = as_floats(value)[()]
        ratio_low, ratio_high = (ratio.dtype.type(t) for t in UPDATE_RATIO_THRESHOLDS)
        if not np.isfinite(ratio):
            warnings.append(f"{name}: update ratio {short_number(ratio)} (non-finite)")
        elif ratio < ratio_low:
            warnings.append(f"{name}: update ratio {short_number(ratio)} (too small)")
        elif ratio > ratio_high:
            warnings.append(f"{name}: update ratio {short_number(ratio)} (too large)")
    return warnings
