"""``labkit runs list [DIR]``: the runs in a folder with their status, progress and size."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labkit.runs import RunSummary


def add_parser(commands) -> None:
    runs = commands.add_parser("runs", help="list recorded runs")
    actions = runs.add_subparsers(
        dest="action", required=True, metavar="ACTION", help="what to do with the runs"
    )
    listing = actions.add_parser("list", help="one line per run in a folder")
    listing.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=Path("runs"),
        metavar="DIR",
        help="folder holding the runs",
    )
    listing.set_defaults(handler=run)


def human_size(size: int) -> str:
    """Bytes as B, KB, MB or GB (powers of 1024)."""
    if size < 1024:
        return f"{size} B"
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")


def format_table(summaries: list[RunSummary]) -> str:
    """The runs as an aligned text table; a corrupt run's row carries its error."""
    header = ("name", "status", "records", "last step", "best test", "size", "model")
    rows = []
    for summary in summaries:
        if summary.error is not None:
            rows.append((summary.path.name, "corrupt", summary.error))
            continue
        best = summary.best_test_accuracy
        rows.append(
            (
                summary.path.name,
                summary.status,
                f"{summary.steps:,}",
                "-" if summary.last_step is None else f"{summary.last_step:,}",
                "-" if best is None else f"{best:.2%}",
                human_size(summary.size_bytes),
                summary.model or "-",
            )
        )
    full = [header] + [row for row in rows if len(row) == len(header)]
    widths = [max(len(row[i]) for row in full) for i in range(len(header))]
    widths[0] = max([widths[0]] + [len(row[0]) for row in rows])
    widths[1] = max([widths[1]] + [len(row[1]) for row in rows])
    right = (False, False, True, True, True, True, False)

    def line(row: tuple[str, ...]) -> str:
        if len(row) != len(header):  # name, "corrupt", error
            return f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}"
        cells = [
            f"{cell:>{width}}" if align else f"{cell:<{width}}"
            for cell, width, align in zip(row, widths, right, strict=True)
        ]
        return "  ".join(cells).rstrip()

    return "\n".join(line(row) for row in [header, *rows])


def run(args: argparse.Namespace) -> int:
    from labkit.recording import check_recorded
    from labkit.runs import list_runs

    summaries = list_runs(args.directory, check=check_recorded)
    if not summaries:
        print(f"no runs in {args.directory}; make one with `labkit train`")
        return 0
    print(format_table(summaries))
    return 0
