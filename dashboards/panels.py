"""What each panel shows for a run, a step and the chosen layers: plain functions of the
cached runs (testable without a browser); :mod:`dashboards.callbacks` wires them.

The panels split by what a step move changes. :func:`run_panels` (curves, distributions
over training, gradient and update flow) changes only with the run, the layer, the
compared run or a live run's new records; a step move only moves their marker, which the
browser does itself (assets/marker.js). :func:`step_panels`, :func:`kernel_panel` and
:func:`feature_panel` change with the step; on a step move the server sends only their
changed parts (:func:`step_patch`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from dash import Patch

from dashboards import figures
from dashboards.store import CachedRun
from labkit.recording import ACTIVATION, GRADIENT, KINDS

FIGURES_OVER_TRAINING = (
    "curves",
    "hist-time-activation",
    "hist-time",
    "gradient-flow",
    "update-flow",
)
STEP_PARTS = {  # what a step move changes in each figure: trace keys, then layout keys
    "histogram": (("y",), ()),
    "kernels": (("z", "zmin", "zmax", "zmid"), ("title",)),
    "features": (("z", "zmin", "zmax", "zmid", "y"), ("title",)),
    "probs": (("y", "marker"), ("title",)),
    "probe": ((), ("title",)),
}


def clip_record(cached: CachedRun, record: object) -> int:
    """``record`` as a valid index of the run's records (a request may send anything)."""
    record = record if isinstance(record, int) and not isinstance(record, bool) else 0
    return int(np.clip(record, 0, max(cached.records - 1, 0)))


def record_at(steps: np.ndarray, step: int) -> int | None:
    """The last record at or before ``step`` (None if every record is later)."""
    index = int(np.searchsorted(np.asarray(steps), step, side="right")) - 1
    return index if index >= 0 else None


def layer_index(cached: CachedRun, key: str) -> int | None:
    """The index of the layer named ``key`` in this run (None: it has none)."""
    keys = [entry["key"] for entry in cached.run.layers]
    return keys.index(key) if key in keys else None


def other_run(cached: CachedRun, compare: CachedRun | None) -> CachedRun | None:
    """The compared run, unless it is none, has no records, or is this run itself."""
    if compare is None or compare is cached or compare.records == 0:
        return None
    return compare


def run_panels(
    cached: CachedRun, layer: int, compare: CachedRun | None, axis_mode: str, record: int
) -> tuple[list, dict]:
    """The figures over training (:data:`FIGURES_OVER_TRAINING`, in that order) and how
    they were drawn (``{figure id: [axis kind, first step, last step]}``, for the marker)."""
    if cached.records == 0:
        empty = figures.empty_figure("no completed record yet")
        return [empty] * len(FIGURES_OVER_TRAINING), {}
    run = cached.run
    other = other_run(cached, compare)
    record = clip_record(cached, record)
    steps = run.steps
    step = int(steps[record])
    lengths = [float(steps[-1])] + ([float(other.run.steps[-1])] if other else [])
    axis = figures.choose_axis(axis_mode, lengths)
    names = [entry["key"] for entry in run.layers]
    name = names[layer]
    edges = run.hist_edges
    hist = cached.hist
    l2 = run.stats_fields.index("l2")
    compare_curves = compare_norms = compare_ratios = None
    if other is not None:
        label = other.run.path.name
        compare_curves = figures.Series(label, other.metrics)
        other_names = [entry["key"] for entry in other.run.layers]
        other_l2 = other.run.stats_fields.index("l2")
        compare_norms = (label, other.run.steps, other_names, other.stats[:, :, GRADIENT, other_l2])
        compare_ratios = (label, other.run.steps, other.run.update_ratio_names, other.update_ratio)
    panels = [
        figures.training_curves(cached.metrics, step, compare_curves, axis),
        figures.histogram_over_time(
            steps, hist[:, layer, ACTIVATION], edges, step, f"{name} activations over training"
        ),
        figures.histogram_over_time(
            steps, hist[:, layer, GRADIENT], edges, step, f"{name} gradients over training"
        ),
        figures.gradient_flow(
            steps, names, cached.stats[:, :, GRADIENT, l2], step, compare=compare_norms, axis=axis
        ),
        figures.gradient_flow(
            steps,
            run.update_ratio_names,
            cached.update_ratio,
            step,
            "update / weight per parameter (healthy ≈ 1e-3)",
            figures.UPDATE_RATIO_THRESHOLDS,
            bands=figures.UPDATE_BANDS,
            compare=compare_ratios,
            axis=axis,
        ),
    ]
    first, last = float(steps[0]), float(steps[-1])
    metric_steps = [row["step"] for row in cached.metrics if "loss" in row and "kind" not in row]
    curve_span = (
        [float(metric_steps[0]), float(metric_steps[-1])] if metric_steps else [first, last]
    )
    drawn = {
        "curves": [axis.kind, *(curve_span or [first, last])],
        "hist-time-activation": ["linear", first, last],
        "hist-time": ["linear", first, last],
        "gradient-flow": [axis.kind, first, last],
        "update-flow": [axis.kind, first, last],
    }
    return panels, drawn


def _histogram(cached: CachedRun, record: int, layer: int, kind: int, other: CachedRun | None):
    run = cached.run
    name = run.layers[layer]["key"]
    what = "activations" if kind == ACTIVATION else "gradients"
    counts = cached.hist[record, layer, kind]
    compare = None
    if other is not None:
        at = record_at(other.run.steps, int(run.steps[record]))
        index = layer_index(other, name)
        same_bins = np.array_equal(other.run.hist_edges, run.hist_edges)
        if at is not None and index is not None and same_bins:
            label = f"{other.run.path.name} at step {int(other.run.steps[at]):,}"
            compare = figures.Series(label, other.hist[at, index, kind])
    mine = f"{run.path.name} at step {int(run.steps[record]):,}"
    return figures.histogram_at_step(counts, run.hist_edges, f"{name} {what}", compare, mine)


def step_panels(
    cached: CachedRun, record: int, layer: int, compare: CachedRun | None = None
) -> tuple:
    """The step's label, its two histograms (the compared run's at the same step overlaid)
    and the warnings."""
    run = cached.run
    if cached.records == 0:
        empty = figures.empty_figure("no completed record yet")
        return "no record yet", empty, empty, []
    record = clip_record(cached, record)
    other = other_run(cached, compare)
    step = int(run.steps[record])
    epoch = run.records[record]["epoch"]
    names = [entry["key"] for entry in run.layers]
    classes = [entry["class"] for entry in run.layers]
    warnings = figures.health_warnings(
        names,
        {kind: cached.stats[record, :, row] for row, kind in enumerate(KINDS)},
        classes,
        fields=run.stats_fields,
    ) + figures.update_ratio_warnings(
        run.update_ratio_names, cached.update_ratio[: record + 1], cached.records
    )
    label = f"step {step:,} · epoch {epoch} · record {record + 1}/{cached.records}"
    return (
        label,
        _histogram(cached, record, layer, ACTIVATION, other),
        _histogram(cached, record, layer, GRADIENT, other),
        warnings,
    )


def kernel_panel(cached: CachedRun, record: int, layer: int | None, mode: str):
    """A convolution's kernels at the step, or their change since the first record."""
    if layer is None or cached.records == 0:
        return figures.empty_figure("no convolution in this network")
    run = cached.run
    record = clip_record(cached, record)
    key, step = run.key(layer), int(run.steps[record])
    kernels = run.kernels(layer, step)
    if mode == "change":
        kernels = kernels - run.kernels(layer, int(run.steps[0]))
        return figures.kernel_grid(kernels, f"{key} kernels: change since the first record")
    return figures.kernel_grid(kernels, f"{key} kernels at step {step:,}")


def feature_panel(cached: CachedRun, record: int, probe: int, layer: int | None) -> tuple:
    """The probe digit, the network's probabilities for it, and a layer's feature maps."""
    if layer is None or cached.records == 0:
        empty = figures.empty_figure("no record yet")
        return empty, empty, empty
    run = cached.run
    step = int(run.steps[clip_record(cached, record)])
    probe = int(np.clip(probe, 0, len(run.probe_labels) - 1))
    label = int(run.probe_labels[probe])
    probs = run.probabilities(step)[probe]
    key = run.key(layer)
    maps = run.feature_map(layer, step)[probe]
    grid = figures.feature_map_grid(
        maps,
        f"{key} output for probe {probe} (digit {label}) at step {step:,}",
        layer_class=run.layers[layer]["class"],
        previous=run.key(layer - 1) if layer else None,
        last=layer == len(run.layers) - 1,
    )
    return (
        figures.probe_image(run.probe_images[probe], label, int(np.argmax(probs))),
        figures.probabilities_bar(probs, label),
        grid,
    )


def step_patch(figure, parts: tuple[Sequence[str], Sequence[str]]) -> Patch:
    """A :class:`dash.Patch` that turns the figure the page shows for another step of the
    same run and layer into ``figure``: only the ``parts`` (trace keys, layout keys) that
    a step changes are sent, for every trace that has them, arrays as typed arrays."""
    trace_keys, layout_keys = parts
    patch = Patch()
    for index, trace in enumerate(figure.data):
        for key in trace_keys:
            value = trace[key] if key in trace else None
            if value is not None:
                patch["data"][index][key] = figures.typed(value)
    for key in layout_keys:
        value = figure.layout[key] if key in figure.layout else None
        if value is not None:
            patch["layout"][key] = figures.typed(value)
    return patch


def only_step_moved(triggered: Mapping[str, object] | Sequence[str]) -> bool:
    """Whether the only input that changed is the step slider (``record.value``)."""
    return set(triggered) == {"record.value"}
