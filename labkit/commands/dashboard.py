"""``labkit dashboard [RUNS_DIR]``: serve the training-replay dashboard on localhost."""

from __future__ import annotations

import argparse
import errno
import socket
from pathlib import Path

from labkit.commands.args import positive_int
from labkit.errors import LabkitError
from labkit.usercode import load_model


def add_parser(commands) -> None:
    parser = commands.add_parser("dashboard", help="serve the replay dashboard on localhost")
    parser.add_argument("runs_dir", nargs="?", type=Path, default=Path("runs"), metavar="RUNS_DIR")
    parser.add_argument("--port", type=positive_int, default=8050)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="MODEL",
        help="the code of runs made with your own layers (FILE.py:NAME or package.module:NAME),"
        " so the check button can rebuild them; repeat it for several",
    )
    parser.set_defaults(handler=run)


def check_port(host: str, port: int) -> None:
    """Fail with one clear line when the port is taken, before Dash prints its own traceback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LabkitError(
                    f"port {port} on {host} is in use; pass --port to choose another"
                ) from None
            raise LabkitError(f"cannot listen on {host}:{port} ({exc.strerror})") from None


def run(args: argparse.Namespace) -> int:
    check_port(args.host, args.port)
    if not args.runs_dir.is_dir():
        what = "no such folder" if not args.runs_dir.exists() else "not a folder"
        raise LabkitError(f"{args.runs_dir}: {what} (RUNS_DIR holds the runs of labkit train)")
    models = [load_model(spec) for spec in args.model]
    from dashboards.app import serve  # Dash only when serving

    print(f"labkit dashboard for {args.runs_dir} on http://{args.host}:{args.port}/ (Ctrl-C stops)")
    serve(args.runs_dir, models=models, host=args.host, port=args.port)
    return 0
