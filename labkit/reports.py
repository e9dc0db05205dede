"""What a gradient check found: per-tensor checks, reports, their status text and table.

Both checkers fill these: the finite-difference one (:mod:`labkit.gradcheck`) and the
TensorFlow oracle (:mod:`labkit.oracle`). A check's status text is built in one place,
:func:`status_text`, from the same fields the JSON report stores, so the CLI table and
the dashboard (reading stored reports, old ones too) say the same thing.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from labkit.html import html_table

TINY = np.finfo(np.float64).tiny


#: A gradient element is judged relative to at least this fraction of its tensor's largest
#: gradient, so an element whose true gradient is ~0 isn't held to a relative error of 0.
FLOOR = 1e-3


@dataclass(frozen=True)
class Tolerance:
    """A value passes within ``atol + rtol * max(|reference|, FLOOR * scale)``: numpy's
    ``isclose`` rule with the relative part floored at a fraction of ``scale`` (the
    tensor's largest gradient), so tolerances follow the gradient's magnitude."""

    rtol: float
    atol: float

    def allowed(self, reference: float | np.ndarray, scale: float = 0.0) -> float | np.ndarray:
        """The error allowed against ``reference`` (a float or an array of them)."""
        return self.atol + self.rtol * np.maximum(np.abs(reference), FLOOR * scale)


def status_text(check: Mapping[str, Any]) -> str:
    """A check's status from its fields (a :class:`TensorCheck`'s or a stored JSON dict's):
    ``ok``, ``ok (2 kinks)``, ``FAIL: <note>`` or ``FAIL 8/8 (analytic a, numeric n at worst)``,
    followed by ``; <note>`` when a check has both (the note says why, the counts where).

    A non-finite value, stored in a run as JSON ``null``, reads ``non-finite``.
    """
    failures, analytic, note = check.get("failures") or 0, check.get("analytic"), check.get("note")
    if failures and analytic is not None:
        checked, numeric = check.get("checked") or 0, check.get("numeric")
        against = check.get("against") or "numeric"
        ours = "analytic" if against == "numeric" else check.get("dtype", "analytic")
        counts = (
            f"FAIL {failures}/{checked} ({ours} {_value(analytic)}, "
            f"{against} {_value(numeric)}{_plus_minus(check.get('numeric_error'))} at worst)"
        )
        return f"{counts}; {note}" if note else counts
    if note:
        return f"FAIL: {note}"
    if failures:
        return "FAIL"
    kinks = check.get("kinks") or 0
    return f"ok ({kinks} kink{'s' * (kinks != 1)})" if kinks else "ok"


def mode_text(check: Mapping[str, Any]) -> str:
    """How a check was made, as tables show it: ``full``, ``fast``, ``fast→elements``, or
    ``float32 vs float64`` for the check in the layer's own dtype."""
    mode = check.get("mode") or ""
    against = check.get("against") or "numeric"
    return mode if against == "numeric" else f"{check.get('dtype', '')} {mode}"


def _value(value: float | None) -> str:
    """A value in a status: six significant digits, as the table has always shown it."""
    return "non-finite" if value is None else f"{value:.6g}"


def _plus_minus(error: float | None) -> str:
    """`` ± 2e-12``: the numeric value's own estimated error, where it is known."""
    return "" if not error or not math.isfinite(error) else f" ± {error:.1g}"


@dataclass
class TensorCheck:
    """The comparison for one tensor (the input or one parameter) of one layer."""

    layer: str
    tensor: str
    shape: tuple[int, ...]
    mode: str
    checked: int = 0
    failures: int = 0
    kinks: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    worst_index: tuple[int, ...] | None = None
    analytic: float | None = None
    numeric: float | None = None
    note: str = ""
    numeric_error: float | None = None  # the numeric value's estimated error, at worst
    directional: float | None = None  # relative error along the gradient's direction
    dtype: str = "float64"  # the precision the analytic gradient was computed in
    against: str = "numeric"  # what it was compared with: "numeric" or "float64"

    def add_note(self, note: str) -> None:
        """Add ``note`` to the check's notes (several join with ``; ``); failing it."""
        self.note = "; ".join(filter(None, [self.note, note]))

    @property
    def passed(self) -> bool:
        return self.failures == 0 and not self.note

    @property
    def status(self) -> str:
        """``ok``, ``ok (n kinks)`` or the reason it failed (see :func:`status_text`)."""
        return status_text(vars(self))

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "status": self.status}


def summarize(
    check: TensorCheck,
    analytic: np.ndarray,
    numeric: np.ndarray,
    kink: np.ndarray,
    positions: Sequence[tuple[int, ...]],
    allowed: np.ndarray,
    numeric_error: np.ndarray | None = None,
) -> TensorCheck:
    """Fill errors, worst element and counts of ``check`` from per-element values.

    ``kink`` marks elements that are not judged; ``allowed`` is each element's allowed
    error; ``positions[i]`` is element ``i``'s index in the tensor (any indexable, e.g.
    :class:`FlatPositions`); ``numeric_error`` the numeric values' own estimated errors.
    A NaN never passes.
    """
    error = np.abs(analytic - numeric)
    relative = error / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), TINY)
    allowed = np.broadcast_to(allowed, error.shape)
    fails = ~(error <= allowed) & ~kink
    check.checked = len(analytic)
    check.kinks = int(kink.sum())
    check.failures = int(fails.sum())
    considered = ~kink
    if considered.any():
        check.max_abs_error = float(error[considered].max())
        check.max_rel_error = float(relative[considered].max())
        excess = np.where(considered, error / np.maximum(allowed, TINY), -np.inf)
        worst = int(np.argmax(excess))
        check.worst_index = positions[worst]
        check.analytic, check.numeric = float(analytic[worst]), float(numeric[worst])
        if numeric_error is not None:
            check.numeric_error = float(numeric_error[worst])
    return check


class FlatPositions:
    """Lazy ``positions[i]``: the multi-index of flat element ``picks[i]`` (``i`` without
    picks) of an array of ``shape`` (no list of every tuple)."""

    def __init__(self, shape: tuple[int, ...], picks: np.ndarray | None = None) -> None:
        self.shape = shape
        self.picks = picks

    def __getitem__(self, i: int) -> tuple[int, ...]:
        flat = i if self.picks is None else int(self.picks[i])
        return tuple(int(v) for v in np.unravel_index(flat, self.shape))


@dataclass
class Report:
    """All tensor checks of a layer or a network; ``passed`` when every one of them did."""

    subject: str
    checks: list[TensorCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[TensorCheck]:
        return [check for check in self.checks if not check.passed]

    def __getitem__(self, key: str) -> TensorCheck:
        """The check of tensor ``key`` ("weights") or ``"<layer>.<tensor>"`` ("07-Dense.weights");
        a bare name that several layers share is refused rather than guessed. The check in
        the layer's own dtype is ``"weights@float32"``."""
        key, _, dtype = key.partition("@")

        def named(c: TensorCheck) -> bool:
            own = c.dtype == dtype if dtype else c.against == "numeric"
            return own and key in (c.tensor, f"{c.layer}.{c.tensor}")

        found = [c for c in self.checks if named(c)]
        if len(found) > 1:
            layers = ", ".join(c.layer for c in found)
            raise KeyError(f"{key!r} is in several layers ({layers}): ask for '<layer>.{key}'")
        if not found:
            raise KeyError(key)
        return found[0]

    def to_dict(self) -> dict:
        return {
            "subject": self.subject,
            "passed": self.passed,
            "checks": [c.to_dict() for c in self.checks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        return format_table(self.checks)

    def _repr_html_(self) -> str:
        return html_report(self.checks, f"{self.subject}: {verdict(self.checks)}")


class LayerReport(Report):
    """Report of :func:`labkit.gradcheck.check_layer`."""


class NetworkReport(Report):
    """Report of :func:`labkit.gradcheck.check_network`: ``report["07-Dense.weights"]``,
    ``report["input"]``."""


@dataclass
class CheckSuite:
    """Every layer checked on its own, then the whole network (then the oracle, if asked).

    :meth:`to_dict` is the gradient-check report document: what ``labkit gradcheck
    --json`` writes and what a run stores in ``gradchecks/``.
    """

    reports: list[Report]
    subject: str
    mode: str
    oracle: str | None = None
    seconds: float = 0.0
    step: int | None = None
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def checks(self) -> list[TensorCheck]:
        """Every tensor check of every report, in order."""
        return [check for report in self.reports for check in report.checks]

    @property
    def failures(self) -> list[TensorCheck]:
        return [check for check in self.checks if not check.passed]

    @property
    def passed(self) -> bool:
        return not self.failures

    def table(self) -> str:
        return format_table(self.checks)

    def _repr_html_(self) -> str:
        caption = f"gradient check of {self.subject} ({self.seconds:.1f} s): {verdict(self.checks)}"
        return html_report(self.checks, caption)

    def to_dict(self) -> dict:
        """The report document (JSON-able; ``step`` only when the check is of a run's step)."""
        document = {
            "subject": self.subject,
            "created": self.created,
            "mode": self.mode,
            "oracle": self.oracle,
            "seconds": self.seconds,
            "passed": self.passed,
            "reports": [report.to_dict() for report in self.reports],
        }
        if self.step is not None:
            document["step"] = self.step
        return document


# The JSON type of each field of a stored check: TensorCheck's fields, and what to_dict adds.
_CHECK_FIELDS = {f.name: str(f.type) for f in fields(TensorCheck)} | {
    "passed": "bool",
    "status": "str",
}


def _fits(value: Any, annotation: str) -> bool:
    """Whether a stored value fits a field's annotation (non-finite floats are stored null)."""
    if value is None:
        return "None" in annotation or annotation == "float"
    if annotation.startswith("tuple[int"):
        return isinstance(value, list) and all(type(item) is int for item in value)
    kinds = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float)}
    return type(value) in kinds.get(annotation.split(" |")[0], (type(value),))


def report_problem(document: Any) -> str | None:
    """What keeps a stored report document from being read as one, or None.

    A document is :meth:`CheckSuite.to_dict`'s (``{"reports": [...]}``) or one report's
    (``{"subject", "passed", "checks"}``); any field may be missing (older reports), but
    one that is there has its :class:`TensorCheck` type, so the tables and
    :func:`status_text` never meet a string where they format a number.
    """
    if not isinstance(document, dict):
        return "not a JSON object"
    reports = document.get("reports", [document])
    if not isinstance(reports, list):
        return "'reports' is not a list"
    for i, report in enumerate(reports):
        checks = report.get("checks", []) if isinstance(report, dict) else None
        if not isinstance(checks, list) or not isinstance(report.get("subject", ""), str):
            return f"report {i} is not an object with a subject and a list of checks"
        for j, check in enumerate(checks):
            if not isinstance(check, dict):
                return f"check {j} of report {i} is not an object"
            for name, value in check.items():
                if name in _CHECK_FIELDS and not _fits(value, _CHECK_FIELDS[name]):
                    return f"check {j} of report {i}: {name!r} is {value!r:.40}"
    return None


TABLE_HEADER = (
    "layer",
    "tensor",
    "shape",
    "mode",
    "max abs err",
    "max rel err",
    "worst at",
    "status",
)


def table_rows(checks: Iterable[TensorCheck]) -> list[tuple[str, ...]]:
    """One row of text cells per check, in ``TABLE_HEADER``'s order (terminal and HTML)."""
    return [
        (
            c.layer,
            c.tensor,
            str(c.shape),
            mode_text(vars(c)),
            f"{c.max_abs_error:.2e}",
            f"{c.max_rel_error:.2e}",
            "-" if c.worst_index is None else str(c.worst_index),
            c.status,
        )
        for c in checks
    ]


def format_table(checks: Iterable[TensorCheck]) -> str:
    """A plain-text table: layer, tensor, shape, errors, worst index, status."""
    rows = [TABLE_HEADER, *table_rows(checks)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(line.rstrip() for line in lines)


def verdict(checks: Sequence[TensorCheck]) -> str:
    """``27 tensors checked: all passed`` or ``... 2 FAILED``: the line under the table.

    A tensor counts once, however many rows check it (by finite differences, in its
    layer's own dtype), and fails when any of them does."""
    tensors: dict[tuple[str, str, str], bool] = {}
    for check in checks:
        key = (check.layer, check.tensor, check.mode if check.mode == "fast" else "")
        tensors[key] = tensors.get(key, True) and check.passed
    failed = sum(not passed for passed in tensors.values())
    return f"{len(tensors)} tensors checked: {'all passed' if not failed else f'{failed} FAILED'}"


def html_report(checks: Sequence[TensorCheck], caption: str) -> str:
    """The table as HTML for a notebook, failing rows in red."""
    checks = list(checks)
    flagged = [not check.passed for check in checks]
    return html_table(TABLE_HEADER, table_rows(checks), caption=caption, flagged=flagged)
