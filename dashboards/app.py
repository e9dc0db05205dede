"""The Dash app: ``create_app(runs_dir)`` builds it; ``labkit dashboard`` serves it."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path

from dash import Dash, html

from dashboards import callbacks, layout, serving
from dashboards.guard import protect
from dashboards.runindex import version_of
from dashboards.store import RunStore
from labkit.errors import LabkitError
from labkit.usercode import Model, with_layers

DEFAULT_PORT = 8050


def create_app(
    runs_dir: str | Path,
    models: Sequence[Model] = (),
    layers: Iterable[type] = (),
    *,
    hosts: Iterable[str] = (),
    port: int | None = None,
) -> Dash:
    """A dashboard over every run in ``runs_dir``; an empty folder gets a how-to page.

    ``models`` (``labkit dashboard --model``, loaded by :func:`labkit.usercode.load_model`)
    or ``layers`` (classes, from Python) bring the code of the users' own layers, which
    the check button needs to rebuild a run's network.

    The server answers only requests for localhost, 127.0.0.1 and [::1], and the names in
    ``hosts`` (``"*"``: any), on ``port`` if given; others get 403. Bodies over
    :data:`dashboards.guard.MAX_BODY_BYTES` get 413.
    """
    extra = with_layers(None, layers)
    store = RunStore(runs_dir, [*models, *([extra] if extra else [])])
    app = Dash(__name__, title="labkit", suppress_callback_exceptions=True)
    protect(app.server, hosts, port)

    def serve_layout() -> html.Div:  # evaluated per page load: new runs appear on reload
        options = callbacks.run_options(store)
        usable = [o["value"] for o in options if not o.get("disabled")]
        if not usable:
            if options:  # only corrupt runs
                return html.Div(
                    [layout.empty_page(str(runs_dir))] + [html.Pre(o["label"]) for o in options]
                )
            return layout.empty_page(str(runs_dir))
        return layout.page(options, version_of(options))

    app.layout = serve_layout
    callbacks.register(app, store)
    app.labkit_store = store
    return app


def serve(
    runs_dir: str | Path = "runs",
    *,
    models: Sequence[Model] = (),
    layers: Iterable[type] = (),
    host: str = "127.0.0.1",
    port: int | None = None,
    jupyter_mode: str | None = None,
    allow_hosts: Iterable[str] = (),
    workers: int = 0,
    verbose: bool = False,
) -> int:
    """Serve the dashboard on ``http://host:port/``: until Ctrl-C from a script; in a
    notebook, ``jupyter_mode="inline"`` shows it in the cell's output and returns.

    ``workers=0`` serves with Dash's own server (one process: notebooks, a quick look);
    ``workers=N`` with gunicorn, N processes (Linux and macOS; ``labkit dashboard`` does
    this). Returns the exit status: 0, or 128 + the signal that stopped gunicorn. Without
    ``verbose`` no line is logged per request (the page polls every 3 s).

    ``port`` defaults to 8050; in a notebook, to the first free port from 8050 on (each
    kernel keeps its server, so a second notebook must not collide with the first).
    Requests must name localhost, ``host`` or one of ``allow_hosts`` (``["*"]``: any
    name, e.g. behind a proxy that passes its own Host) with the port.
    """
    if workers and jupyter_mode is not None:
        raise ValueError("jupyter_mode serves with Dash's own server: leave workers at 0")
    problem = serving.gunicorn_problem() if workers else None
    if problem:
        raise LabkitError(f"workers={workers} {problem}")
    if port is None:
        port = DEFAULT_PORT if jupyter_mode is None else free_port(host, DEFAULT_PORT)
    app = create_app(runs_dir, models, layers, hosts=[host, *allow_hosts], port=port)
    if workers:
        return serving.run(app.server, host=host, port=port, workers=workers, verbose=verbose)
    if not verbose:  # Werkzeug logs each request at INFO (its startup warning stays)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    options = {} if jupyter_mode is None else {"jupyter_mode": jupyter_mode}
    app.run(host=host, port=port, debug=False, **options)
    return 0


def free_port(host: str, first: int) -> int:
    """The first port from ``first`` on that nobody listens on at ``host``."""
    for port in range(first, first + 100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port on {host} from {first} to {first + 99}")
