"""Figures over training: curves, histograms and their distribution over steps (gradient
and update flow, and the health warnings, are :mod:`.flow`)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import plotly.graph_objects as go

from dashboards.figures.axes import LINEAR, StepAxis
from dashboards.figures.style import (
    BAR_COLOR,
    COMPARE_COLOR,
    HEATMAP_MARKER_COLOR,
    MAX_POINTS,
    empty_figure,
    figure,
    short_number,
)


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


@dataclass(frozen=True)
class Series:
    """One run's rows or arrays for a figure over training, with the name to show."""

    name: str
    data: object
    steps: np.ndarray | None = None


def _step_rows(metrics_rows: list[dict]) -> tuple[list[dict], list[dict], int]:
    """Per-step rows thinned by a stride to about ``MAX_POINTS`` (the newest always kept),
    the epoch rows, and the stride."""
    step_rows = [row for row in metrics_rows if "loss" in row and "kind" not in row]
    epoch_rows = [row for row in metrics_rows if "test_accuracy" in row]
    stride = max(1, math.ceil(len(step_rows) / MAX_POINTS))
    kept = step_rows[::stride]
    if kept and kept[-1] is not step_rows[-1]:
        kept.append(step_rows[-1])  # the newest step is always shown
    return kept, epoch_rows, stride


def _column(rows: list[dict], key: str, dtype=np.float32) -> np.ndarray:
    return np.array([row.get(key) for row in rows], dtype=dtype)  # None -> NaN


def _curve_traces(rows: list[dict], epochs: list[dict], axis: StepAxis, suffix: str, other: bool):
    """Loss, batch accuracy and test accuracy of one run; a compared run's are dotted."""
    steps = _column(rows, "step", np.float64)
    last = float(steps[-1]) if steps.size else None
    epoch_steps = _column(epochs, "step", np.float64)
    dash = {"dash": "dot"} if other else {}
    colours = ("#636efa", "#00cc96", "#ab63fa") if not other else ("#1f2a6b", "#0b6e55", "#5b2a8c")
    return [
        dict(
            type="scatter",
            x=axis.x(steps, last),
            y=_column(rows, "loss"),
            customdata=steps,
            name="loss" + suffix,
            mode="lines",
            line={"width": 1.2, "color": colours[0], **dash},
            hovertemplate="step %{customdata}<br>loss %{y:.4g}<extra>" + suffix + "</extra>",
        ),
        dict(
            type="scatter",
            x=axis.x(steps, last),
            y=_column(rows, "accuracy"),
            customdata=steps,
            name="batch accuracy" + suffix,
            mode="lines",
            line={"width": 1, "color": colours[1], **dash},
            opacity=0.7,
            xaxis="x2",
            yaxis="y2",
            hovertemplate="step %{customdata}<br>batch accuracy %{y:.1%}<extra>"
            + suffix
            + "</extra>",
        ),
        dict(
            type="scatter",
            x=axis.x(epoch_steps, last),
            y=_column(epochs, "test_accuracy", np.float64),
            customdata=np.stack([_column(epochs, "epoch", object), epoch_steps], axis=-1)
            if epochs
            else None,
            name="test accuracy" + suffix,
            mode="markers+lines",
            marker={"size": 8, "symbol": "diamond" if not other else "diamond-open"},
            line={"width": 1, "dash": "dot", "color": colours[2]},
            xaxis="x2",
            yaxis="y2",
            hovertemplate="epoch %{customdata[0]} (step %{customdata[1]})<br>test accuracy"
            " %{y:.2%}<extra>" + suffix + "</extra>",
        ),
    ]


def log_ticks(values: np.ndarray) -> dict:
    """A log axis's tick spacing: one label per decade when the values span one or more
    (plotly would label 2, 5 and crowd them), else 1-2-5 steps within the decade."""
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size and math.log10(positive.max() / positive.min()) >= 1:
        return {"dtick": 1, "minor": {"ticks": "inside", "ticklen": 3, "showgrid": False}}
    return {"dtick": "D2"}


def training_curves(
    metrics_rows: list[dict],
    current_step: int | None,
    compare: Series | None = None,
    axis: StepAxis = LINEAR,
) -> go.Figure:
    """Loss (log) above, batch and test accuracy below, against step; current step marked.

    ``compare`` (a :class:`Series` of another run's metrics rows) adds its curves, dotted,
    on the same ``axis`` (see :mod:`dashboards.figures.axes`).
    """
    kept, epoch_rows, stride = _step_rows(metrics_rows)
    if not kept:
        return empty_figure("no training metrics yet")
    suffix = f" ({compare.name})" if compare is not None else ""
    traces = _curve_traces(kept, epoch_rows, axis, "", other=False)
    losses = [_column(kept, "loss")]
    if compare is not None:
        other_rows, other_epochs, _ = _step_rows(compare.data)
        if other_rows:
            traces += _curve_traces(other_rows, other_epochs, axis, suffix, other=True)
            losses.append(_column(other_rows, "loss"))
    first, last = float(kept[0]["step"]), float(kept[-1]["step"])
    title = "training curves" + (f" (one point per {stride} steps)" if stride > 1 else "")
    return figure(
        traces,
        title,
        xaxis={
            "anchor": "y",
            "matches": "x2",
            "showticklabels": False,
            "type": axis.layout().get("type", "linear"),
        },
        yaxis={
            "domain": [0.55, 1.0],
            "type": "log",
            "title_text": "loss",
            "exponentformat": "power",
            **log_ticks(np.concatenate(losses)),
        },
        xaxis2={"anchor": "y2", **axis.layout()},
        yaxis2={"domain": [0.0, 0.45], "title_text": "accuracy", "tickformat": ".0%"},
        shapes=axis.marker(current_step, first, last),
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
        hovermode="closest",
    )


def histogram_at_step(
    counts: np.ndarray,
    edges: np.ndarray,
    title: str,
    compare: Series | None = None,
    name: str = "this run",
) -> go.Figure:
    """One record's histogram as bars over the sign-log bins (``-1e-2`` .. ``0`` .. ``1e-2``).

    ``compare`` (another run's counts at the same step, as a :class:`Series`) is overlaid;
    both are then shown as shares of their values, since batch sizes may differ; ``name``
    is this run's legend entry.
    """
    counts = np.asarray(counts)
    names, tickvals, ticktext = _bins_for(edges, counts.shape[-1])
    if counts.shape != (len(names),):
        raise ValueError(f"counts must have shape ({len(names)},), got {counts.shape}")
    shares = compare is not None
    bars = [(counts, name, BAR_COLOR)]
    if compare is not None:
        bars.append((np.asarray(compare.data), compare.name, COMPARE_COLOR))
    traces = [
        dict(
            type="bar",
            x=names,
            y=share_of(values) if shares else values,
            name=name,
            opacity=0.6 if shares else 1.0,
            marker={"color": colour, "line_width": 0},
            hovertemplate="%{x}<br>"
            + ("%{y:.1%} of the values" if shares else "%{y} values")
            + f"<extra>{name if shares else ''}</extra>",
        )
        for values, name, colour in bars
    ]
    return figure(
        traces,
        title,
        bargap=0.05,
        barmode="overlay",
        showlegend=shares,
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
        xaxis={
            "type": "category",
            "tickmode": "array",
            "tickvals": tickvals,
            "ticktext": ticktext,
            "tickangle": 0,
            "title_text": "value (sign-log bins)",
        },
        yaxis={
            "title_text": "share" if shares else "count",
            **({"tickformat": ".0%"} if shares else {}),
        },
    )


def share_of(counts: np.ndarray) -> np.ndarray:
    """Counts as fractions of their total (zeros when there is none)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return (counts / total if total > 0 else counts * 0).astype(np.float32)


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
        shapes=on_dark(LINEAR.marker(current_step, float(steps[0]), float(steps[-1]))),
    )


def on_dark(shapes: list[dict]) -> list[dict]:
    """The step marker drawn light, to read over a heatmap's dark blue."""
    for shape in shapes:
        shape["line"] = {**shape["line"], "color": HEATMAP_MARKER_COLOR}
        shape["label"]["font"] = {**shape["label"]["font"], "color": HEATMAP_MARKER_COLOR}
    return shapes
