"""``labkit dashboard [RUNS_DIR]``: serve the training-replay dashboard on localhost."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket
import sys
from pathlib import Path

from labkit.commands.args import port_number, worker_count
from labkit.errors import LabkitError


def add_parser(commands) -> None:
    parser = commands.add_parser("dashboard", help="serve the replay dashboard on localhost")
    parser.add_argument(
        "runs_dir",
        nargs="?",
        type=Path,
        default=Path("runs"),
        metavar="RUNS_DIR",
        help="the folder of runs to show (labkit train's --out folders)",
    )
    parser.add_argument("--port", type=port_number, default=8050, help="the port to listen on")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default: 127.0.0.1, this machine only; the"
        " dashboard has no login, so anything else lets whoever reaches it see the runs)",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the browser may use to reach the dashboard, besides localhost,"
        " 127.0.0.1 and --host (default: those only; others get 403, against DNS"
        " rebinding); repeat it for several, or '*' for any",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="MODEL",
        help="the code of runs made with your own layers (FILE.py:NAME or package.module:NAME),"
        " so the check button can rebuild them; repeat it for several (default: none,"
        " labkit's own layers only)",
    )
    parser.add_argument(
        "--workers",
        type=worker_count,
        default=1,
        metavar="N",
        help="server processes (gunicorn), each answering two requests at a time; a class"
        " needs about one per core (default: 1; 0: Dash's development server)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="log every request (the page asks every 3 s) and the server's start and stop",
    )
    parser.set_defaults(handler=run)


def check_port(host: str, port: int) -> None:
    """Fail with one clear line when the port is taken, before Dash prints its own traceback.

    The probe binds as the server will (SO_REUSEADDR), so the connections a dashboard
    stopped a moment ago leaves in TIME_WAIT do not count; someone listening does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LabkitError(
                    f"port {port} on {host} is in use; pass --port to choose another"
                ) from None
            raise LabkitError(f"cannot listen on {host}:{port} ({exc.strerror})") from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (a name other than localhost may be anything)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from dashboards.serving import gunicorn_problem  # not Dash: the quick errors stay quick

    workers = args.workers
    problem = gunicorn_problem() if workers else None
    if problem and workers > 1:
        raise LabkitError(f"--workers {workers} {problem}")
    if problem:
        workers = 0  # one process either way: Dash's own server
    check_port(args.host, args.port)
    if not args.runs_dir.is_dir():
        what = "no such folder" if not args.runs_dir.exists() else "not a folder"
        raise LabkitError(f"{args.runs_dir}: {what} (RUNS_DIR holds the runs of labkit train)")
    from labkit.usercode import load_model  # NumPy only when serving

    models = [load_model(spec) for spec in args.model]
    from dashboards.app import serve  # Dash only when serving

    if not is_loopback(args.host):
        print(
            f"labkit dashboard: warning: listening on {args.host}, and the dashboard has no"
            f" authentication: anyone who can reach port {args.port} can see the runs and"
            " start checks",
            file=sys.stderr,
        )
    print(f"labkit dashboard for {args.runs_dir} on http://{args.host}:{args.port}/ (Ctrl-C stops)")
    sys.stdout.flush()  # before gunicorn forks: a buffered line would be printed by each worker
    return serve(
        args.runs_dir,
        models=models,
        host=args.host,
        port=args.port,
        allow_hosts=args.allow_host,
        workers=workers,
        verbose=args.verbose,
    )
