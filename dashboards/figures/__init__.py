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

The figures are split by what they show: :mod:`.training` (curves and histograms over
steps), :mod:`.flow` (gradient and update flow, health warnings), :mod:`.images` (one
step's arrays), :mod:`.tables` (check reports), on the look in :mod:`.style` and the
step axis two compared runs share in :mod:`.axes`.
"""

from dashboards.figures.axes import AXIS_LABELS, AXIS_MODES, LINEAR, StepAxis, choose_axis
from dashboards.figures.flow import (
    GRADIENT_BANDS,
    UPDATE_BANDS,
    gradient_flow,
    health_warnings,
    update_ratio_warnings,
)
from dashboards.figures.images import (
    feature_map_grid,
    kernel_grid,
    probabilities_bar,
    probe_image,
)
from dashboards.figures.style import (
    BAR_COLOR,
    COMPARE_COLOR,
    DEAD_FRACTION,
    DIVERGING_SCALE,
    EXPLODING_FILL,
    GRADIENT_NORM_THRESHOLDS,
    HEATMAP_MARKER_COLOR,
    INK_SCALE,
    MARKER_COLOR,
    MAX_POINTS,
    NEUTRAL_COLOR,
    RIGHT_COLOR,
    SATURATED_FRACTION,
    SEQUENTIAL_SCALE,
    SETTLING_FRACTION,
    SUSTAINED_RECORDS,
    TEMPLATE,
    UPDATE_RATIO_THRESHOLDS,
    VANISHING_FILL,
    WRONG_COLOR,
    as_floats,
    empty_figure,
    figure,
    image_axes,
    nested,
    sci,
    short_number,
    step_line,
    typed,
)
from dashboards.figures.tables import (
    GRADCHECK_COLUMNS,
    gradcheck_table,
)
from dashboards.figures.training import (
    Series,
    histogram_at_step,
    histogram_over_time,
    log_ticks,
    share_of,
    training_curves,
)

__all__ = [
    "AXIS_LABELS",
    "AXIS_MODES",
    "BAR_COLOR",
    "COMPARE_COLOR",
    "GRADIENT_BANDS",
    "LINEAR",
    "SETTLING_FRACTION",
    "SUSTAINED_RECORDS",
    "Series",
    "StepAxis",
    "UPDATE_BANDS",
    "choose_axis",
    "log_ticks",
    "share_of",
    "update_ratio_warnings",
    "DEAD_FRACTION",
    "DIVERGING_SCALE",
    "EXPLODING_FILL",
    "GRADCHECK_COLUMNS",
    "GRADIENT_NORM_THRESHOLDS",
    "INK_SCALE",
    "HEATMAP_MARKER_COLOR",
    "MARKER_COLOR",
    "MAX_POINTS",
    "NEUTRAL_COLOR",
    "RIGHT_COLOR",
    "SATURATED_FRACTION",
    "SEQUENTIAL_SCALE",
    "TEMPLATE",
    "UPDATE_RATIO_THRESHOLDS",
    "VANISHING_FILL",
    "WRONG_COLOR",
    "as_floats",
    "empty_figure",
    "feature_map_grid",
    "figure",
    "gradcheck_table",
    "gradient_flow",
    "health_warnings",
    "histogram_at_step",
    "histogram_over_time",
    "image_axes",
    "nested",
    "kernel_grid",
    "probabilities_bar",
    "probe_image",
    "sci",
    "short_number",
    "step_line",
    "training_curves",
    "typed",
]
