"""The page: a run picker, the step player, and one panel per view."""

from __future__ import annotations

from dash import dash_table, dcc, html

from dashboards.backward import SLOTS
from dashboards.figures import AXIS_LABELS, AXIS_MODES, GRADCHECK_COLUMNS

PANEL = {"border": "1px solid #e3e8ef", "borderRadius": "6px", "padding": "6px", "margin": "4px"}
ROW = {"display": "flex", "flexWrap": "wrap"}


def graph(id: str, height: int = 300, width: str = "48%") -> html.Div:
    return html.Div(
        dcc.Graph(id=id, style={"height": f"{height}px"}, config={"displaylogo": False}),
        style={**PANEL, "width": width},
    )


def empty_page(runs_dir: str) -> html.Div:
    """What an empty or missing runs folder shows."""
    return html.Div(
        [
            html.H2("labkit — no runs yet"),
            html.P(f"There is no recorded run in {runs_dir}."),
            html.P("Make one, then reload this page:"),
            html.Pre(f"labkit train --out {runs_dir}/my-first-run"),
        ],
        id="empty-page",
        style={"fontFamily": "sans-serif", "margin": "40px"},
    )


def labelled(label: str, control, width: str = "32%") -> html.Div:
    """A control with its label above it."""
    return html.Div([html.Label(label), control], style={"width": width, "margin": "4px"})


def page(run_options: list[dict], runs_version: str) -> html.Div:
    """The dashboard for a folder that holds at least one run. Which run, step, layer and
    probe it shows come from the address (``?run=&step=&layer=&probe=``, see
    :mod:`dashboards.view`), read once the page has loaded."""
    state = [
        dcc.Location(id="url", refresh=False),
        dcc.Store(id="view"),  # the view the address asks for, until the run applies it
        dcc.Store(id="runs-version", data=runs_version),
        dcc.Store(id="drawn"),  # how the figures over training were drawn: marker.js
        dcc.Store(id="address"),  # written by the address-keeping client-side callback
    ]
    controls = html.Div(
        [
            labelled("run", dcc.Dropdown(run_options, None, id="run", clearable=False)),
            labelled(
                "compare with",
                dcc.Dropdown(run_options, None, id="compare", placeholder="(none)"),
                "22%",
            ),
            labelled(
                "step axis",
                dcc.RadioItems(
                    [{"label": AXIS_LABELS[mode], "value": mode} for mode in AXIS_MODES],
                    "auto",
                    id="axis",
                    inline=True,
                    inputStyle={"marginRight": "3px"},
                    labelStyle={"marginRight": "8px"},
                ),
                "20%",
            ),
        ],
        style=ROW,
    )
    warnings = html.Div(
        [
            html.Div(id="notice", style={"color": "#7f5a00"}),
            html.Div(id="warnings", style={"color": "#b03a2e"}),
        ],
        style={"margin": "0 8px"},
    )
    player = html.Div(
        [
            html.Button("◀", id="back", title="previous record (←)"),
            html.Button("▶ play", id="play", title="play / pause (space)"),
            html.Button("▶", id="forward", title="next record (→)"),
            html.Span(id="step-label", style={"margin": "0 12px", "fontWeight": "bold"}),
            html.Div(
                dcc.Slider(
                    0,
                    0,
                    1,
                    value=0,
                    id="record",
                    marks=None,
                    updatemode="drag",
                    allow_direct_input=False,  # its box showed the 0-based index
                ),
                style={"flex": "1"},
            ),
            dcc.Interval(id="player", interval=500, disabled=True),
            dcc.Interval(id="live", interval=3000),
            dcc.Store(id="records"),
        ],
        style={**ROW, "alignItems": "center", **PANEL},
    )
    layer_picker = labelled(
        "layer (histograms)", dcc.Dropdown([], None, id="layer", clearable=False), "30%"
    )
    kernels = html.Div(
        [
            html.Div(
                [
                    html.Label("convolution"),
                    dcc.Dropdown([], None, id="kernel-layer", clearable=False),
                    dcc.RadioItems(
                        [
                            {"label": "weights", "value": "weights"},
                            {"label": "change since the first record", "value": "change"},
                        ],
                        "weights",
                        id="kernel-mode",
                        inline=True,
                    ),
                ]
            ),
            dcc.Graph(id="kernels", style={"height": "420px"}),
        ],
        style={**PANEL, "width": "48%"},
    )
    features = html.Div(
        [
            html.Div(
                [
                    labelled(
                        "probe digit", dcc.Dropdown([], 0, id="probe", clearable=False), "40%"
                    ),
                    labelled(
                        "layer (its output for the probe)",
                        dcc.Dropdown([], None, id="feature-layer", clearable=False),
                        "55%",
                    ),
                ],
                style=ROW,
            ),
            html.Div(
                [
                    dcc.Graph(
                        id="probe-image",
                        style={"height": "220px", "width": "30%"},
                        config={"displayModeBar": False},
                    ),
                    dcc.Graph(
                        id="probs",
                        style={"height": "220px", "width": "70%"},
                        config={"displayModeBar": False},
                    ),
                ],
                style=ROW,
            ),
            dcc.Graph(id="features", style={"height": "320px"}),
        ],
        style={**PANEL, "width": "48%"},
    )
    gradchecks = html.Div(
        [
            html.H4("gradient checks stored in this run"),
            html.Button("check gradients at this step (fast)", id="run-check"),
            html.Span(id="check-status", style={"marginLeft": "12px"}),
            dcc.Store(id="checks-stored"),
            dash_table.DataTable(  # paged and sorted on the server: a page load gets one page
                id="gradchecks",
                columns=GRADCHECK_COLUMNS,
                page_action="custom",
                page_current=0,
                page_size=12,
                page_count=1,
                sort_action="custom",
                sort_mode="single",
                sort_by=[],
                style_cell={"fontSize": 12},
            ),
            html.Div(id="gradchecks-empty", style={"color": "#7f8ea3", "margin": "6px"}),
        ],
        style={**PANEL, "width": "98%"},
    )
    return html.Div(
        [
            *state,
            html.H2("labkit — training replay", style={"margin": "8px"}),
            controls,
            player,
            warnings,
            html.Div([graph("curves", 320, "98%")], style=ROW),
            html.Div([layer_picker], style=ROW),
            html.Div(
                [graph("hist-activation"), graph("hist-gradient")],
                style=ROW,
            ),
            html.Div([graph("hist-time-activation"), graph("hist-time")], style=ROW),
            html.Div([graph("gradient-flow"), graph("update-flow")], style=ROW),
            html.Div([kernels, features], style=ROW),
            html.Div([backward_section()], style=ROW),
            html.Div([gradchecks], style=ROW),
        ],
        style={"fontFamily": "sans-serif", "fontSize": "13px"},
    )


def backward_section() -> html.Div:
    """The backward view: closed until its layer is chosen (then the probe digit above
    and the step slider drive it), its parts in up to 8 figures, the chain rule of a
    clicked element with its verify button, and the saliency strip."""
    slots = [
        html.Div(
            dcc.Graph(
                id=f"backward-part-{slot}",
                style={"height": "100%"},  # the slot's, which the view sets
                config={"displaylogo": False, "displayModeBar": False},
            ),
            id=f"backward-slot-{slot}",
            style={"display": "none"},
        )
        for slot in range(SLOTS)
    ]
    picker = dcc.Dropdown(
        [],
        None,
        id="backward-layer",
        placeholder="pick a layer, or the loss, to see its backward pass",
    )
    chain_rule = html.Div(
        [html.B("chain rule of the clicked element"), html.Div(id="backward-rule")],
        style={**PANEL, "width": "56%", "overflowX": "auto"},
    )
    verify = html.Div(
        [
            html.Button("verify by finite differences", id="backward-verify", disabled=True),
            html.Div(
                "The clicked gradient element against its finite difference, taken now "
                "from the weights recorded at this step, in float64.",
                style={"color": "#7f8ea3", "margin": "4px 0"},
            ),
            html.Div(id="backward-verified", style={"marginTop": "6px"}),
        ],
        style={**PANEL, "width": "39%", "overflowX": "auto"},
    )
    body = html.Div(
        [
            html.Div(id="backward-agreement", style={"margin": "2px 6px", "color": "#2a3f5f"}),
            html.Div(slots, style=ROW),
            html.Div([chain_rule, verify], style=ROW),
            dcc.Graph(
                id="backward-saliency",
                style={"height": "150px"},
                config={"displaylogo": False, "displayModeBar": False},
            ),
        ],
        id="backward-body",
        style={"display": "none"},
    )
    return html.Div(
        [
            html.H4("backward pass: how the probe digit's gradient is made, layer by layer"),
            html.Div(
                [
                    labelled("layer (for the probe digit and step above)", picker, "34%"),
                    html.Div(
                        id="backward-title",
                        style={"margin": "22px 8px 0", "fontWeight": "bold"},
                    ),
                ],
                style=ROW,
            ),
            body,
            dcc.Store(id="backward-at"),  # the cursor, made in the browser (view.js)
            dcc.Store(id="backward-drawn"),  # the cursor the figures are of
            dcc.Store(id="backward-element"),  # the chosen element: layer, part, index
            dcc.Store(id="backward-strip"),  # the cursor the saliency strip is of
        ],
        id="backward",
        style={**PANEL, "width": "98%"},
    )
