"""How ``labkit dashboard`` serves: gunicorn, worker processes of two threads each,
forked from a master that built the app once, quiet unless asked, stopped cleanly by
Ctrl-C or SIGTERM.

This module imports neither Dash nor gunicorn, so the CLI can ask :func:`gunicorn_problem`
before loading either; :mod:`dashboards.gunicorn_app` holds what needs gunicorn itself.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from labkit.errors import LabkitError

# Threads per process: two, so that a long request (the check button's check) leaves
# the other one free for the page, but no more: the callbacks are CPU-bound Python, and
# threads only queue for the GIL. On 2 cores, 2 workers, 16 clients moving the slider
# (benchmarks/bench_dashboard_load.py): 17-19 moves/s with 1 or 2 threads, 11-15 with 4,
# 9 with 8. Processes are what add cores.
THREADS = 2
# Seconds a worker gets to finish its requests after SIGTERM (a check under way is lost,
# never half-stored: reports are written atomically); Ctrl-C stops workers at once.
GRACEFUL_SECONDS = 5
# A tab polls every 3 s: its connections stay open from one poll to the next (gunicorn's
# default, 2 s, closes them in between, and a request may meet one as it closes).
KEEPALIVE_SECONDS = 5
STOPPING = (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGQUIT", signal.SIGTERM))


def gunicorn_problem() -> str | None:
    """Why gunicorn cannot serve here (``"needs gunicorn, ..."``), or None if it can."""
    try:
        import gunicorn.app.base  # noqa: F401  (it needs fcntl and fork: POSIX only)
    except ImportError:
        if sys.platform == "win32":
            return "needs gunicorn, which runs on Linux and macOS"
        return "needs gunicorn (pip install gunicorn)"
    return None


def options(host: str, port: int, workers: int, verbose: bool) -> dict:
    """gunicorn's settings for the dashboard: ``workers`` gthread processes of
    :data:`THREADS` threads; without ``verbose``, warnings only and no access log (the page
    polls every 3 s)."""
    return {
        "bind": f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "dashboards.gunicorn_app.DashboardWorker",  # gthread, mended
        "threads": THREADS,
        "preload_app": True,  # the app is built before the fork (DashboardApplication)
        "graceful_timeout": GRACEFUL_SECONDS,
        "keepalive": KEEPALIVE_SECONDS,
        "accesslog": "-" if verbose else None,
        "errorlog": "-",
        "loglevel": "info" if verbose else "warning",
        "proc_name": "labkit-dashboard",
        # gunicorn >= 25.1 opens a control socket, by default at one path per user
        # ($HOME/.gunicorn/gunicorn.ctl), which a second dashboard would take over.
        "control_socket_disable": True,
    }


def run(wsgi_app: Callable, *, host: str, port: int, workers: int, verbose: bool) -> int:
    """Serve ``wsgi_app`` on ``host:port`` with gunicorn until a signal stops the master
    and its workers; returns 128 + that signal (130 for Ctrl-C, 143 for SIGTERM, as
    ``labkit train`` does)."""
    from dashboards.gunicorn_app import DashboardApplication, StoppingArbiter

    master = os.getpid()
    settings = options(host, port, workers, verbose)
    arbiter = StoppingArbiter(DashboardApplication(wsgi_app, settings))
    try:
        arbiter.run()
    except SystemExit as stop:
        if os.getpid() != master:
            raise  # a worker leaving, gunicorn's way: out of every frame the fork inherited
        if arbiter.stopped_by in STOPPING and stop.code in (0, None):
            return 128 + arbiter.stopped_by
        raise
    except RuntimeError as exc:  # what gunicorn's own runner prints as "Error: ..."
        raise LabkitError(f"gunicorn: {exc}") from None
    return 0
