"""What each control does, wired to the page: the panels are :mod:`dashboards.panels`,
the address's view :mod:`dashboards.view`, and the two client-side callbacks (moving the
step marker, keeping the address) live in assets/view.js.

A step move asks the server only for what a step changes (histograms, kernels, feature
maps, probabilities, warnings: :func:`dashboards.panels.step_patch`); the figures over
training keep their data and the browser moves their marker.
"""

from __future__ import annotations

import time

from dash import ClientsideFunction, Dash, Input, Output, State, ctx, html, no_update
from dash.exceptions import PreventUpdate

from dashboards import backward_callbacks, view
from dashboards.backward import layer_options
from dashboards.failsafe import panel_callback
from dashboards.gradchecks import check_at_step, gradcheck_page, gradcheck_rows
from dashboards.panels import (
    FIGURES_OVER_TRAINING,
    STEP_PARTS,
    clip_record,
    feature_panel,
    kernel_panel,
    only_step_moved,
    record_at,
    run_panels,
    step_panels,
    step_patch,
)
from dashboards.runids import resolve_run
from dashboards.runindex import version_of
from dashboards.store import CachedRun, RunStore
from labkit.errors import LabkitError

EMPTY_CHECKS = "None yet: run one with the button above, or `labkit gradcheck --run RUN`."


def run_options(store: RunStore) -> list[dict]:
    """Dropdown options: every run with its status; a corrupt run, or a link to a run
    outside the folder, is shown, disabled."""
    return store.index.options()


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
        "backward": layer_options(cached),
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


def first_view(store: RunStore, search: object) -> tuple[str | None, str | None, dict, str]:
    """The run, compared run, wanted view and notice for the address ``search``: the run
    it names if the folder offers it, else the newest run."""
    wanted = view.parse_query(search)
    entries = store.index.refresh()
    usable = {entry.name for entry in entries if entry.usable}
    asked = wanted.get("run")
    name = asked if asked in usable else store.index.newest(entries)
    notice = ""
    if asked is not None and asked not in usable:
        notice = f"There is no run {asked!r} here to show; this is the newest run, {name}."
    compare = wanted.get("compare")
    compare = compare if compare in usable and compare != name else None
    return name, compare, {**wanted, "run": name}, notice


def apply_view(controls: dict, wanted: dict) -> dict:
    """The slider's record and the pickers' values that ``wanted`` (from the address)
    asks for, each only if this run offers it."""
    chosen = {}
    step = view.as_int(wanted.get("step"))
    if step is not None and controls["steps"]:
        at = record_at(controls["steps"], step)
        chosen["record"] = 0 if at is None else at
    layer = view.pick_layer(wanted.get("layer"), controls["layers"])
    if layer is not None:
        chosen["layer"] = chosen["maps"] = layer
        if layer in [o["value"] for o in controls["convolutions"]]:
            chosen["kernels"] = layer
    for key, options in (("kernels", controls["convolutions"]), ("maps", controls["layers"])):
        picked = view.pick_layer(wanted.get(key), options)
        if picked is not None:
            chosen[key] = picked
    probe = view.as_int(wanted.get("probe"))
    if probe is not None and probe < len(controls["probes"]):
        chosen["probe"] = probe
    backward = view.pick_backward(wanted.get("backward"), controls["backward"])
    if backward is not None:  # the backward view, open on that layer (and element)
        chosen["backward"] = backward
        index = view.as_index(wanted.get("element"))
        if isinstance(wanted.get("part"), str) and index is not None:
            chosen["element"] = {"layer": backward, "part": wanted["part"], "index": index}
    return chosen


def keep(value, options: list[dict], default):
    """``value`` if it is among ``options``' values, else ``default``."""
    return value if value in [o["value"] for o in options] else default


def register(app: Dash, store: RunStore) -> None:
    """Connect the page's controls to the functions above. Every callback that takes a run
    id resolves it with :func:`resolve_run` first; a panel's failure shows in the panel."""

    def run(name: object) -> CachedRun:
        return store.get(resolve_run(store.runs_dir, name))

    @app.callback(
        Output("run", "value"),
        Output("compare", "value"),
        Output("view", "data"),
        Output("notice", "children"),
        Input("url", "search"),
    )
    def open_view(search):
        name, compare, wanted, notice = first_view(store, search)
        return name, compare, wanted, notice

    @app.callback(
        Output("run", "options"),
        Output("compare", "options"),
        Output("runs-version", "data"),
        Input("live", "n_intervals"),
        State("runs-version", "data"),
        prevent_initial_call=True,
    )
    def refresh_runs(_, shown_version):
        options = run_options(store)
        version = version_of(options)
        if version == shown_version:
            raise PreventUpdate  # the page has this list: send nothing
        return options, options, version

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
        Output("axis", "value"),
        Output("backward-layer", "options"),
        Output("backward-layer", "value"),
        Output("backward-element", "data"),
        Output("view", "data", allow_duplicate=True),
        Input("run", "value"),
        Input("live", "n_intervals"),
        State("view", "data"),
        State("record", "value"),
        State("records", "data"),
        State("layer", "value"),
        State("kernel-layer", "value"),
        State("feature-layer", "value"),
        State("probe", "value"),
        State("backward-layer", "value"),
        prevent_initial_call=True,  # the run is chosen by open_view, from the address
    )
    def choose_run(
        name, _, wanted, record, shown_steps, layer, kernel_layer, feature_layer, probe, backward
    ):
        if name is None:
            return (no_update,) * 16
        name = resolve_run(store.runs_dir, name)
        live = ctx.triggered_id == "live"
        if live and len(store.get(name).run.steps) == len(shown_steps or []):
            return (no_update,) * 16  # nothing new: leave every panel alone
        shown = len(shown_steps) if live and shown_steps else None
        controls = run_controls(store, name, record if live else None, shown)
        layers, convs = controls["layers"], controls["convolutions"]
        first = layers[0]["value"] if layers else None
        applying = not live and isinstance(wanted, dict) and wanted.get("run") == name
        chosen = apply_view(controls, wanted) if applying else {}  # the address's view, once
        axis = view.axis_mode(wanted.get("axis")) if applying else None
        return (
            controls["max"],
            chosen.get("record", controls["record"]),
            controls["steps"],
            layers,
            chosen.get("layer", keep(layer, layers, first)),
            convs,
            chosen.get("kernels", keep(kernel_layer, convs, convs[0]["value"] if convs else None)),
            layers,
            chosen.get("maps", keep(feature_layer, layers, first)),
            controls["probes"],
            chosen.get("probe", keep(probe, controls["probes"], 0)),
            axis or no_update,
            controls["backward"],
            chosen.get("backward", keep(backward, controls["backward"], None)),
            chosen.get("element", no_update),
            None if applying else no_update,  # the address's view is applied once
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
        *(Output(figure, "figure") for figure in FIGURES_OVER_TRAINING),
        Output("drawn", "data"),
        Input("run", "value"),
        Input("layer", "value"),
        Input("compare", "value"),
        Input("axis", "value"),
        Input("records", "data"),
        State("record", "value"),
    )
    def show_training(name, layer, compare, axis, _, record):
        if name is None or layer is None:
            return (no_update,) * (len(FIGURES_OVER_TRAINING) + 1)
        cached = run(name)
        other = run(compare) if compare is not None else None
        panels, drawn = run_panels(cached, layer, other, axis or "auto", record or 0)
        return (*panels, {**drawn, "at": time.time_ns()})  # "at": always a new value

    app.clientside_callback(
        ClientsideFunction("labkit", "moveMarkers"),
        *(Output(figure, "figure", allow_duplicate=True) for figure in FIGURES_OVER_TRAINING),
        Input("record", "value"),
        Input("drawn", "data"),
        State("records", "data"),
        *(State(figure, "figure") for figure in FIGURES_OVER_TRAINING),
        prevent_initial_call=True,
    )

    app.clientside_callback(
        ClientsideFunction("labkit", "keepAddress"),
        Output("address", "data"),
        Input("run", "value"),
        Input("compare", "value"),
        Input("record", "value"),
        Input("layer", "value"),
        Input("kernel-layer", "value"),
        Input("feature-layer", "value"),
        Input("probe", "value"),
        Input("axis", "value"),
        Input("backward-layer", "value"),
        Input("backward-element", "data"),
        State("records", "data"),
        State("layer", "options"),
        prevent_initial_call=True,
    )

    @panel_callback(
        app,
        Output("step-label", "children"),
        Output("hist-activation", "figure"),
        Output("hist-gradient", "figure"),
        Output("warnings", "children"),
        Input("run", "value"),
        Input("record", "value"),
        Input("layer", "value"),
        Input("compare", "value"),
        Input("records", "data"),
        blank={"warnings.children": []},
    )
    def show_step(name, record, layer, compare, _):
        if name is None or layer is None:
            return (no_update,) * 4
        cached = run(name)
        other = run(compare) if compare is not None else None
        label, activation, gradient, warnings = step_panels(cached, record, layer, other)
        if only_step_moved(ctx.triggered_prop_ids):
            activation = step_patch(activation, STEP_PARTS["histogram"])
            gradient = step_patch(gradient, STEP_PARTS["histogram"])
        return label, activation, gradient, [html_line(text) for text in warnings]

    @panel_callback(
        app,
        Output("kernels", "figure"),
        Input("run", "value"),
        Input("record", "value"),
        Input("kernel-layer", "value"),
        Input("kernel-mode", "value"),
        Input("records", "data"),
    )
    def show_kernels(name, record, layer, mode, _):
        if name is None:
            return no_update
        panel = kernel_panel(run(name), record, layer, mode)
        if only_step_moved(ctx.triggered_prop_ids):
            return step_patch(panel, STEP_PARTS["kernels"])
        return panel

    @panel_callback(
        app,
        Output("probe-image", "figure"),
        Output("probs", "figure"),
        Output("features", "figure"),
        Input("run", "value"),
        Input("record", "value"),
        Input("probe", "value"),
        Input("feature-layer", "value"),
        Input("records", "data"),
    )
    def show_features(name, record, probe, layer, _):
        if name is None:
            return (no_update,) * 3
        image, probs, maps = feature_panel(run(name), record, probe or 0, layer)
        if only_step_moved(ctx.triggered_prop_ids):
            return (
                step_patch(image, STEP_PARTS["probe"]),
                step_patch(probs, STEP_PARTS["probs"]),
                step_patch(maps, STEP_PARTS["features"]),
            )
        return image, probs, maps

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
            status = check_at_step(cached, clip_record(cached, record), store.model_for(cached.run))
        except LabkitError as exc:  # a check already running, a layer the code lacks
            return str(exc), no_update
        return status, time.time_ns()  # a new value in every server process

    @panel_callback(
        app,
        Output("gradchecks", "data"),
        Output("gradchecks", "page_count"),
        Output("gradchecks", "page_current"),
        Output("gradchecks-empty", "children"),
        Input("run", "value"),
        Input("gradchecks", "page_current"),
        Input("gradchecks", "page_size"),
        Input("gradchecks", "sort_by"),
        Input("checks-stored", "data"),
        blank={"gradchecks.data": []},
    )
    def show_gradchecks(name, page, size, sort_by, _):
        if name is None:
            return no_update, no_update, no_update, no_update
        if ctx.triggered_id in ("run", "checks-stored"):
            page = 0  # another run, or a new report (newest first): the first page
        rows = gradcheck_rows(run(name))
        return (*gradcheck_page(rows, page, size, sort_by), "" if rows else EMPTY_CHECKS)

    backward_callbacks.register(app, store, run)


def html_line(text: str) -> html.Div:
    """One warning as a line of the warnings panel."""
    return html.Div(f"⚠ {text}")
