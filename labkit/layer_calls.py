"""What a layer must do when it is called again, checked before any finite difference.

- ``forward`` is deterministic: two forwards of one input give one output (a layer that
  draws new randomness per call can't be differenced: every element would read as a kink);
- ``backward`` can be called again without clearing anything: gradients written into
  arrays the layer allocated itself work; gradients that accumulate across calls fail;
- ``backward(g)`` leaves the parameters alone, and ``backward(g, lr)`` returns the same
  input gradient and moves each parameter by exactly ``-lr * grad`` (the tutorial's loop);
- samples are mapped independently (then moved inputs can be stacked into one batch),
  judged on a batch the layer hasn't seen, so it holds at batch size 1 too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from labkit.errors import LabkitError
from labkit.reports import TensorCheck

EPS = float(np.finfo(np.float64).eps)

#: The learning rate handed to a layer's backward: on the learning-rate path, and to the
#: tutorial's layers, whose gradients are read off their update. A power of two, so
#: ``lr * g`` and ``/ lr`` are exact and only ``p - lr * g`` rounds: the inferred gradient
#: is within about ``2**-52 * (|p| / lr + |g|)`` of the one backward computed (~1e-16 for
#: weights of order 1). Large, so an input gradient computed from the already-updated
#: weights, ``(W - lr dW)^T R``, is wrong by ``lr dW^T R``, of the order of the gradient
#: itself. Not 1: at lr = 1 an update that forgets its ``learning_rate`` factor
#: (``self.weights -= weights_gradient``) is the right update; at 0.5 it reads as a
#: gradient twice too large.
LEARNING_RATE = 0.5

NOT_DETERMINISTIC = "forward is not deterministic"
ACCUMULATES = "gradients accumulate across calls"
CHANGES = "gradients change across calls"
ORDER = (
    "the input gradient changes with learning_rate: "
    "backward computes it from the updated parameters"
)
BAD_UPDATE = "backward(g, learning_rate) does not change it by exactly -learning_rate * grad"
NOT_UPDATED = "backward(g, learning_rate) does not update it"
MOVED = "backward without a learning rate changed it"

Call = Callable[..., object]  # call(what, function, *args): the layer's code, errors one-lined


class Observed(NamedTuple):
    """What two rounds of forward and backward did."""

    output: np.ndarray
    projection: np.ndarray  # R, the output gradient handed to backward
    grad_x: object  # what the first backward(R) returned
    grads: dict  # copies of the parameter gradients after the first backward
    overwrote: bool  # backward changed the R array it was handed
    notes: dict  # tensor name -> notes about it ("forward" for the forward itself)


def _snapshot(grads) -> dict:
    """Copies of a grads dict's arrays (a layer may overwrite them in place next call)."""
    return {key: np.array(value, copy=True) for key, value in (grads or {}).items()}


def _same(a, b) -> bool:
    """Equal up to rounding: ``|a - b| <= 1e-12 * max|a|`` elementwise."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    return bool(np.all(np.abs(a - b) <= 1e-12 * scale))


def _repeat_note(first, second) -> str | None:
    """Why a second backward's gradient differs from the first's, or None."""
    if first is None or second is None or _same(first, second):
        return None
    if _same(2 * np.asarray(first, dtype=np.float64), second):
        return f"{ACCUMULATES} (the second backward gave twice the first)"
    return CHANGES


def observe(work, call: Call, x: np.ndarray, rng: np.random.Generator) -> Observed:
    """Forward twice, backward twice on ``work`` (a private float64 copy), judging repeats.

    A first forward on other data catches layers that keep a stale cached input.
    """
    params = getattr(work, "params", None) or {}
    pristine = {key: value.copy() for key, value in params.items()}
    notes: dict[str, list[str]] = {}
    call("forward", work.forward, x[::-1].copy() * 0.5 + 0.1)
    output = np.array(call(f"forward(x) of shape {x.shape}", work.forward, x), dtype=np.float64)
    if not np.all(np.isfinite(output)):
        return Observed(output, np.zeros_like(output), None, {}, False, notes)  # refused
    again = np.asarray(call("forward", work.forward, x), dtype=np.float64)
    if not _same(output, again):
        worst = float(np.max(np.abs(output - again))) if output.shape == again.shape else None
        detail = (
            "" if worst is None else f" (two forwards of one input differ by up to {worst:.3g})"
        )
        notes["forward"] = [NOT_DETERMINISTIC + detail]
        return Observed(output, np.zeros_like(output), None, {}, False, notes)
    projection = rng.standard_normal(output.shape)
    handed = projection.copy()
    grad_x = call("backward", work.backward, handed)
    overwrote = not np.array_equal(handed, projection)
    grad_x = None if grad_x is None else np.array(grad_x, copy=True)
    grads = _snapshot(getattr(work, "grads", None))
    for key, value in params.items():
        if not np.array_equal(value, pristine[key]):
            notes.setdefault(key, []).append(MOVED)
            value[...] = pristine[key]
    call("forward", work.forward, x)
    second_x = call("backward", work.backward, projection.copy())
    second = _snapshot(getattr(work, "grads", None))
    for key, first in [("input", grad_x), *grads.items()]:
        note = _repeat_note(first, second_x if key == "input" else second.get(key))
        if note:
            notes.setdefault(key, []).append(note)
    for key, value in params.items():
        value[...] = pristine[key]
    return Observed(output, projection, grad_x, grads, overwrote, notes)


def learning_rate_path(work, call: Call, x: np.ndarray, seen: Observed) -> dict[str, list[str]]:
    """``backward(R, LEARNING_RATE)`` on ``work`` (a fresh float64 copy): notes on the input
    when its gradient differs from ``backward(R)``'s, and on each parameter not moved by
    exactly ``-LEARNING_RATE * grad``."""
    params = getattr(work, "params", None) or {}
    if any(np.shape(seen.grads.get(key)) != np.shape(value) for key, value in params.items()):
        return {}  # a gradient is missing or mis-shaped: its own check says so; no update
    before = {key: value.copy() for key, value in params.items()}
    call("forward", work.forward, x)
    what = f"backward(output_gradient, learning_rate={LEARNING_RATE})"
    try:
        grad_x = call(what, work.backward, seen.projection.copy(), LEARNING_RATE)
    except LabkitError as exc:  # the differences still run: report it beside them
        return {"input": [str(exc).partition(": ")[2] or str(exc)]}
    notes: dict[str, list[str]] = {}
    if seen.grad_x is not None and grad_x is not None and not _same(seen.grad_x, grad_x):
        notes["input"] = [ORDER]
    for key, value in params.items():
        grad = seen.grads.get(key)
        if grad is None or np.shape(grad) != value.shape:
            continue  # the gradient check itself says what is wrong with it
        expected = -LEARNING_RATE * np.asarray(grad, dtype=np.float64)
        change = np.asarray(value, dtype=np.float64) - before[key]
        slack = 8 * EPS * (np.abs(before[key]) + np.abs(expected)) + 1e-300
        if not change.any() and expected.any():
            notes[key] = [NOT_UPDATED]
        elif not np.all(np.abs(change - expected) <= slack):
            worst = int(np.argmax(np.abs(change - expected) / slack))
            notes[key] = [
                f"{BAD_UPDATE} (changed by {change.flat[worst]:.6g} where "
                f"-lr * grad is {expected.flat[worst]:.6g})"
            ]
    return notes


def maps_samples_independently(
    forward: Callable[[np.ndarray], np.ndarray], x: np.ndarray, output: np.ndarray
) -> bool:
    """True when each sample's output depends on that sample alone: alone, and beside
    other samples the layer hasn't seen, it gets the output it gets in ``x``."""
    other = x[::-1] * 0.5 + 0.1
    try:
        singles = [
            np.asarray(forward(x[i : i + 1].copy()), dtype=np.float64) for i in range(len(x))
        ]
        beside = np.asarray(forward(np.concatenate([x, other])), dtype=np.float64)[: len(x)]
    except Exception:  # a layer fixed to one batch size couples it: no stacking
        return False
    scale = max(float(np.abs(output).max()), 1.0)
    return all(
        candidate.shape == output.shape and np.allclose(candidate, output, 0, 1e-12 * scale)
        for candidate in (np.concatenate(singles), beside)
    )


def add_notes(check: TensorCheck, notes: dict[str, list[str]], key: str) -> TensorCheck:
    """Put the notes about tensor ``key`` on ``check``."""
    for note in notes.get(key, ()):
        check.add_note(note)
    return check
