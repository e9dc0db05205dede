"""Gradient and update flow per layer over training, and the health warnings of a step."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from dashboards.figures.axes import LINEAR, StepAxis
from dashboards.figures.style import (
    DEAD_FRACTION,
    EXPLODING_FILL,
    GRADIENT_NORM_THRESHOLDS,
    SATURATED_FRACTION,
    SETTLING_FRACTION,
    SUSTAINED_RECORDS,
    UPDATE_RATIO_THRESHOLDS,
    VANISHING_FILL,
    as_floats,
    empty_figure,
    figure,
    short_number,
)
from labkit.recording import STATS_FIELDS

COLORWAY = (
    "#636efa",
    "#EF553B",
    "#00cc96",
    "#ab63fa",
    "#FFA15A",
    "#19d3f3",
    "#FF6692",
    "#B6E880",
    "#FF97FF",
    "#FECB52",
)
GRADIENT_BANDS = ("vanishing", "exploding")
UPDATE_BANDS = ("too small: learning rate too low?", "too large: learning rate too high?")


def _drawable(values: np.ndarray) -> np.ndarray:
    """A log axis cannot show 0, negatives or non-finite values: they become gaps."""
    return np.where(np.isfinite(values) & (values > 0), values, np.nan).astype(np.float32)


def _lines(steps, names, values, axis: StepAxis, suffix: str, dotted: bool) -> list[dict]:
    shown = _drawable(values)
    last = float(steps[-1]) if len(steps) else None
    mode = "lines+markers" if len(steps) <= 30 else "lines"
    return [
        dict(
            type="scatter",
            x=axis.x(steps, last),
            y=shown[:, j],
            customdata=steps,
            name=name + suffix,
            legendgroup=name,
            mode=mode,
            line={
                "width": 1.3,
                "color": COLORWAY[j % len(COLORWAY)],
                **({"dash": "dot"} if dotted else {}),
            },
            marker={"size": 4},
            hovertemplate=f"{name}{suffix}<br>step %{{customdata}}<br>%{{y:.2e}}<extra></extra>",
        )
        for j, name in enumerate(names)  # one trace per layer: a handful
    ]


def gradient_flow(
    steps: np.ndarray,
    names: list[str],
    values: np.ndarray,
    current_step: int | None,
    title: str = "gradient norm per layer",
    thresholds: tuple[float, float] = GRADIENT_NORM_THRESHOLDS,
    *,
    bands: tuple[str, str] = GRADIENT_BANDS,
    compare: tuple[str, np.ndarray, list[str], np.ndarray] | None = None,
    axis: StepAxis = LINEAR,
) -> go.Figure:
    """One line per layer (gradient norm or update ratio) on a log axis, with danger bands
    named ``bands`` below and above ``thresholds``.

    ``compare`` is ``(run name, steps, names, values)`` of another run: its lines are
    dotted in the colour of the same-named layer of this run, on the same ``axis``.
    """
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(steps), len(names)):
        raise ValueError(
            f"values must be (records={len(steps)}, layers={len(names)}), got {values.shape}"
        )
    if len(steps) == 0:
        return empty_figure("no records yet")
    low, high = thresholds
    traces = _lines(steps, names, values, axis, "", dotted=False)
    present = [values[np.isfinite(values) & (values > 0)]]
    if compare is not None:
        other, other_steps, other_names, other_values = compare
        other_values = np.asarray(other_values, dtype=np.float64)
        order = {name: j for j, name in enumerate(names)}
        if len(other_steps):
            for trace, name in zip(
                _lines(
                    np.asarray(other_steps), other_names, other_values, axis, f" ({other})", True
                ),
                other_names,
                strict=True,
            ):
                trace["line"]["color"] = COLORWAY[order.get(name, len(order)) % len(COLORWAY)]
                trace["showlegend"] = name not in order  # a layer's legend entry shows both
                traces.append(trace)
            title = f"{title} · dotted: {other}"
            present.append(other_values[np.isfinite(other_values) & (other_values > 0)])
    present = np.concatenate(present)
    data_low = float(present.min()) if present.size else low
    data_high = float(present.max()) if present.size else high
    bottom = math.log10(min(data_low, low)) - 0.5
    top = math.log10(max(data_high, high)) + 0.5
    band = {"type": "rect", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "layer": "below"}
    label_font = {"size": 10, "color": "#7f8ea3"}
    shapes = [
        *axis.marker(current_step, float(steps[0]), float(steps[-1])),  # first: marker.js
        {
            **band,
            "y0": 10**bottom,
            "y1": low,
            "fillcolor": VANISHING_FILL,
            "line": {"width": 0},
            "label": {
                "text": f"{bands[0]} (< {short_number(low)})",
                "textposition": "top left",
                "yanchor": "top",
                "padding": 4,
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
                "text": f"{bands[1]} (> {short_number(high)})",
                "textposition": "bottom left",
                "yanchor": "bottom",
                "padding": 4,
                "font": label_font,
            },
        },
    ]
    return figure(
        traces,
        title,
        xaxis=axis.layout(),
        yaxis={"type": "log", "range": [bottom, top], "exponentformat": "power", "dtick": 1},
        shapes=shapes,
        hovermode="closest",
        legend={"font_size": 9},
    )


def health_warnings(
    layer_names: Sequence[str],
    stats_last: Mapping[str, np.ndarray],
    classes: Sequence[str],
    *,
    fields: Sequence[str] = STATS_FIELDS,
) -> list[str]:
    """Readable warnings about one record: dead ReLUs, saturation, vanishing/exploding.

    ``stats_last`` is ``{"activation": (L, F), "gradient": (L, F)}`` (one record of the
    run's ``stats`` array, split by kind; columns in ``fields`` order). A warning fires
    strictly beyond its threshold (``DEAD_FRACTION``, ``SATURATED_FRACTION``,
    ``GRADIENT_NORM_THRESHOLDS``).
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
    return warnings


def is_bias(name: str) -> bool:
    """Whether a parameter, named ``LAYER/TENSOR``, is a bias (``bias``, ``biases``, ``b``)."""
    tensor = name.rsplit("/", 1)[-1].lower()
    return "bias" in tensor or tensor == "b"


def update_ratio_warnings(names: Sequence[str], ratios: np.ndarray, total: int) -> list[str]:
    """Warnings about update/weight ratios that stay beyond ``UPDATE_RATIO_THRESHOLDS``.

    ``ratios`` is ``(records so far, parameters)``, up to the current record, of a run of
    ``total`` records. A parameter is flagged only when its last ``SUSTAINED_RECORDS``
    ratios, all after the first ``SETTLING_FRACTION`` of the run, are every one beyond the
    same threshold: the first steps of Adam (and a bias that starts at 0) always update
    far more than 1e-2 of the weight, and one odd record is no trend. A non-finite ratio
    is flagged at once. Biases (:func:`is_bias`) are drawn but never flagged: they start
    at 0, so their ratio is undefined at first and stays far above a weight's in healthy
    runs (lenet's, at 99% test accuracy: 5e-3 to 2e-2, its weights 1e-3 to 3e-3).
    """
    ratios = as_floats(ratios)
    if ratios.ndim != 2 or ratios.shape[1] != len(names):
        raise ValueError(f"ratios must be (records, {len(names)}), got {ratios.shape}")
    warnings = []
    now = ratios[-1] if len(ratios) else np.full(len(names), np.nan)
    settled = max(int(math.ceil(SETTLING_FRACTION * total)), 0)
    window = ratios[max(settled, len(ratios) - SUSTAINED_RECORDS) :]
    sustained = len(window) >= SUSTAINED_RECORDS
    low, high = (ratios.dtype.type(t) for t in UPDATE_RATIO_THRESHOLDS)
    for j, name in enumerate(names):
        if is_bias(name):
            continue
        if len(ratios) and not np.isfinite(now[j]):
            warnings.append(f"{name}: update ratio {short_number(now[j])} (non-finite)")
            continue
        if not sustained:
            continue
        column = window[:, j]
        span = f"for the last {len(column)} records"
        if np.all(column < low):
            warnings.append(
                f"{name}: update ratio {short_number(now[j])}, below {short_number(low)} {span}"
                " (learning rate too low?)"
            )
        elif np.all(column > high):
            warnings.append(
                f"{name}: update ratio {short_number(now[j])}, above {short_number(high)} {span}"
                " (learning rate too high?)"
            )
    return warnings
