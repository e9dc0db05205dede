"""The Dash app: ``create_app(runs_dir)`` builds it; ``labkit dashboard`` serves it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dash import Dash, html

from dashboards import callbacks, layout
from dashboards.store import RunStore
from labkit.usercode import Model


def create_app(runs_dir: str | Path, models: Sequence[Model] = ()) -> Dash:
    """A dashboard over every run in ``runs_dir``; an empty folder gets a how-to page.

    ``models`` (``labkit dashboard --model``, loaded by :func:`labkit.usercode.load_model`)
    bring the code of the users' own layers, which checking a run's weights needs.
    """
    store = RunStore(runs_dir, models)
    app = Dash(__name__, title="labkit", suppress_callback_exceptions=True)

    def serve_layout() -> html.Div:  # evaluated per page load: new runs appear on reload
        options = callbacks.run_options(store)
        usable = [o["value"] for o in options if not o.get("disabled")]
        if not usable:
            if options:  # only corrupt runs
                return html.Div(
                    [layout.empty_page(str(runs_dir))] + [html.Pre(o["label"]) for o in options]
                )
            return layout.empty_page(str(runs_dir))
        return layout.page(options, usable[-1])

    app.layout = serve_layout
    callbacks.register(app, store)
    app.labkit_store = store
    return app
