"""Argument types and defaults shared by the subcommands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from labkit.options import MODEL_HELP

DATA_HELP = (
    "'sample' (the bundled 2,000 train / 500 test digits), 'auto' (LABKIT_DATA, then the "
    "Keras cache, then a download), or a path to mnist.npz or a folder of IDX files "
    "(default: $LABKIT_DATA if set, else sample)"
)


class HelpFormatter(argparse.HelpFormatter):
    """Every subcommand's help: each option's default shown as "(default: X)" after its
    text, unless the text already says its default, or there is none to show (None, a
    flag's False, an empty list: the text says what happens without the option)."""

    def __init__(self, prog: str, **options) -> None:
        options.setdefault("max_help_position", 30)  # --record-every N, gradcheck: one line
        super().__init__(prog, **options)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)
        if (
            not shown
            or "default" in text
            or default is argparse.SUPPRESS
            or default is None
            or default is False
            or default == []
        ):
            return text
        return f"{text} (default: %(default)s)"


def add_model_argument(parser, default: str | None = "lenet", what: str = "") -> None:
    """``--model``: one spelling and one help text for every subcommand that takes it."""
    shown = f" (default: {default})" if default else ""
    parser.add_argument("--model", default=default, metavar="MODEL", help=MODEL_HELP + what + shown)


def add_step_argument(parser, drawn: str = "drawn") -> None:
    """``--step``: a step of the run; the nearest record is the one ``drawn``."""
    parser.add_argument(
        "--step",
        type=int,
        default=None,
        help=f"a step between the run's first and last records; the nearest record is {drawn} "
        "(default: the last record)",
    )


def add_figure_arguments(parser, default_folder: str) -> None:
    """``--out DIR`` and ``--format png|svg`` of a command that writes figures."""
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"folder for the figures (default: {default_folder})",
    )
    parser.add_argument(
        "--format", choices=["png", "svg"], default="png", help="the figures' file format"
    )


def _integer(text: str, what: str, low: int, high: int | None = None, *, short: str = "") -> int:
    """``text`` as an integer in ``[low, high]``; else an argparse error naming ``what``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"{short or f'must be {what}'}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, "a positive integer", 1, short="must be positive")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def seed(text: str) -> int:
    """A random seed: a non-negative integer (what NumPy's generators take)."""
    return _integer(text, "a non-negative integer", 0)


def default_data() -> str:
    return os.environ.get("LABKIT_DATA") or "sample"


def port_number(text: str) -> int:
    """A TCP port to listen on: 1 to 65535."""
    return _integer(text, "a port number", 1, 65535, short="a port is 1 to 65535")


def worker_count(text: str) -> int:
    """``labkit dashboard --workers``: 0 (Dash's development server) to 64 processes."""
    return _integer(text, "a number of processes", 0, 64, short="must be 0 to 64")
