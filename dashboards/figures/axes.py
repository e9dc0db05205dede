"""The step axis of the figures over training, shared by two runs when they are compared.

Two runs of very different lengths on one linear step axis squeeze the short one into a
sliver of the plot (1,000 steps beside 60,000: under 2% of it). ``"auto"`` therefore
draws a log step axis when the runs' lengths differ by more than :data:`SQUEEZE` times;
``"fraction"`` draws each run against the share of its own training done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dashboards.figures.style import step_line

AXIS_MODES = ("auto", "linear", "log", "fraction")
AXIS_LABELS = {
    "auto": "auto",
    "linear": "steps",
    "log": "steps (log)",
    "fraction": "% of each run",
}
SQUEEZE = 4.0  # lengths differing by more than this draw a log axis under "auto"


@dataclass(frozen=True)
class StepAxis:
    """How steps become x positions: ``kind`` is ``"linear"``, ``"log"`` or ``"fraction"``."""

    kind: str = "linear"

    def x(self, steps, last: float | None = None) -> np.ndarray:
        """The x positions of ``steps`` of a run whose last step is ``last``."""
        steps = np.asarray(steps, dtype=np.float64)
        if self.kind != "fraction":
            return steps
        end = last if last else (steps[-1] if steps.size and steps[-1] else 1.0)
        return steps / end

    def layout(self) -> dict:
        """The x axis's type, title and tick format."""
        if self.kind == "log":
            return {"type": "log", "title_text": "step (log)"}
        if self.kind == "fraction":
            return {"tickformat": ".0%", "title_text": "share of the run's steps"}
        return {"title_text": "step"}

    def marker(self, step: int | None, first: float, last: float) -> list[dict]:
        """The step marker at ``step`` of a run spanning ``first``..``last`` steps, its label
        on the side with room (see :func:`right_half`)."""
        if step is None:
            return []
        position = float(self.x([step], last)[0])
        right = right_half(self.kind, step, first, last)
        return step_line(step, x=position, right=right)


LINEAR = StepAxis("linear")


def right_half(kind: str, step: float, first: float, last: float) -> bool:
    """Whether ``step`` sits in the right half of an axis from ``first`` to ``last``
    (assets/marker.js applies the same rule when it moves the marker)."""
    if kind == "log" and first > 0 and step > 0:
        return math.log10(step) > (math.log10(first) + math.log10(last)) / 2
    return step > (first + last) / 2


def choose_axis(mode: str, lengths: list[float]) -> StepAxis:
    """The axis for ``mode`` (one of :data:`AXIS_MODES`) over runs of ``lengths`` steps."""
    if mode in ("linear", "log", "fraction"):
        return StepAxis(mode)
    positive = [length for length in lengths if length and length > 0]
    if len(positive) > 1 and max(positive) > SQUEEZE * min(positive):
        return StepAxis("log")
    return StepAxis("linear")
