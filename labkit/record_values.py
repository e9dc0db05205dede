"""The numbers a record holds, from a step's values: each layer's statistics and
histogram, and the probes' own-loss gradients. Pure functions; the Recorder calls them
where it computes a record (in the record process, or on its writer thread)."""

from __future__ import annotations

import math

import numpy as np

from labkit.layers import Sigmoid, Tanh
from labkit.losses import Loss
from labkit.network import Network
from labkit.recording import HIST_EDGES, STATS_FIELDS

HIST_SAMPLES = 4_096  # elements sampled (evenly strided) for each histogram


def tensor_stats(values: np.ndarray, saturation: tuple[float, float] | None) -> np.ndarray:
    """``STATS_FIELDS`` of an array; saturated_fraction is NaN where it means nothing.

    Sums accumulate in float64 without converting the array (that copy would cost more
    than the statistics themselves); ``ravel(order="K")`` is a view of a channels-last
    map, where ``reshape(-1)`` would copy it.
    """
    flat = np.ravel(values, order="K")
    if flat.size == 0:
        return np.full(len(STATS_FIELDS), np.nan, dtype=np.float32)
    if saturation is None:
        saturated = np.nan
    else:
        low, high = saturation
        saturated = np.count_nonzero((flat <= low) | (flat >= high)) / flat.size
    mean = flat.mean(dtype=np.float64)
    square_sum = np.add.reduce(np.square(flat), dtype=np.float64)
    return np.array(
        [
            mean,
            np.sqrt(max(square_sum / flat.size - mean * mean, 0.0)),
            flat.min(),
            flat.max(),
            np.sqrt(square_sum),
            np.count_nonzero(flat == 0) / flat.size,
            saturated,
        ],
        dtype=np.float32,
    )


def histogram(values: np.ndarray, edges: np.ndarray = HIST_EDGES) -> np.ndarray:
    """Counts over ``edges`` of at most HIST_SAMPLES evenly strided elements; outliers clip.

    Bins are ``[edges[i], edges[i+1])`` (the last one closed; NaN counts in it). The
    sample is sorted and the inner edges are looked up in it: 64 binary searches and a
    vectorized sort, 4x faster than a binary search of the edges for every value. The
    sample strides through memory order (``ravel(order="K")``: no copy of a
    channels-last map).
    """
    flat = np.ravel(values, order="K")
    stride = max(1, math.ceil(flat.size / HIST_SAMPLES))
    sample = np.sort(flat[::stride])
    below = np.searchsorted(sample, edges[1:-1], side="left")  # how many lie under each
    return np.diff(below, prepend=0, append=len(sample)).astype(np.int32)


def saturation_band(layer) -> tuple[float, float] | None:
    """Outputs counted as saturated: where sigmoid' or tanh' has fallen below ~0.04."""
    if isinstance(layer, Sigmoid):
        return (0.04, 0.96)
    if isinstance(layer, Tanh):
        return (-0.98, 0.98)
    return None


def probe_backward(
    network: Network, logits: np.ndarray, labels: np.ndarray, loss: Loss
) -> list[np.ndarray]:
    """Backpropagate each probe's own loss (``loss`` of it alone, as a batch of one)
    through ``network``, whose last forward was the probes': the gradient arriving at the
    input, then at each layer's output, in layer order.

    The layers' ``grads`` are overwritten: the Recorder passes its own copy of the
    network, never the one being trained.
    """
    flat = logits.reshape(len(logits), -1)
    targets = np.eye(flat.shape[1], dtype=flat.dtype)[labels]
    # the loss's derivative averages over the batch: times N, each probe's own gradient
    grad = (loss.prime(targets, flat) * len(flat)).astype(logits.dtype).reshape(logits.shape)
    arriving = []
    for layer in reversed(network.layers):
        arriving.append(np.array(grad))
        grad = layer.backward(grad)
    return [np.asarray(grad), *reversed(arriving)]
