"""Finite-difference gradient checker for one layer or a whole network: the public API.

The layer's output is scalarized with a fixed random projection ``L = sum(R * forward(x))``
so every output element counts; ``backward(R)`` must then return dL/dx and fill
``grads`` with dL/dparam. A check of a layer, on float64 deep copies (the caller's layer
is never touched), goes:

1. the repeat calls and the learning-rate path (:mod:`labkit.layer_calls`): a forward
   that is not deterministic stops the check there;
2. every element of the input and of each parameter against central differences with
   their own error estimate, kinks alone and jointly, then the whole tensor along its
   gradient (:mod:`labkit.differences`, moving tensors through :mod:`labkit.probes`);
   ``mode="fast"`` checks directions only, ``max_elements`` samples elements;
3. the gradients in the layer's own dtype against float64 (:mod:`labkit.precision`).

The results are the types of :mod:`labkit.reports` (re-exported here). Anything the
layer's own code raises is one :class:`GradcheckError` line with the user's file:line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from labkit import layer_calls
from labkit.differences import Settings, compare_tensor
from labkit.errors import LabkitError, one_line, raised
from labkit.layer_calls import (
    ACCUMULATES,
    BAD_UPDATE,
    NOT_DETERMINISTIC,
    NOT_UPDATED,
    ORDER,
    add_notes,
    maps_samples_independently,
)
from labkit.losses import Loss, resolve_loss
from labkit.network import Network
from labkit.parallel import single_threaded_blas
from labkit.precision import cast_copy, check_own_dtype, own_dtype
from labkit.probes import Scorer, element_probe, mover, stacked_input_probe
from labkit.reports import (
    LayerReport,
    NetworkReport,
    Report,
    TensorCheck,
    Tolerance,
    format_table,
)

__all__ = [
    "ACCUMULATES",
    "BAD_UPDATE",
    "DEFAULT_EPS",
    "DEFAULT_RTOL",
    "NOT_DETERMINISTIC",
    "NOT_UPDATED",
    "ORDER",
    "OVERWROTE",
    "BackwardPass",
    "GradcheckError",
    "LayerReport",
    "NetworkReport",
    "Report",
    "TensorCheck",
    "Tolerance",
    "backward_pass",
    "check_layer",
    "check_network",
    "example_input",
    "float64_copy",
    "format_table",
    "layer_name",
    "require_backward",
    "require_finite",
    "settings",
    "valid_gradient",
    "validated_tolerance",
]

OVERWROTE = "backward overwrote the output_gradient it was given"


ANY_SHAPE = (3, 4, 4)  # the sample shape a layer that declares none is checked on


DEFAULT_EPS = 1e-5  # a relative step: h = eps * max(|t|, rms / 100)
DEFAULT_RTOL = 1e-7  # in float64, where a right gradient agrees to ~1e-9


class GradcheckError(LabkitError, ValueError):
    """The check could not run (bad eps, no backward, non-finite output, bad input shape)."""


def validated_tolerance(rtol: float, atol: float) -> Tolerance:
    """The :class:`Tolerance` for ``rtol`` and ``atol``; a negative one is a GradcheckError."""
    if rtol < 0 or atol < 0:
        raise GradcheckError(f"rtol and atol must be >= 0, got {rtol}, {atol}")
    return Tolerance(rtol=rtol, atol=atol)


def settings(
    eps: float = DEFAULT_EPS,
    rtol: float = DEFAULT_RTOL,
    atol: float = 0.0,
    mode: str = "full",
    directions: int = 4,
    max_elements: int | None = None,
    seed: int = 0,
) -> Settings:
    """Validated settings of one check (each mistake a one-line GradcheckError)."""
    if not isinstance(eps, (int, float, np.floating)) or not 0 < eps < 1:
        raise GradcheckError(f"eps must be in (0, 1), got {eps}")
    if mode not in ("full", "fast"):
        raise GradcheckError(f"mode must be 'full' or 'fast', got {mode!r}")
    tolerance = validated_tolerance(rtol, atol)
    if directions < 1:
        raise GradcheckError(f"directions must be >= 1, got {directions}")
    if max_elements is not None and max_elements < 1:
        raise GradcheckError(f"max_elements must be >= 1 or None, got {max_elements}")
    rng = np.random.default_rng(seed)
    return Settings(eps, tolerance, mode, directions, max_elements, rng)


def float64_copy(layer):
    """Deep copy of ``layer`` with every float array it holds in float64 (parameters,
    gradient buffers it allocated, other attributes; aliases kept)."""
    return cast_copy(layer, np.float64)


def layer_name(layer) -> str:
    """The name reports and messages use: ``layer.describe()`` (the network's name for it,
    e.g. ``03-Convolutional``, else its repr), or the class name of a non-labkit layer."""
    describe = getattr(layer, "describe", None)
    return describe() if callable(describe) else type(layer).__name__


def require_backward(layer) -> None:
    """Refuse, with a one-line GradcheckError, a layer that doesn't define its own forward
    and backward (the base class's raise NotImplementedError)."""
    from labkit.layers.base import Layer

    backward = getattr(type(layer), "backward", None)
    if not callable(backward) or backward is Layer.backward:
        raise GradcheckError(f"{layer_name(layer)}: has no backward method to check")
    if not callable(getattr(type(layer), "forward", None)) or type(layer).forward is Layer.forward:
        raise GradcheckError(f"{layer_name(layer)}: has no forward method to check")


def require_finite(value: np.ndarray, what: str, name: str) -> np.ndarray:
    """``value``, or a one-line GradcheckError naming the layer when it holds a nan or inf."""
    if not np.all(np.isfinite(value)):
        raise GradcheckError(f"{name}: {what} is not finite (nan or inf)")
    return value


def example_input(layer, batch: int = 2, seed: int = 0) -> np.ndarray:
    """A float64 input batch for ``layer``, from its declared input shape
    (``input_shape``, ``input_size``); a layer that declares none is taken to be
    elementwise and gets ``(batch, *ANY_SHAPE)``.

    Values are normal draws pushed at least 0.05 away from 0, so ReLU kinks are avoided;
    a continuous draw makes max-pool ties improbable.
    """
    from labkit.layers import MaxPool, Softmax

    shape = getattr(layer, "input_shape", None)
    if shape is None and hasattr(layer, "input_size"):
        shape = (layer.input_size,)
    if shape is None and isinstance(layer, MaxPool):
        side = 2 * layer.pool_size + layer.stride
        shape = (2, side, side)
    if shape is None and isinstance(layer, Softmax):
        shape = (5,)
    if shape is None:
        shape = ANY_SHAPE
    x = np.random.default_rng(seed).standard_normal((batch, *shape))
    return np.where(np.abs(x) < 0.05, x + np.copysign(0.05, x), x)


def check_layer(
    layer,
    x: np.ndarray | None = None,
    *,
    eps: float = DEFAULT_EPS,
    rtol: float = DEFAULT_RTOL,
    atol: float = 0.0,
    mode: str = "full",
    seed: int = 0,
    directions: int = 4,
    max_elements: int | None = None,
) -> LayerReport:
    """Compare ``layer.backward`` with central differences for its input and every parameter.

    ``x`` is a batch ``(N, ...)`` for a layer that follows labkit's contract (default: one
    drawn from its input shape). A layer without a ``params`` dict is checked as the
    tutorial's own layer, on ONE sample as its ``forward`` takes it, its parameter
    gradients inferred from its own SGD update (see :mod:`labkit.gradcheck_tutorial`).
    """
    name = layer_name(layer)
    try:
        s = settings(eps, rtol, atol, mode, directions, max_elements, seed)
    except GradcheckError as exc:
        raise GradcheckError(f"{name}: {exc}") from None
    require_backward(layer)
    from labkit import gradcheck_tutorial  # it builds on this module's helpers

    if gradcheck_tutorial.is_tutorial_layer(layer):
        with single_threaded_blas():
            return gradcheck_tutorial.check_tutorial_layer(layer, x, s, name=name, seed=seed)
    given = x
    x = example_input(layer, seed=seed) if x is None else np.array(x, dtype=np.float64, order="C")
    if x.ndim < 1 or len(x) == 0:
        raise GradcheckError(f"{name}: x must be a non-empty batch (N, ...), got shape {x.shape}")
    try:
        works = [float64_copy(layer), float64_copy(layer)]
    except Exception as exc:  # a user's layer may hold anything
        raise GradcheckError(f"{name}: cannot be copied for the check: {one_line(exc)}") from None
    with single_threaded_blas():  # thousands of tiny ops: BLAS threads only cost here
        report, projection = _check_layer(*works, name, x, s)
        dtype = own_dtype(layer, given)
        if dtype is not None and report.checks[0].tensor != "forward":
            report.checks += check_own_dtype(layer, name, caller(name), x, projection, dtype)
    return report


class BackwardPass(NamedTuple):
    """What :func:`backward_pass` saw of a layer: the values both checkers compare."""

    output: np.ndarray  # forward(x)
    projection: np.ndarray  # R, the output gradient handed to backward
    grad_x: np.ndarray | None  # what backward(R) returned: dL/dx
    grads: dict  # the layer's parameter gradients after backward
    overwrote: bool  # backward changed the R array it was handed


def call_layer(name: str, what: str, function: Callable, *args):
    """``function(*args)`` of a layer under check; whatever the layer's own code raises
    becomes a one-line GradcheckError naming the layer (and ``what`` was called)."""
    try:
        return function(*args)
    except GradcheckError:
        raise
    except Exception as exc:  # a user's layer may raise anything
        if isinstance(exc, ValueError) and name in str(exc):  # labkit's own shape errors
            raise GradcheckError(one_line(exc)) from None
        raise GradcheckError(f"{name}: {what} raised {raised(exc)}") from None


def caller(name: str) -> Callable:
    """``call(what, function, *args)``: :func:`call_layer` for the layer ``name``."""
    return lambda what, function, *args: call_layer(name, what, function, *args)


def backward_pass(work, name: str, x: np.ndarray, rng: np.random.Generator) -> BackwardPass:
    """The layer's forward and ``backward(R)`` for a random R drawn from ``rng``.

    A first forward on different data catches layers that keep a stale cached input.
    """
    call_layer(name, "forward", work.forward, x[::-1].copy() * 0.5 + 0.1)
    forward = call_layer(name, f"forward(x) of shape {x.shape}", work.forward, x)
    output = np.array(require_finite(np.asarray(forward), "forward output", name))
    projection = rng.standard_normal(output.shape)
    handed = projection.copy()
    grad_x = call_layer(name, "backward", work.backward, handed)
    overwrote = not np.array_equal(handed, projection)
    grads = dict(getattr(work, "grads", None) or {})  # before any further forward
    return BackwardPass(output, projection, grad_x, grads, overwrote)


def _check_layer(
    work, path_work, name: str, x: np.ndarray, s: Settings
) -> tuple[LayerReport, np.ndarray]:
    """The repeat calls first (:mod:`labkit.layer_calls`), then the differences of the
    input and every parameter; ``path_work`` is a second fresh copy for the lr path.
    Returns the report and the output gradient R it used."""
    call = caller(name)
    seen = layer_calls.observe(work, call, x, s.rng)
    report = LayerReport(name)
    if "forward" in seen.notes:
        check = TensorCheck(name, "forward", tuple(seen.output.shape), "calls")
        report.checks.append(add_notes(check, seen.notes, "forward"))
        return report, seen.projection
    require_finite(seen.output, "forward output", name)
    notes = seen.notes
    for key, more in layer_calls.learning_rate_path(path_work, call, x, seen).items():
        notes.setdefault(key, []).extend(more)

    def forward(value: np.ndarray) -> np.ndarray:
        return call("forward", work.forward, value)

    scorer = Scorer(lambda: forward(x), seen.output, seen.projection)
    input_check = TensorCheck(name, "input", tuple(x.shape), s.mode)
    if valid_gradient(input_check, x, seen.grad_x):
        grad = np.asarray(seen.grad_x, dtype=np.float64)
        stacked = None
        if s.mode == "full" and maps_samples_independently(forward, x, seen.output):
            stacked = stacked_input_probe(forward, x, seen.output, seen.projection)
        probe = element_probe(x, scorer, s.eps, stacked)
        move = mover(x.reshape(-1), scorer)
        compare_tensor(input_check, x, grad, probe, move, s, scorer.resolution)
    if seen.overwrote:  # callers (hooks, the network) may still hold that array
        input_check.add_note(OVERWROTE)
    report.checks.append(add_notes(input_check, notes, "input"))
    for pname, value in (getattr(work, "params", None) or {}).items():
        check = _check_one(name, pname, value, seen.grads.get(pname), scorer, s)
        report.checks.append(add_notes(check, notes, pname))
    return report, seen.projection


def valid_gradient(check: TensorCheck, value: np.ndarray, grad) -> bool:
    """Note on ``check`` why ``grad`` can't be compared (missing, wrong shape, not finite)."""
    if grad is None:
        where = (
            "returned None" if check.tensor == "input" else f"left grads[{check.tensor!r}] unset"
        )
        check.note = f"backward {where}"
        return False
    grad = np.asarray(grad)
    if grad.shape != value.shape:
        check.note = f"gradient has shape {grad.shape}, expected {value.shape}"
        return False
    if not np.all(np.isfinite(grad)):
        check.note = "gradient is not finite"
        return False
    return True


def _check_one(name, tensor_name, value, grad, scorer: Scorer, s: Settings) -> TensorCheck:
    check = TensorCheck(name, tensor_name, tuple(value.shape), s.mode)
    if not valid_gradient(check, value, grad):
        return check
    if not np.shares_memory(value.reshape(-1), value):
        raise GradcheckError(f"{name}: {tensor_name} is not a contiguous array")
    grad = np.asarray(grad, dtype=np.float64)
    flat = value.reshape(-1)
    probe = element_probe(value, scorer, s.eps, forward_size=scorer.base.size)
    return compare_tensor(check, value, grad, probe, mover(flat, scorer), s, scorer.resolution)


def check_network(
    network: Network,
    x: np.ndarray,
    y: np.ndarray,
    loss: str | Loss = "softmax_cross_entropy",
    *,
    eps: float = DEFAULT_EPS,
    rtol: float = DEFAULT_RTOL,
    atol: float = 0.0,
    mode: str = "fast",
    seed: int = 0,
    directions: int = 4,
    max_elements: int | None = None,
) -> NetworkReport:
    """Check the whole network's backward pass through ``loss(y, network(x))``.

    Defaults to ``mode="fast"``: full element-wise checks of a whole network take
    minutes (use :func:`check_layer` per layer, or ``max_elements``).
    """
    try:
        s = settings(eps, rtol, atol, mode, directions, max_elements, seed)
    except GradcheckError as exc:
        raise GradcheckError(f"network: {exc}") from None
    loss = resolve_loss(loss)
    for layer in network.layers:
        require_backward(layer)
    work = Network([float64_copy(layer) for layer in network.layers])
    x = np.array(x, dtype=np.float64, order="C")
    y = np.asarray(y, dtype=np.float64)
    with single_threaded_blas():
        return _check_network(work, x, y, loss, s)


def _check_network(
    work: Network, x: np.ndarray, y: np.ndarray, loss: Loss, s: Settings
) -> NetworkReport:
    call = caller("network")
    output = require_finite(call("forward", work.forward, x), "network output", "network")
    base_loss = loss.value(y, output)
    if not np.isfinite(base_loss):
        raise GradcheckError(f"network: the {loss.name} loss is not finite on this input")
    grad_x = call("backward", work.backward, loss.prime(y, output))

    def forward() -> np.ndarray:
        return np.array([loss.value(y, call("forward", work.forward, x))])

    scorer = Scorer(forward, [base_loss], [1.0])
    report = NetworkReport("network")
    report.checks.append(_check_one("network", "input", x, grad_x, scorer, s))
    for layer in work.layers:
        grads = getattr(layer, "grads", None) or {}
        for pname, value in (getattr(layer, "params", None) or {}).items():
            report.checks.append(
                _check_one(layer_name(layer), pname, value, grads.get(pname), scorer, s)
            )
    return report
