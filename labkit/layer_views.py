"""How a layer's output for one probe digit is shown: the rules that labkit inspect's
figures (:mod:`labkit.inspect`) and the dashboard's (:mod:`dashboards.figures.images`)
share, so that both show a layer alike."""

from __future__ import annotations

import numpy as np

from labkit.layers.reshape import SHAPE_ONLY


def colour_range(values: np.ndarray) -> tuple[float, float, bool]:
    """``(low, high, diverging)`` for feature maps: symmetric around 0 on a diverging
    scale when any value is negative (a conv's or a pre-ReLU pool's output), else 0 to
    the largest on a sequential one (ReLU outputs); NaN (a mosaic's gaps) ignored."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 0.0
    if low < 0:
        bound = max(-low, high)
        return -bound, bound, True
    return 0.0, high if high > 0 else 1.0, False


def shape_only_note(
    layer_class: str | None, shape: tuple[int, ...], previous: str | None
) -> str | None:
    """What to say instead of drawing the output of a layer that only rearranges the
    values of the one before (Reshape, Flatten): the same numbers drawn again as a strip
    of bars; None for any other layer."""
    if layer_class not in SHAPE_ONLY:
        return None
    size = int(np.prod(shape))
    how = "flattened" if len(shape) == 1 else "reshaped"
    source = previous or "the layer before"
    return f"{layer_class}: the same {size:,} values as {source}, {how} to {tuple(shape)}"


def unit_axis(last: bool, layer_class: str | None = None) -> str:
    """The name of a vector output's units: classes for the network's last layer (logits,
    or probabilities after a Softmax layer), else plain units."""
    if not last:
        return "unit"
    return "class (probabilities)" if layer_class == "Softmax" else "class (logits)"
