"""The standard gradient check of a network: every layer on its own, then the whole network.

:func:`check_all` is what ``labkit gradcheck``, the dashboard's check button and the
benchmark run; :func:`digits` is the input they check with.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from tqdm import tqdm

from labkit.data import load_mnist, one_hot
from labkit.gradcheck import (
    GradcheckError,
    check_layer,
    check_network,
    example_input,
    float64_copy,
)
from labkit.gradcheck_tutorial import is_tutorial_layer
from labkit.losses import Loss
from labkit.network import Network
from labkit.options import ORACLES
from labkit.reports import CheckSuite, Report


def digits(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The check input: ``batch`` sample test digits ``(batch, 1, 28, 28)`` with faint
    noise, and their one-hot labels ``(batch, 10)``, both float64.

    The noise (sigma 0.01) keeps MNIST's flat background from making max-pool windows tie.
    A ``batch`` larger than the sample's test digits is a GradcheckError, never fewer.
    """
    data = load_mnist("sample")
    if batch > len(data.y_test):
        raise GradcheckError(
            f"batch {batch}: the bundled sample has {len(data.y_test)} test digits"
        )
    x = data.x_test[:batch].astype(np.float64)
    x += np.random.default_rng(seed).normal(0.0, 0.01, x.shape)
    return x, one_hot(data.y_test[:batch]).astype(np.float64)


def sample_test_digits() -> int:
    """How many digits :func:`digits` can give: the bundled sample's test digits (500)."""
    return len(load_mnist("sample").y_test)


def jitter_biases(network: Network, seed: int, scale: float = 0.1) -> Network:
    """Give every bias small random values, in place.

    A fresh preset has zero biases, and MNIST's background is exactly 0, so thousands
    of pre-activations would sit exactly on the ReLU kink and max-pool windows would tie;
    the check would then mostly report kinks instead of testing the backward pass.
    """
    rng = np.random.default_rng(seed)
    for layer in network.layers:
        for name, value in layer.params.items():
            if name.startswith("bias"):
                value[...] = rng.normal(0.0, scale, value.shape)
    return network


def layer_inputs(network: Network, x: np.ndarray) -> list[np.ndarray]:
    """The float64 input each layer sees when ``x`` flows through ``network``."""
    inputs = []
    for layer in network.layers:
        inputs.append(np.ascontiguousarray(x))
        x = float64_copy(layer).forward(x)
    return inputs


def _require_oracle(oracle: str | None, layers) -> None:
    """Before any finite difference: refuse an unknown oracle, or a layer it has no
    counterpart for (else minutes of checks would be thrown away at the end)."""
    if oracle is None:
        return
    if oracle not in ORACLES:
        raise GradcheckError(f"unknown oracle {oracle!r} (known: {', '.join(ORACLES)})")
    from labkit.oracle import op_for  # no TensorFlow import until a check runs

    for layer in layers:
        op_for(layer)


def check_all(
    network: Network,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    *,
    fast: bool = False,
    oracle: str | None = None,
    seed: int = 0,
    max_elements: int | None = None,
    batch: int = 2,
    loss: str | Loss = "softmax_cross_entropy",
    subject: str | None = None,
    progress: bool | None = None,
) -> CheckSuite:
    """Check every layer on its own, then the whole network through ``loss``.

    ``x`` is a batch ``(N, ...)`` of network inputs and ``y`` its targets ``(N, classes)``;
    both default to :func:`digits` ``(batch, seed)``, two MNIST test digits
    ``(2, 1, 28, 28)`` and one-hot labels ``(2, 10)``. Each layer gets the input it sees
    in the network and is checked in full (every element; at most ``max_elements`` per
    tensor), or with directional derivatives if ``fast``; the network always fast.
    ``oracle="tensorflow"`` then compares every layer with TensorFlow too. ``progress``
    shows a bar on stderr (None: only on a terminal). The suite's reports come in that
    order: one per layer, the network's, then one per layer from the oracle.
    """
    if (x is None) != (y is None):
        raise GradcheckError("pass both x and y, or neither (then the sample digits are used)")
    if x is None:
        x, y = digits(batch, seed)
    _require_oracle(oracle, network.layers)
    mode = "fast" if fast else "full"
    start = time.perf_counter()
    inputs = layer_inputs(network, x)
    steps = list(zip(network.layers, inputs, strict=True))
    bar = tqdm(
        steps,
        desc="gradcheck",
        unit="layer",
        file=sys.stderr,
        disable=None if progress is None else not progress,
    )
    reports: list[Report] = []
    for layer, layer_x in bar:
        reports.append(check_layer(layer, layer_x, mode=mode, seed=seed, max_elements=max_elements))
    reports.append(check_network(network, x, y, loss, mode="fast", seed=seed))
    if oracle == "tensorflow":
        from labkit.oracle import check_layer_against_tensorflow

        for layer, layer_x in steps:
            reports.append(check_layer_against_tensorflow(layer, layer_x, seed=seed))
    return CheckSuite(
        reports,
        subject=subject or "network",
        mode=mode,
        oracle=oracle,
        seconds=time.perf_counter() - start,
    )


def check_one_layer(
    layer,
    x: np.ndarray | None = None,
    *,
    fast: bool = False,
    oracle: str | None = None,
    seed: int = 0,
    max_elements: int | None = None,
    subject: str | None = None,
) -> CheckSuite:
    """:func:`check_all` for a single layer: its own check (and the oracle's) as a suite.

    ``x`` defaults to :func:`labkit.gradcheck.example_input` (from the layer's declared
    input shape), so ``labkit gradcheck --model FILE.py:MyLayer`` needs nothing else.
    """
    _require_oracle(oracle, [layer])
    mode = "fast" if fast else "full"
    start = time.perf_counter()
    if x is None and not is_tutorial_layer(layer):  # a tutorial layer draws its own sample
        x = example_input(layer, seed=seed)
    reports: list[Report] = [check_layer(layer, x, mode=mode, seed=seed, max_elements=max_elements)]
    if oracle == "tensorflow":
        from labkit.oracle import check_layer_against_tensorflow

        reports.append(check_layer_against_tensorflow(layer, x, seed=seed))
    return CheckSuite(
        reports,
        subject=subject or reports[0].subject,
        mode=mode,
        oracle=oracle,
        seconds=time.perf_counter() - start,
    )
