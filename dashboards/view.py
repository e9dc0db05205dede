"""The view in the address bar: ``?run=NAME&step=S&layer=L&probe=P`` opens exactly that,
so a teacher can send a link to step 350 of a run.

The keys (the one home of this format; assets/view.js writes the same keys as the view
changes, with ``history.replaceState``, so the address always holds what is shown):

- ``run``: a run's folder name (none, or one that isn't there: the newest run);
- ``compare``: the run drawn beside it;
- ``step``: a training step; the record shown is the last one at or before it;
- ``layer``: a layer's key (``03-Convolutional``) or index, for the histograms; also for
  the kernels (if it is a convolution) and the feature maps, unless these are given:
- ``kernels``, ``maps``: the layer of the kernel panel and of the feature maps;
- ``probe``: the probe digit's index (0-based, as the probe picker lists them);
- ``axis``: the step axis (:data:`dashboards.figures.AXIS_MODES`);
- ``backward``: the layer of the backward view (a key or index, or ``loss``): opens it;
- ``part``, ``element``: the element clicked in it (``dx`` and ``0,5,7``: dX[0,5,7]).

Whatever a link holds is only ever looked up among the runs, layers and probes the page
offers: a bad value is ignored, never an error.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from dashboards.figures import AXIS_MODES
from labkit.explain import LOSS  # the backward view's loss at the end

KEYS = (
    "run",
    "compare",
    "step",
    "layer",
    "kernels",
    "maps",
    "probe",
    "axis",
    "backward",
    "part",
    "element",
)
MAX_AXES = 4  # an element's indices: a part has at most 4 axes (kernels)
MAX_QUERY = 2_000  # characters of the address's query that are read


def parse_query(search: object) -> dict[str, str]:
    """``"?run=a&step=3"`` -> ``{"run": "a", "step": "3"}`` (first value of each known key)."""
    if not isinstance(search, str):
        return {}
    parsed = parse_qs(search[:MAX_QUERY].lstrip("?"), keep_blank_values=False)
    return {key: values[0] for key, values in parsed.items() if key in KEYS and values}


def as_int(text: object) -> int | None:
    """A non-negative integer from the address, or None."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text if text >= 0 else None
    if isinstance(text, str) and text.strip().isdigit():
        return int(text.strip())
    return None


def pick_layer(text: object, layers: list[dict]) -> int | None:
    """A layer option's value by its label (the layer's key) or its index, else None."""
    if not isinstance(text, str):
        return None
    for option in layers:
        if option["label"] == text:
            return option["value"]
    index = as_int(text)
    values = [option["value"] for option in layers]
    return index if index in values else None


def axis_mode(text: object) -> str | None:
    """The step axis the address names, if it is one."""
    return text if text in AXIS_MODES else None


def pick_backward(text: object, options: list[dict]) -> int | str | None:
    """The backward view's layer: ``loss``, or a layer by key or index, else None."""
    if text == LOSS and any(option["value"] == LOSS for option in options):
        return LOSS
    return pick_layer(text, [option for option in options if option["value"] != LOSS])


def as_index(text: object) -> list[int] | None:
    """An element's indices from ``"0,5,7"`` (at most :data:`MAX_AXES`), else None; whether
    the part has them is the view's to judge."""
    if not isinstance(text, str):
        return None
    pieces = text.split(",")
    if not 0 < len(pieces) <= MAX_AXES:
        return None
    numbers = [as_int(piece) for piece in pieces]
    return None if None in numbers else numbers
