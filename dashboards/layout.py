"""The page: a run picker, the step player, and one panel per view."""

from __future__ import annotations

from dash import dash_table, dcc, html

from dashboards.figures import GRADCHECK_COLUMNS

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


def page(run_options: list[dict], first_run: str | None) -> html.Div:
    """The dashboard for a folder that holds at least one run."""
    controls = html.Div(
        [
            html.Div(
                [
                    html.Label("run"),
                    dcc.Dropdown(run_options, first_run, id="run", clearable=False),
                ],
                style={"width": "32%", "margin": "4px"},
            ),
            html.Div(
                [
                    html.Label("compare with"),
                    dcc.Dropdown(run_options, None, id="compare", placeholder="(none)"),
                ],
                style={"width": "32%", "margin": "4px"},
            ),
            html.Div(id="warnings", style={"width": "32%", "margin": "4px", "color": "#b03a2e"}),
        ],
        style=ROW,
    )
    player = html.Div(
        [
            html.Button("◀", id="back", title="previous record (←)"),
            html.Button("▶ play", id="play", title="play / pause (space)"),
            html.Button("▶", id="forward", title="next record (→)"),
            html.Span(id="step-label", style={"margin": "0 12px", "fontWeight": "bold"}),
            html.Div(
                dcc.Slider(0, 0, 1, value=0, id="record", marks=None, updatemode="drag"),
                style={"flex": "1"},
            ),
            dcc.Interval(id="player", interval=500, disabled=True),
            dcc.Interval(id="live", interval=3000),
            dcc.Store(id="records"),
        ],
        style={**ROW, "alignItems": "center", **PANEL},
    )
    layer_picker = html.Div(
        [
            html.Label("layer"),
            dcc.Dropdown([], None, id="layer", clearable=False),
        ],
        style={"width": "30%", "margin": "4px"},
    )
    kernels = html.Div(
        [
            html.Div(
                [
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
                    dcc.Dropdown([], 0, id="probe", clearable=False, style={"width": "40%"}),
                    dcc.Dropdown([], None, id="feature-layer", clearable=False),
                ]
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
        ],
        style={**PANEL, "width": "98%"},
    )
    return html.Div(
        [
            html.H2("labkit — training replay", style={"margin": "8px"}),
            controls,
            player,
            html.Div([graph("curves", 320, "98%")], style=ROW),
            html.Div([layer_picker], style=ROW),
            html.Div(
                [graph("hist-activation"), graph("hist-gradient")],
                style=ROW,
            ),
            html.Div([graph("hist-time-activation"), graph("hist-time")], style=ROW),
            html.Div([graph("gradient-flow"), graph("update-flow")], style=ROW),
            html.Div([kernels, features], style=ROW),
            html.Div([gradchecks], style=ROW),
        ],
        style={"fontFamily": "sans-serif", "fontSize": "13px"},
    )
