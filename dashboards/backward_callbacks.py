"""The backward view's callbacks (:mod:`dashboards.backward` has its panels).

Its cursor ``backward-at`` (run, step, probe, layer) is made in the browser
(assets/view.js ``backwardCursor``) and only while a layer is chosen: the view costs a
step move nothing until it is opened. Then:

- :func:`show` draws the layer's parts, the formula-vs-recorded line and the chosen
  element's chain rule when the cursor changes (a move of the step alone sends only the
  parts' new values, as Dash ``Patch``es); it writes ``backward-drawn``, the cursor the
  page's figures are of;
- a click on a figure chooses an element: its chain rule, and the frame moved to it
  (patches of the figures' shapes), without drawing the parts again;
- the verify button takes the element's finite difference now (10–50 ms);
- the saliency strip changes with the step and the probe, not with the layer.
"""

from __future__ import annotations

from collections.abc import Callable

from dash import ClientsideFunction, Dash, Input, Output, Patch, State, ctx, no_update
from dash.exceptions import PreventUpdate

from dashboards import backward
from dashboards.failsafe import panel_callback
from dashboards.figures import empty_figure
from dashboards.figures.backward import mark
from dashboards.layout import PANEL
from dashboards.store import CachedRun, RunStore
from labkit import explain
from labkit.errors import LabkitError

SLOTS = range(backward.SLOTS)
SHOWN = {"width": "calc(25% - 22px)", "display": "block"}  # four a row (PANEL's 22 px)
HIDDEN = {"display": "none"}
EMPTY = empty_figure("")  # an unused slot's (hidden)
FIGURES = [Output(f"backward-part-{i}", "figure") for i in SLOTS]
STYLES = [Output(f"backward-slot-{i}", "style") for i in SLOTS]


def slot_style(shown: bool, height: int) -> dict:
    return {**PANEL, **SHOWN, "height": f"{height}px"} if shown else HIDDEN


def element_data(layer, choice) -> dict | None:
    """The chosen element as the page keeps it (and the address: ``part``, ``element``)."""
    if choice is None:
        return None
    part, index = choice
    return {"layer": layer, "part": part, "index": [int(i) for i in index]}


def register(app: Dash, store: RunStore, run: Callable[[object], CachedRun]) -> None:
    """Connect the backward view's controls; ``run`` resolves a run id as the other
    callbacks do (:func:`dashboards.runids.resolve_run`)."""

    app.clientside_callback(
        ClientsideFunction("labkit", "backwardCursor"),
        Output("backward-at", "data"),
        Input("run", "value"),
        Input("record", "value"),
        Input("probe", "value"),
        Input("backward-layer", "value"),
        State("records", "data"),
        prevent_initial_call=True,
    )

    @panel_callback(
        app,
        *FIGURES,
        *STYLES,
        Output("backward-body", "style"),
        Output("backward-title", "children"),
        Output("backward-agreement", "children"),
        Output("backward-rule", "children"),
        Output("backward-element", "data", allow_duplicate=True),
        Output("backward-verify", "disabled"),
        Output("backward-verified", "children"),
        Output("backward-drawn", "data"),
        Input("backward-at", "data"),
        State("backward-element", "data"),
        State("backward-drawn", "data"),
        prevent_initial_call=True,
        blank={f"backward-slot-{i}.style": HIDDEN for i in SLOTS},
    )
    def show(at, element, drawn):
        if not isinstance(at, dict):
            raise PreventUpdate
        closed = at.get("layer") is None
        if closed or at.get("run") is None:
            return (no_update,) * len(FIGURES) + closed_view("")
        cached = run(at["run"])
        try:
            model = store.model_for(cached.run)
            shown = backward.backward_view(cached, at, element, model, drawn)
        except LabkitError as exc:  # an older run without the probes' gradients, no record
            notice = str(exc).replace(str(cached.run.path), str(at["run"]))  # not the server's
            return (no_update,) * len(FIGURES) + closed_view(notice)
        step, probe, _ = backward.cursor(cached, at)
        now = {"run": at["run"], "step": step, "probe": probe, "layer": at["layer"]}
        unused = no_update if shown.patched else EMPTY  # the step alone moved: as they are
        figures = [shown.figures[slot] if slot < len(shown.figures) else unused for slot in SLOTS]
        return (
            *figures,
            *(slot_style(slot < len(shown.figures), shown.height) for slot in SLOTS),
            {"display": "block"},
            shown.title,
            shown.agreement,
            shown.rule,
            element_data(at["layer"], shown.choice),
            not shown.verifiable,
            "",
            {**now, "parts": shown.parts},
        )

    @panel_callback(
        app,
        Output("backward-element", "data", allow_duplicate=True),
        Output("backward-rule", "children", allow_duplicate=True),
        *(Output(f"backward-part-{i}", "figure", allow_duplicate=True) for i in SLOTS),
        Output("backward-verify", "disabled", allow_duplicate=True),
        Output("backward-verified", "children", allow_duplicate=True),
        *(Input(f"backward-part-{i}", "clickData") for i in SLOTS),
        State("backward-drawn", "data"),
        prevent_initial_call=True,
    )
    def choose(*args):
        *clicks, drawn = args
        slot = int(str(ctx.triggered_id).rsplit("-", 1)[-1])
        if not isinstance(drawn, dict) or drawn.get("run") is None:
            raise PreventUpdate
        cached = run(drawn["run"])
        model = store.model_for(cached.run)
        explained, choice = backward.click_choice(cached, drawn, slot, clicks[slot], model)
        if choice is None:
            raise PreventUpdate  # a gap between tiles, a tile's head
        part, index = choice
        frames = []
        for key in list(explained.backward.parts)[: backward.SLOTS]:  # as drawn
            patch = Patch()
            shape = explained.backward.parts[key].values.shape
            patch["layout"]["shapes"] = mark(shape, index) if key == part else []
            frames.append(patch)
        frames += [no_update] * (backward.SLOTS - len(frames))
        return (
            element_data(drawn["layer"], choice),
            backward.rule_panel(explained, part, index),
            *frames,
            not explain.verifiable(explained, part),
            "",
        )

    @panel_callback(
        app,
        Output("backward-verified", "children", allow_duplicate=True),
        Input("backward-verify", "n_clicks"),
        State("backward-drawn", "data"),
        State("backward-element", "data"),
        prevent_initial_call=True,
        running=[(Output("backward-verify", "disabled"), True, False)],
    )
    def check(_, drawn, element):
        if not isinstance(drawn, dict) or drawn.get("run") is None:
            raise PreventUpdate
        cached = run(drawn["run"])
        return backward.verify_panel(cached, drawn, element, store.model_for(cached.run))

    @panel_callback(
        app,
        Output("backward-saliency", "figure"),
        Output("backward-strip", "data"),
        Input("backward-at", "data"),
        State("backward-strip", "data"),
        prevent_initial_call=True,
    )
    def show_saliency(at, strip):
        if not isinstance(at, dict) or at.get("layer") is None or at.get("run") is None:
            raise PreventUpdate
        cached = run(at["run"])
        if not cached.run.has_backward or len(cached.run) == 0:
            return empty_figure("no saliency recorded"), None
        step, probe, _ = backward.cursor(cached, {**at, "layer": explain.LOSS})
        now = {"run": at["run"], "step": step, "probe": probe}
        if now == strip:
            raise PreventUpdate  # another layer: the same strip
        return backward.saliency_panel(cached, at), now


def closed_view(notice: str) -> tuple:
    """Everything but the figures for a view that is closed (no layer chosen) or cannot
    show (``notice``: one line, such as a run recorded without the probes' gradients)."""
    return (
        *(HIDDEN for _ in SLOTS),
        HIDDEN,
        notice,
        "",
        [],
        no_update,
        True,
        "",
        None,
    )
