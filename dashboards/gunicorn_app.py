"""gunicorn's pieces, as the dashboard uses them: the application (gunicorn's documented
way to embed it, a ``gunicorn.app.base.BaseApplication`` whose ``load`` returns the WSGI
app: gunicorn.org/custom), a master that remembers the signal that stopped it, and the
gthread worker, stopped by Ctrl-C without the deadlock gunicorn's own can fall into.

gunicorn needs fcntl and fork (Linux, macOS): import this only after
:func:`dashboards.serving.gunicorn_problem` said None.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.gthread import ThreadWorker


class DashboardApplication(BaseApplication):
    """gunicorn serving an app built in this process (the master) before any worker forks:
    ``--model`` code is imported once, a broken one fails before anything listens, and the
    workers start ready (each still opens and caches the runs it is asked for)."""

    def __init__(self, wsgi_app: Callable, settings: dict) -> None:
        self.wsgi_app = wsgi_app
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.settings.items():
            if key in self.cfg.settings:  # control_socket_disable is new in gunicorn 25.1
                self.cfg.set(key, value)

    def load(self) -> Callable:
        return self.wsgi_app


class StoppingArbiter(Arbiter):
    """gunicorn's master, remembering the signal that stopped it (for the exit status)."""

    stopped_by: int | None = None

    def handle_int(self) -> None:
        self.stopped_by = signal.SIGINT
        super().handle_int()

    def handle_term(self) -> None:
        self.stopped_by = signal.SIGTERM
        super().handle_term()

    def handle_quit(self) -> None:
        self.stopped_by = signal.SIGQUIT
        super().handle_quit()


class DashboardWorker(ThreadWorker):
    """gunicorn's gthread worker (a poller thread handing requests to a pool of threads),
    leaving on Ctrl-C and the master's quick stop (SIGINT, SIGQUIT) as on SIGTERM: it
    finishes the requests under way (the master kills it after ``graceful_timeout``).

    gunicorn's own ``handle_quit`` shuts the pool down inside the signal handler; when the
    signal lands while the main thread is in ``ThreadPoolExecutor.submit``, which holds the
    pool's lock, the handler waits for that lock forever (seen: one Ctrl-C in eight, the
    worker then SIGKILLed by the master with "Perhaps out of memory?"). And once its loop
    is done the stop signals are ignored: a Ctrl-C reaches the worker and the master at
    once, and the master's SIGQUIT could otherwise find the worker in the interpreter's
    shutdown, which puts back the default action, and kill it ("was sent SIGQUIT!").
    """

    def handle_quit(self, sig, frame) -> None:
        self.handle_exit(sig, frame)  # a flag and a wake-up byte: safe in a handler

    def run(self) -> None:
        super().run()
        for number in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
            signal.signal(number, signal.SIG_IGN)  # SIG_IGN outlives the shutdown
