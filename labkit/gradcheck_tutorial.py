"""Checking the tutorial's own layers: one sample, parameters as attributes, SGD in backward.

The layers of the "CNN from scratch" tutorial (TheIndependentCode/Neural-Network), as a
student writes them, take ONE sample as their ``forward`` takes it (``(d, h, w)`` images,
``(n, 1)`` columns), keep their parameters as plain attributes (``kernels``, ``biases``,
``weights``, ``bias``) and apply SGD inside ``backward(output_gradient, learning_rate)``
without exposing any gradient. :func:`labkit.gradcheck.check_layer` hands a layer here
when it has no ``params`` dict (:func:`is_tutorial_layer`). Everything runs on float64
deep copies; the caller's layer is never touched.

- The **parameters** are the layer's float ndarray attributes that ``forward`` reads but
  does not write: moving one moves the output, while ``forward`` neither rebinds nor
  changes it (``self.input`` and ``self.output`` are forward's state, not parameters; a
  gradient buffer that only ``backward`` writes is not read by ``forward``).
- ``backward(R, LEARNING_RATE)`` on one copy gives the **input gradient** of
  ``L = sum(R * forward(x))`` (what it returns) and each **parameter's gradient** (its own
  update, ``(p_before - p_after) / LEARNING_RATE``); both are compared with finite
  differences at the original parameters, on another copy (:mod:`labkit.differences`).
  A parameter the update leaves unchanged while the loss depends on it fails as
  "backward did not update <name>" (a constant array the layer reads but never trains
  would fail the same way: the tutorial trains every array it keeps).
- A second copy runs ``backward(R, 0.0)``: an input gradient that differs from the first
  is read from the already-updated parameters (the classic ordering bug), and its check
  carries the note :data:`ORDER`.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np

from labkit.differences import Settings, compare_tensor
from labkit.errors import one_line
from labkit.gradcheck import (
    OVERWROTE,
    GradcheckError,
    call_layer,
    example_input,
    require_finite,
    valid_gradient,
)
from labkit.layer_calls import LEARNING_RATE, ORDER
from labkit.probes import Scorer, element_probe, mover
from labkit.reports import LayerReport, TensorCheck

__all__ = [
    "LEARNING_RATE",
    "ORDER",
    "SgdStep",
    "check_tutorial_layer",
    "find_parameters",
    "float_arrays",
    "is_tutorial_layer",
    "sgd_step",
    "tutorial_float64_copy",
    "tutorial_input",
]


def is_tutorial_layer(layer) -> bool:
    """The rule :func:`labkit.gradcheck.check_layer` goes by: a layer without a ``params``
    dict is checked as the tutorial's own layer."""
    return not isinstance(getattr(layer, "params", None), dict)


def float_arrays(layer) -> dict[str, np.ndarray]:
    """The layer's float ndarray attributes by name, in the order they were first set."""
    return {
        key: value
        for key, value in getattr(layer, "__dict__", {}).items()
        if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)
    }


def tutorial_float64_copy(layer, name: str):
    """Deep copy of ``layer`` with every float ndarray attribute a C-contiguous float64
    array (attributes that share one array still share the converted one)."""
    try:
        work = copy.deepcopy(layer)
    except Exception as exc:  # a student's layer may hold anything
        raise GradcheckError(f"{name}: cannot be copied for the check: {one_line(exc)}") from None
    converted: dict[int, np.ndarray] = {}
    for key, value in float_arrays(work).items():
        if id(value) not in converted:
            converted[id(value)] = np.array(value, dtype=np.float64, order="C")
        setattr(work, key, converted[id(value)])
    return work


def tutorial_input(layer, x, name: str, seed: int = 0) -> np.ndarray:
    """``x`` as one float64 sample; when None, one drawn from the layer's ``input_shape``
    (the tutorial's Convolutional and Reshape have one), else a one-line GradcheckError."""
    if x is None:
        if getattr(layer, "input_shape", None) is None:
            raise GradcheckError(
                f"{name}: pass x, one sample as its forward takes it (e.g. (n, 1) for a "
                "dense layer): the layer declares no input_shape"
            )
        try:
            return np.array(example_input(layer, batch=1, seed=seed)[0])
        except (TypeError, ValueError):
            raise GradcheckError(
                f"{name}: input_shape {layer.input_shape!r} is not a shape; pass x"
            ) from None
    x = np.array(x, dtype=np.float64, order="C")
    if x.ndim < 1 or x.size == 0:
        raise GradcheckError(
            f"{name}: x must be one non-empty sample as its forward takes it "
            f"(e.g. (d, h, w) or (n, 1)), got shape {x.shape}"
        )
    return x


def _forward(work, name: str, x: np.ndarray, *, finite: bool = True) -> np.ndarray:
    """A float64 copy of ``work.forward(x)`` (forward may reuse its output array), finite
    unless told otherwise (the second probe input need not be in the layer's domain)."""
    output = call_layer(name, f"forward(x) of shape {x.shape}", work.forward, x)
    if output is None:
        raise GradcheckError(f"{name}: forward returned None")
    try:
        output = np.array(output, dtype=np.float64)
    except (TypeError, ValueError):
        raise GradcheckError(f"{name}: forward returned a {type(output).__name__}") from None
    return require_finite(output, "forward output", name) if finite else output


def find_parameters(
    work, name: str, x: np.ndarray, other: np.ndarray
) -> tuple[list[str], np.ndarray]:
    """The names of ``work``'s parameters (float arrays that forward reads but does not
    write) and ``forward(x)``; ``work``'s arrays are left exactly as they were.

    ``other`` is a second input: an array is read if moving it moves the output at ``x``
    or at ``other`` (so a zero ``x`` does not hide the weights).
    """
    _forward(work, name, other, finite=False)
    before = {key: (value, value.copy()) for key, value in float_arrays(work).items()}
    output = _forward(work, name, x)
    after = float_arrays(work)
    kept = [
        key
        for key, (value, values) in before.items()
        if after.get(key) is value and np.array_equal(value, values, equal_nan=True)
    ]
    other_output = _forward(work, name, other, finite=False)
    directions = np.random.default_rng(0)
    params = []
    for key in kept:
        value = after[key]
        saved = value.copy()
        value += 1e-3 * (1 + np.abs(saved)) * directions.standard_normal(value.shape)
        try:
            moved = not (
                np.array_equal(work.forward(x), output, equal_nan=True)
                and np.array_equal(work.forward(other), other_output, equal_nan=True)
            )
        except Exception:  # forward broke when the array moved: it reads it
            moved = True
        finally:
            value[...] = saved
        if moved:
            params.append(key)
    return params, output


class SgdStep(NamedTuple):
    """What one ``backward(R, learning_rate)`` on a fresh copy did."""

    grad_x: np.ndarray | None  # what backward returned
    before: dict[str, np.ndarray]  # each parameter before the update
    after: dict[str, np.ndarray | None]  # and after it (None: gone or not an array)
    overwrote: bool  # backward changed the R array it was handed


def _as_float(value) -> np.ndarray | None:
    try:
        return None if value is None else np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def sgd_step(
    layer,
    name: str,
    x: np.ndarray,
    other: np.ndarray,
    projection: np.ndarray,
    learning_rate: float,
    params: list[str],
) -> SgdStep:
    """``forward(other)``, ``forward(x)``, then ``backward(R, learning_rate)`` on a fresh
    float64 copy of ``layer``. The first forward, on other data, catches a layer that
    keeps a stale cached input."""
    probe = tutorial_float64_copy(layer, name)
    _forward(probe, name, other.copy(), finite=False)  # copies: the probe may keep and change them
    _forward(probe, name, x.copy())
    before = {key: getattr(probe, key).copy() for key in params}
    handed = projection.copy()
    what = "backward(output_gradient, learning_rate)"
    grad_x = call_layer(name, what, probe.backward, handed, learning_rate)
    after = {key: _as_float(getattr(probe, key, None)) for key in params}
    overwrote = not np.array_equal(handed, projection)
    return SgdStep(_as_float(grad_x), before, after, overwrote)


def check_tutorial_layer(layer, x, s: Settings, *, name: str, seed: int = 0) -> LayerReport:
    """Check a tutorial-style layer on one sample ``x``: the input gradient it returns and
    every parameter's gradient inferred from its own update (see the module docstring)."""
    x = tutorial_input(layer, x, name, seed)
    other = x[::-1].copy() * 0.5 + 0.1
    work = tutorial_float64_copy(layer, name)  # finite differences only: never updated
    params, output = find_parameters(work, name, x, other)
    projection = s.rng.standard_normal(output.shape)
    step = sgd_step(layer, name, x, other, projection, LEARNING_RATE, params)

    scorer = Scorer(lambda: _forward(work, name, x, finite=False), output, projection)

    notes = [OVERWROTE] if step.overwrote else []
    if _reads_updated_parameters(layer, name, x, other, projection, step.grad_x):
        notes.append(ORDER)
    check = TensorCheck(name, "input", tuple(x.shape), s.mode)
    if valid_gradient(check, x, step.grad_x):
        check = _compare(check, x, step.grad_x, scorer, s)
    check.note = "; ".join(filter(None, [check.note, *notes]))
    report = LayerReport(name, [check])
    for key in params:
        value, before, after = getattr(work, key), step.before[key], step.after[key]
        report.checks.append(_check_parameter(name, key, value, before, after, scorer, s))
    return report


def _reads_updated_parameters(layer, name, x, other, projection, grad_x) -> bool:
    """Whether ``backward(R, 0.0)`` (no update) returns another input gradient than
    ``backward(R, LEARNING_RATE)`` did: then it reads the parameters after updating them."""
    if grad_x is None:
        return False
    try:
        still = sgd_step(layer, name, x, other, projection, 0.0, []).grad_x
    except GradcheckError:  # only a diagnosis: the check itself ran
        return False
    return (
        still is not None
        and still.shape == grad_x.shape
        and not np.array_equal(still, grad_x, equal_nan=True)
    )


def _compare(check: TensorCheck, value: np.ndarray, gradient, scorer: Scorer, s: Settings):
    """Differences of ``value`` (an array the scored copy reads) against ``gradient``."""
    probe = element_probe(value, scorer, s.eps)
    move = mover(value.reshape(-1), scorer)
    return compare_tensor(check, value, gradient, probe, move, s, scorer.resolution)


def _check_parameter(name, key, value, before, after, scorer: Scorer, s: Settings) -> TensorCheck:
    """One parameter: its gradient ``(before - after) / LEARNING_RATE`` against finite
    differences at ``value`` (the original, in the copy the objective evaluates)."""
    check = TensorCheck(name, key, tuple(value.shape), s.mode)
    if after is None:
        check.note = f"backward left {key} without an array"
        return check
    if after.shape != value.shape:
        check.note = f"the update changed {key} to shape {after.shape}, expected {value.shape}"
        return check
    if np.array_equal(before, after):  # no update: right only where the gradient is 0
        check = _compare(check, value, np.zeros_like(value), scorer, s)
        if check.passed:
            return check
        missing = f"backward did not update {key}"
        return TensorCheck(name, key, tuple(value.shape), s.mode, note=missing)
    gradient = (before - after) / LEARNING_RATE
    if valid_gradient(check, value, gradient):
        check = _compare(check, value, gradient, scorer, s)
    return check
