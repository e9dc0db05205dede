"""The dashboard's look: colours, scales, thresholds, the plotly template, and small
helpers every figure module uses."""

from __future__ import annotations

import base64

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

MAX_POINTS = 2_000  # per-step curves are thinned by striding to about this many points
GRADIENT_NORM_THRESHOLDS = (1e-7, 1e2)  # below: vanishing, above: exploding
UPDATE_RATIO_THRESHOLDS = (1e-4, 1e-2)  # |delta p| / |p| per step: ~1e-3 is healthy (cs231n)
SUSTAINED_RECORDS = 10  # an update-ratio warning needs this many records beyond a threshold
SETTLING_FRACTION = 0.05  # ...after the first 5% of the records (Adam's first steps are large)
DEAD_FRACTION = 0.9  # a ReLU with more exact zeros than this is flagged (MNIST background
# alone makes 60-80% of a healthy ReLU's outputs zero)
SATURATED_FRACTION = 0.3  # a sigmoid/tanh with more saturated outputs than this is flagged

MARKER_COLOR = "#2a3f5f"
HEATMAP_MARKER_COLOR = "#ffd166"  # the marker over a distribution's dark blue heatmap
RIGHT_COLOR = "#2ca02c"
WRONG_COLOR = "#EF553B"
NEUTRAL_COLOR = "#aab4c3"
BAR_COLOR = "#636efa"
COMPARE_COLOR = "#FFA15A"  # the compared run's bars
VANISHING_FILL = "rgba(99, 110, 250, 0.12)"
EXPLODING_FILL = "rgba(239, 85, 59, 0.12)"
DIVERGING_SCALE = "RdBu_r"  # negative blue, zero white, positive red
SEQUENTIAL_SCALE = "Viridis"
INK_SCALE = [[0.0, "white"], [1.0, "black"]]  # a digit as dark ink on white paper


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


# Every plotly property whose own name has a "_" (found by walking plotly.graph_objs).
UNDERSCORED = frozenset(
    {"copy_ystyle", "copy_zstyle", "error_x", "error_y", "error_z", "paper_bgcolor", "plot_bgcolor"}
)


def nested(value):
    """Plotly's "magic underscores" spelled out: ``{"title_text": "a"}`` ->
    ``{"title": {"text": "a"}}``, at any depth (what validation would do; plotly.js knows
    only the nested form). Dicts are copied; arrays and other values are kept as they are."""
    if isinstance(value, list):
        if not any(isinstance(item, dict | list) for item in value[:1]):
            return value  # numbers or text (a long list costs nothing)
        return [nested(item) for item in value]
    if not isinstance(value, dict):
        return value
    result: dict = {}
    for key, item in value.items():
        item = nested(item)
        if "_" in key and key not in UNDERSCORED and not key.startswith("_"):
            head, rest = key.split("_", 1)
            into = result.setdefault(head, {})
            if isinstance(into, dict):
                into.update(nested({rest: item}))
                continue
        if isinstance(item, dict) and isinstance(result.get(key), dict):
            result[key].update(item)
        else:
            result[key] = item
    return result


TYPED = {"f8", "f4", "i4", "u4", "i2", "u2", "i1", "u1"}  # plotly.js's typed array dtypes


def typed(value):
    """``value`` as plotly.js receives it: a numeric array as a typed array
    (``{"dtype", "bdata", "shape"}``, base64: a quarter of the JSON of its numbers), a
    plotly object as its dict; anything else as it is."""
    if hasattr(value, "to_plotly_json"):
        return typed(value.to_plotly_json())
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiu" and value.size:
        little = value.astype(value.dtype.newbyteorder("<"), copy=False)
        code = f"{little.dtype.kind}{little.dtype.itemsize}"
        if code in TYPED:
            spec = {
                "dtype": code,
                "bdata": base64.b64encode(np.ascontiguousarray(little).tobytes()).decode(),
            }
            if value.ndim > 1:  # as plotly.py writes them: a shape only for 2-D and up
                spec["shape"] = ", ".join(str(n) for n in value.shape)
            return spec
    return value


def figure(data: list, title: str, **layout) -> go.Figure:
    """A figure in the dashboard's look, built without plotly's validation (~20 ms a
    figure, most of a panel's server time): the tests validate every figure instead, and
    :func:`nested` does the one thing of validation plotly.js relies on."""
    return go.Figure(
        data=nested(data),
        layout={"template": TEMPLATE, **nested({"title_text": title, **layout})},
        _validate=False,
    )


def step_line(
    step: float | None, xref: str = "x", x: float | None = None, right: bool = False
) -> list[dict]:
    """The current-step marker as a layout shape (empty when there is no current step).

    It is always the figure's FIRST shape: the page moves it in the browser (assets/
    marker.js) without asking the server. ``x`` is where it is drawn when that is not the
    step itself (a "% of the run" axis); ``right`` puts its label left of the line, for a
    marker in the right half, where a label to its right would be cut off.
    """
    if step is None:
        return []
    position = step if x is None else x
    return [
        {
            "type": "line",
            "xref": xref,
            "yref": "paper",
            "x0": position,
            "x1": position,
            "y0": 0,
            "y1": 1,
            "line": {"color": MARKER_COLOR, "width": 1.5, "dash": "dot"},
            "label": {
                "text": f"step {step:,}",
                "textposition": "end",
                "textangle": 0,
                "xanchor": "right" if right else "left",
                "yanchor": "top",
                "padding": 4,
                "font": {"size": 10, "color": MARKER_COLOR},
            },
        }
    ]


def short_number(value: float | None, digits: int = 2) -> str:
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


def sci(value: float | None) -> str:
    """An error in a table: ``1.23e-10`` (as ``labkit gradcheck`` prints it), ``0`` for 0."""
    if value is None:
        return "non-finite"
    return "0" if value == 0 else f"{value:.2e}"


def as_floats(values) -> np.ndarray:
    """``values`` as a floating array, keeping float32/float64 as they are."""
    values = np.asarray(values)
    return values if values.dtype.kind == "f" else values.astype(np.float64)


def image_axes(rows: int, columns: int) -> dict:
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


def empty_figure(message: str) -> go.Figure:
    """A blank panel that says ``message`` (no run, no record, nothing recorded)."""
    return figure(
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
