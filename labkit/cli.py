"""The ``labkit`` command: one subcommand per module in :mod:`labkit.commands`.

User mistakes (bad options, missing or corrupt files) end in one line on stderr and exit
status 2, never a traceback. Output cut short by its reader (``labkit evaluate RUN | head
-1``) ends quietly with status 141, as git's and coreutils' do (killed by SIGPIPE: 128 + 13).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from labkit import __version__
from labkit.commands import dashboard, evaluate, explain, gradcheck, inspect, runs, train
from labkit.commands.args import HelpFormatter
from labkit.errors import LabkitError

SUBCOMMANDS = (train, evaluate, gradcheck, inspect, explain, runs, dashboard)
BROKEN_PIPE = 128 + getattr(signal, "SIGPIPE", 13)  # what a shell reports for git | head


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage block), still with exit status 2; and
    every (sub)command's help shows its defaults (:class:`HelpFormatter`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="labkit", description="A gradient-checking lab for a NumPy CNN.")
    parser.add_argument("--version", action="version", version=f"labkit {__version__}")
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="what to do; `labkit COMMAND --help` tells its options",
    )
    for module in SUBCOMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``labkit`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.handler(args)
        sys.stdout.flush()  # a reader gone shows here, not as "Exception ignored" at exit
        return status
    except LabkitError as exc:
        print(f"labkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _discard_stdout()
        return BROKEN_PIPE
    except KeyboardInterrupt:  # Ctrl-C before a training began, or in a command without one
        print(f"labkit {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


def _discard_stdout() -> None:
    """Point stdout at the null device, so that what is still buffered for a closed pipe
    goes nowhere at exit instead of raising again (Python's documented pattern)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout (already replaced)
        pass


if __name__ == "__main__":
    from labkit.console import run

    run()
