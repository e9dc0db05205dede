"""The dashboard as a WSGI app for a server of your own: ``dashboards.wsgi:server`` (and
``app``, the Dash app)::

    LABKIT_RUNS_DIR=/srv/runs gunicorn --preload -w 4 --threads 2 -b 127.0.0.1:8050 \\
        'dashboards.wsgi:server'

Set in the environment (read once, at import):

- ``LABKIT_RUNS_DIR`` (required): the folder of runs to serve;
- ``LABKIT_MODELS``: ``--model`` specs for runs of your own layers, comma-separated
  (``examples/leaky_net.py:build,mypkg.nets:build``);
- ``LABKIT_ALLOW_HOSTS``: host names the browser may use besides localhost, 127.0.0.1 and
  [::1], comma-separated (``lab.example.org``; ``*``: any, behind a proxy that checks it).
  Any port is accepted: behind a proxy the server's own port is not the one browsers see.

A missing variable, a runs folder that is not one, or a ``--model`` that does not load is
one line on stderr and exit status 4, which gunicorn reads as "App failed to load" and
stops on (any other status would have it start the worker again, forever). With
``--preload`` that happens once, in gunicorn's master, before anything listens (and the
user's code is imported once); without it each worker says it, and gunicorn (27) adds
a traceback of its own when several fail together.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from dash import Dash

from labkit.errors import LabkitError

RUNS_DIR = "LABKIT_RUNS_DIR"
MODELS = "LABKIT_MODELS"
ALLOW_HOSTS = "LABKIT_ALLOW_HOSTS"
APP_LOAD_ERROR = 4  # gunicorn.arbiter.Arbiter.APP_LOAD_ERROR


def listed(text: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def app_from_environment(environ: Mapping[str, str]) -> Dash:
    """The dashboard that ``environ``'s ``LABKIT_*`` variables describe; LabkitError (one
    line naming the variable) if they do not describe one."""
    from dashboards.app import create_app
    from labkit.usercode import load_model

    folder = environ.get(RUNS_DIR)
    if not folder:
        raise LabkitError(f"set {RUNS_DIR} to the folder of runs to serve")
    runs_dir = Path(folder)
    if not runs_dir.is_dir():
        what = "no such folder" if not runs_dir.exists() else "not a folder"
        raise LabkitError(f"{RUNS_DIR}={folder}: {what}")
    try:
        models = [load_model(spec) for spec in listed(environ.get(MODELS))]
    except LabkitError as exc:
        raise LabkitError(f"{MODELS}: {exc}") from None
    return create_app(runs_dir, models, hosts=listed(environ.get(ALLOW_HOSTS)))


try:
    app = app_from_environment(os.environ)
except LabkitError as exc:
    print(f"dashboards.wsgi: error: {exc}", file=sys.stderr)
    raise SystemExit(APP_LOAD_ERROR) from None
server = app.server  # the WSGI callable (Flask), behind the Host guard and the body cap
