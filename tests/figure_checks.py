"""What the tests check of every dashboard figure, since the dashboard builds them
without plotly's validation (dashboards/figures/style.py ``figure``)."""

from __future__ import annotations

import plotly.graph_objects as go

from dashboards.figures.style import UNDERSCORED


def underscored_keys(value, path: str = "") -> list[str]:
    """Keys plotly.js would not know: a "magic underscore" left unspelled (``title_text``)."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if "_" in key and key not in UNDERSCORED and not key.startswith("_"):
                found.append(f"{path}{key}")
            found += underscored_keys(item, f"{path}{key}.")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found += underscored_keys(item, f"{path}{index}.")
    return found


def validated(fig: go.Figure) -> go.Figure:
    """``fig`` rebuilt with plotly's validation (a property plotly does not know, or a bad
    value, raises), after checking that it holds only keys plotly.js reads."""
    as_sent = fig.to_dict()
    assert underscored_keys(as_sent) == []
    return go.Figure(as_sent)
