"""HTML tables for Jupyter (``_repr_html_``): reports and runs show as tables in a notebook."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

STYLE = "border-collapse:collapse;font-family:monospace;font-size:12px"
CELL = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left;white-space:nowrap"
FAIL_COLOUR = "#c0392b"


def html_table(
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    caption: str | None = None,
    flagged: Sequence[bool] = (),
) -> str:
    """A small HTML table; every cell escaped; rows whose ``flagged`` entry is true in red."""
    head = "".join(f'<th style="{CELL}">{escape(str(cell))}</th>' for cell in header)
    body = []
    for index, row in enumerate(rows):
        colour = f";color:{FAIL_COLOUR}" if index < len(flagged) and flagged[index] else ""
        cells = "".join(f'<td style="{CELL}{colour}">{escape(str(cell))}</td>' for cell in row)
        body.append(f"<tr>{cells}</tr>")
    title = f'<caption style="text-align:left">{escape(caption)}</caption>' if caption else ""
    return (
        f'<table style="{STYLE}">{title}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
