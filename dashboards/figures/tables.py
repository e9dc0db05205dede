"""The gradient-check table: stored check reports as rows of a Dash DataTable."""

from __future__ import annotations

from dashboards.figures.style import (
    sci,
)
from labkit.reports import mode_text, status_text

GRADCHECK_COLUMNS = [
    {"name": name, "id": key}
    for key, name in (
        ("date", "checked on"),
        ("step", "step"),
        ("report", "report"),
        ("within", "checked as"),
        ("layer", "layer"),
        ("tensor", "tensor"),
        ("shape", "shape"),
        ("mode", "mode"),
        ("checked", "checked"),
        ("max_abs_error", "max abs err"),
        ("max_rel_error", "max rel err"),
        ("worst_index", "worst at"),
        ("status", "status"),
    )
]


def date_text(created: object) -> str:
    """``2026-12-02T03:10:44+0000`` -> ``2026-12-02 03:10`` (anything else as it is)."""
    if not isinstance(created, str):
        return ""
    return created[:16].replace("T", " ") if len(created) >= 16 and created[10] == "T" else created


def gradcheck_table(report: dict, number: int | None = None) -> list[dict]:
    """Rows for a Dash DataTable (columns ``GRADCHECK_COLUMNS``) from a gradcheck report.

    ``report`` is the JSON document ``labkit gradcheck`` writes (``{"reports": [...]}``)
    or one report of it (``{"subject", "passed", "checks"}``); ``number`` is its place
    among the run's reports (1: the oldest). The status is rebuilt from the check's
    fields, as the CLI prints it (a stored ``status`` may be the old short one).
    """
    reports = report.get("reports", [report]) if isinstance(report, dict) else []
    document = report if isinstance(report, dict) else {}
    step = document.get("step")
    common = {
        "date": date_text(document.get("created")),
        "step": f"{step:,}" if isinstance(step, int) else "saved weights",
        "report": f"#{number}" if number is not None else "",
    }
    rows = []
    for sub in reports:
        for check in sub.get("checks", []):
            failures, checked = check.get("failures", 0), check.get("checked", 0)
            note = check.get("note") or ""
            worst = check.get("worst_index")
            shape = check.get("shape") or []
            rows.append(
                {
                    **common,
                    "within": "network" if sub.get("subject") == "network" else "layer alone",
                    "layer": check.get("layer", ""),
                    "tensor": check.get("tensor", ""),
                    "shape": str(tuple(shape)),
                    "mode": mode_text(check),
                    "checked": checked,
                    "failures": failures,
                    "kinks": check.get("kinks", 0),
                    "max_abs_error": sci(check.get("max_abs_error")),
                    "max_rel_error": sci(check.get("max_rel_error")),
                    "worst_index": "-" if worst is None else str(tuple(worst)),
                    "status": status_text(check),
                    "passed": bool(check.get("passed", not failures and not note)),
                }
            )
    return rows
