"""The ``labkit`` console script: the CLI's imports, :func:`labkit.cli.main`, the exit.

Ctrl-C while the CLI's modules import is exit 130 without a traceback (nothing has
started); once the command is done, Ctrl-C or SIGTERM would only interrupt the
interpreter's shutdown (a traceback from its threads, and nothing left to save), so from
there they are ignored. This module imports nothing heavy itself, so that the first
handler is in place as early as it can be.
"""

from __future__ import annotations

import signal
import sys


def run() -> None:
    """Run ``labkit`` with the process's arguments and exit with its status."""
    try:
        from labkit.cli import main
    except KeyboardInterrupt:
        sys.exit(128 + signal.SIGINT)
    status = main()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    sys.exit(status)
