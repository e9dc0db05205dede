"""Panel callbacks that fail in the panel: a short message where the figure would be, the
traceback in the server's log (else Dash answers 500 and the panel silently stays as it was)."""

from __future__ import annotations

import functools
import html
import logging
import textwrap
from collections.abc import Callable, Sequence

from dash import Output, no_update
from dash.exceptions import PreventUpdate

from dashboards.figures import empty_figure
from dashboards.runids import BadRunId
from labkit.errors import LabkitError

log = logging.getLogger(__name__)
MAX_MESSAGE = 160
LINE = 24  # characters per line of a message in a figure: the probe image is ~200 px wide


def failure_text(exc: BaseException) -> str:
    """``"this panel failed: OSError: <first line>"``; a LabkitError (such as an unreadable
    run) is already one line for the user, so it comes without its class."""
    first = next(iter(str(exc).strip().splitlines()), "")
    if isinstance(exc, LabkitError):
        text = first
    else:
        text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 1] + "…"
    return f"this panel failed: {text}"


def fallback(outputs: Sequence[Output], message: str, blank: dict | None = None) -> list:
    """What each output shows instead: a figure says ``message``, text is ``message``,
    ``blank["id.property"]`` is used as given, and anything else is left as it was."""
    values = []
    for output in outputs:
        key = f"{output.component_id}.{output.component_property}"
        if blank and key in blank:
            values.append(blank[key])
        elif output.component_property == "figure":
            values.append(empty_figure(figure_text(message)))
        elif output.component_property == "children":
            values.append(message)
        else:
            values.append(no_update)
    return values


def figure_text(message: str) -> str:
    """``message`` for a figure's annotation: escaped (Plotly reads its text as HTML) and
    broken into lines that fit a narrow panel."""
    return "<br>".join(html.escape(line) for line in textwrap.wrap(message, LINE) or [""])


def failsafe(outputs: Sequence[Output], blank: dict | None = None) -> Callable:
    """Decorate a callback writing ``outputs`` so that an exception becomes
    :func:`fallback` of :func:`failure_text`, logged with its traceback; a refused run id
    (:class:`~dashboards.runids.BadRunId`) is no failure: its message, no traceback."""

    def wrap(function: Callable) -> Callable:
        @functools.wraps(function)
        def guarded(*args):
            try:
                return function(*args)
            except PreventUpdate:
                raise
            except BadRunId as exc:
                log.info("%s: %s", function.__name__, exc)
                values = fallback(outputs, str(exc), blank)
            except Exception as exc:
                log.exception("the %s panel failed", function.__name__)
                values = fallback(outputs, failure_text(exc), blank)
            if all(value is no_update for value in values):
                raise PreventUpdate
            return values if len(outputs) > 1 else values[0]

        return guarded

    return wrap


def panel_callback(app, *dependencies, blank: dict | None = None, **kwargs) -> Callable:
    """``app.callback(*dependencies, **kwargs)`` for a function made :func:`failsafe`."""
    outputs = [d for d in dependencies if isinstance(d, Output)]

    def register(function: Callable) -> Callable:
        return app.callback(*dependencies, **kwargs)(failsafe(outputs, blank)(function))

    return register
