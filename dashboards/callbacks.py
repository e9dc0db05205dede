"""What each control does: plain functions of the inputs (testable without a browser),
wired to the page by :func:`register`."""

from __future__ import annotations

import itertools

import numpy as np
from dash import Dash, Input, Output, State, ctx, html, no_update

from dashboards import figures
from dashboards.failsafe import panel_callback
from dashboards.gradchecks import check_at_step, gradcheck_page, gradcheck_rows
from dashboards.runids import leads_out, resolve_run
from dashboards.store import CachedRun, RunStore
from labkit.errors import LabkitError
from labkit.recording import ACTIVATION, GRADIENT, KINDS


def run_options(store: RunStore) -> list[dict]:
    """Dropdown options: every run with its status; a corrupt run, or a link to a run
    outside the folder, is shown, disabled."""
    options = []
    for summary in store.summaries():
        name = summary.path.name
        if reason := leads_out(store.runs_dir, name):
            options.append({"label": f"{name} — {reason}", "value": name, "disabled": True})
        elif summary.error is not None:
            options.append(
                {"label": f"{name} — corrupt: {summary.error}", "value": name, "disabled": True}
            )
        else:
            made = f", --model {summary.model}" if summary.model else ""
            options.append({"label": f"{name} ({summary.status}{made})", "value": name})
    return options


def run_controls(
    store: RunStore, name: str | None, current: int | None, shown: int | None = None
) -> dict:
    """Slider range, layer choices and probe choices for a run.

    ``current`` is the slider's record and ``shown`` how many records the page knew of:
    a slider on the last of them follows a live run to its new end; anywhere else it
    stays put. ``current=None`` (a newly chosen run) starts at the end.
    """
    cached = store.get(name)
    run = cached.run
    steps = [int(s) for s in run.steps]
    last = max(len(steps) - 1, 0)
    following = current is None or shown is None or current >= shown - 1
    layers = [{"label": e["key"], "value": i} for i, e in enumerate(run.layers)]
    convs = [layers[i] for i in run.convolutions]
    labels = run.probe_labels
    probes = [{"label": f"probe {i}: digit {int(d)}", "value": i} for i, d in enumerate(labels)]
    return {
        "steps": steps,
        "max": last,
        "record": last if following else min(current, last),
        "layers": layers,
        "convolutions": convs,
        "probes": probes,
    }


def next_record(trigger: str | None, record: int, steps: list[int], playing: bool) -> int:
    """Where back, forward and the play timer move the slider (play wraps to the start)."""
    last = max(len(steps) - 1, 0)
    if trigger == "back":
        return max(record - 1, 0)
    if trigger == "forward":
        return min(record + 1, last)
    if trigger == "player" and playing:
        return 0 if record >= last else record + 1
    return record


def step_panels(cached: CachedRun, record: int, layer: int, compare: CachedRun | None) -> tuple:
    """Label, curves, histograms, their distributions over time, gradient flow, update flow
    and warnings."""
    run = cached.run
    if cached.records == 0:
        empty = figures.empty_figure("no completed record yet")
        return ("no record yet",) + (empty,) * 7 + ([],)
    record = int(np.clip(record, 0, cached.records - 1))
    steps = run.steps
    step = int(steps[record])
    epoch = run.records[record]["epoch"]
    names = [e["key"] for e in run.layers]
    classes = [e["class"] for e in run.layers]
    edges, fields = run.hist_edges, run.stats_fields
    curves = figures.training_curves(cached.metrics, step)
    if compare is not None and compare is not cached:
        for trace in figures.training_curves(compare.metrics, None).data:
            trace.name = f"{trace.name} ({compare.run.path.name})"
            trace.line = {"dash": "dot"}
            curves.add_trace(trace)
    hist = cached.hist
    activation = figures.histogram_at_step(
        hist[record, layer, ACTIVATION], edges, f"{names[layer]} activations"
    )
    gradient = figures.histogram_at_step(
        hist[record, layer, GRADIENT], edges, f"{names[layer]} gradients"
    )
    name = names[layer]
    activations_over_time = figures.histogram_over_time(
        steps, hist[:, layer, ACTIVATION], edges, step, title=f"{name} activations over training"
    )
    over_time = figures.histogram_over_time(
        steps, hist[:, layer, GRADIENT], edges, step, title=f"{name} gradients over training"
    )
    l2 = fields.index("l2")
    flow = figures.gradient_flow(steps, names, cached.stats[:, :, GRADIENT, l2], step)
    ratio_names = run.update_ratio_names
    updates = figures.gradient_flow(
        steps,
        ratio_names,
        cached.update_ratio,
        step,
        title="update / weight ratio per parameter",
        thresholds=figures.UPDATE_RATIO_THRESHOLDS,
    )
    warnings = figures.health_warnings(
        names,
        {kind: cached.stats[record, :, row] for row, kind in enumerate(KINDS)},
        classes,
        fields=fields,
        update_ratios=dict(zip(ratio_names, cached.update_ratio[record].tolist(), strict=True)),
    )
    label = f"step {step:,} · epoch {epoch} · record {record + 1}/{cached.records}"
    return (
        label,
        curves,
        activation,
        gradient,
        activations_over_time,
        over_time,
        flow,
        updates,
        warnings,
    )


def kernel_panel(cached: CachedRun, record: int, layer: int | None, mode: str):
    """A convolution's kernels at the step, or their change since the first record."""
    if layer is None or cached.records == 0:
        return figures.empty_figure("no convolution in this network")
    run = cached.run
    record = int(np.clip(record, 0, cached.records - 1))
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
    step = int(run.steps[np.clip(record, 0, cached.records - 1)])
    label = int(run.probe_labels[probe])
    probs = run.probabilities(step)[probe]
    key = run.key(layer)
    maps = run.feature_map(layer, step)[probe]
    return (
        figures.probe_image(run.probe_images[probe], label, int(np.argmax(probs))),
        figures.probabilities_bar(probs, label),
        figures.feature_map_grid(maps, f"{key} output for probe {probe}"),
    )


def register(app: Dash, store: RunStore) -> None:
    """Connect the page's controls to the functions above. Every callback that takes a run
    id resolves it with :func:`resolve_run` first; a panel's failure shows in the panel."""

    def run(name: object) -> CachedRun:
        return store.get(resolve_run(store.runs_dir, name))

    @app.callback(
        Output("run", "options"),
        Output("compare", "options"),
        Input("live", "n_intervals"),
    )
    def refresh_runs(_):
        options = run_options(store)
        return options, options

    @panel_callback(
        app,
        Output("record", "max"),
        Output("record", "value"),
        Output("records", "data"),
        Output("layer", "options"),
        Output("layer", "value"),
        Output("kernel-layer", "options"),
        Output("kernel-layer", "value"),
        Output("feature-layer", "options"),
        Output("feature-layer", "value"),
        Output("probe", "options"),
        Output("probe", "value"),
        Input("run", "value"),
        Input("live", "n_intervals"),
        State("record", "value"),
        State("records", "data"),
        State("layer", "value"),
        State("kernel-layer", "value"),
        State("feature-layer", "value"),
        State("probe", "value"),
    )
    def choose_run(name, _, record, shown_steps, layer, kernel_layer, feature_layer, probe):
        if name is None:
            return (no_update,) * 11
        name = resolve_run(store.runs_dir, name)
        live = ctx.triggered_id == "live"
        if live and len(store.get(name).run.steps) == len(shown_steps or []):
            return (no_update,) * 11  # nothing new: leave every panel alone
        shown = len(shown_steps) if live and shown_steps else None
        controls = run_controls(store, name, record if live else None, shown)
        convs = [o["value"] for o in controls["convolutions"]]
        layers = [o["value"] for o in controls["layers"]]
        return (
            controls["max"],
            controls["record"],
            controls["steps"],
            controls["layers"],
            layer if layer in layers else (layers[0] if layers else None),
            controls["convolutions"],
            kernel_layer if kernel_layer in convs else (convs[0] if convs else None),
            controls["layers"],
            feature_layer if feature_layer in layers else (layers[0] if layers else None),
            controls["probes"],
            probe if probe in range(len(controls["probes"])) else 0,
        )

    @app.callback(
        Output("player", "disabled"),
        Output("play", "children"),
        Input("play", "n_clicks"),
        State("player", "disabled"),
        prevent_initial_call=True,
    )
    def toggle_play(_, disabled):
        return (False, "❚❚ pause") if disabled else (True, "▶ play")

    @app.callback(
        Output("record", "value", allow_duplicate=True),
        Input("back", "n_clicks"),
        Input("forward", "n_clicks"),
        Input("player", "n_intervals"),
        State("record", "value"),
        State("records", "data"),
        State("player", "disabled"),
        prevent_initial_call=True,
    )
    def move(_, __, ___, record, steps, paused):
        return next_record(ctx.triggered_id, record or 0, steps or [], not paused)

    @panel_callback(
        app,
        Output("step-label", "children"),
        Output("curves", "figure"),
        Output("hist-activation", "figure"),
        Output("hist-gradient", "figure"),
        Output("hist-time-activation", "figure"),
        Output("hist-time", "figure"),
        Output("gradient-flow", "figure"),
        Output("update-flow", "figure"),
        Output("warnings", "children"),
        Input("run", "value"),
        Input("record", "value"),
        Input("layer", "value"),
        Input("compare", "value"),
        blank={"warnings.children": []},
    )
    def show_step(name, record, layer, compare):
        if name is None or layer is None:
            return (no_update,) * 9
        cached = run(name)
        other = run(compare) if compare is not None else None
        outputs = step_panels(cached, record or 0, layer, other)
        return (*outputs[:8], [html_line(text) for text in outputs[8]])

    @panel_callback(
        app,
        Output("kernels", "figure"),
        Input("run", "value"),
        Input("record", "value"),
        Input("kernel-layer", "value"),
        Input("kernel-mode", "value"),
    )
    def show_kernels(name, record, layer, mode):
        if name is None:
            return no_update
        return kernel_panel(run(name), record or 0, layer, mode)

    @panel_callback(
        app,
        Output("probe-image", "figure"),
        Output("probs", "figure"),
        Output("features", "figure"),
        Input("run", "value"),
        Input("record", "value"),
        Input("probe", "value"),
        Input("feature-layer", "value"),
    )
    def show_features(name, record, probe, layer):
        if name is None:
            return (no_update,) * 3
        return feature_panel(run(name), record or 0, probe or 0, layer)

    stored = itertools.count(1)  # a new value for "checks-stored" after each check

    @panel_callback(
        app,
        Output("check-status", "children"),
        Output("checks-stored", "data"),
        Input("run", "value"),
        Input("run-check", "n_clicks"),
        State("record", "value"),
        running=[(Output("run-check", "disabled"), True, False)],
    )
    def check_gradients(name, _, record):
        if name is None:
            return no_update, no_update
        cached = run(name)
        if ctx.triggered_id != "run-check":
            return "", no_update  # a newly chosen run: no status yet
        try:
            status = check_at_step(cached, int(record or 0), store.model_for(cached.run))
        except LabkitError as exc:  # a check already running, a layer the code lacks
            return str(exc), no_update
        return status, next(stored)

    @panel_callback(
        app,
        Output("gradchecks", "data"),
        Output("gradchecks", "page_count"),
        Output("gradchecks", "page_current"),
        Input("run", "value"),
        Input("gradchecks", "page_current"),
        Input("gradchecks", "page_size"),
        Input("gradchecks", "sort_by"),
        Input("checks-stored", "data"),
        blank={"gradchecks.data": []},
    )
    def show_gradchecks(name, page, size, sort_by, _):
        if name is None:
            return no_update, no_update, no_update
        if ctx.triggered_id in ("run", "checks-stored"):
            page = 0  # another run, or a new report (newest first): the first page
        return gradcheck_page(gradcheck_rows(run(name)), page, size, sort_by)


def html_line(text: str) -> html.Div:
    """One warning as a line of the warnings panel."""
    return html.Div(f"⚠ {text}")
