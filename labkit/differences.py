"""The finite-difference engine: numeric derivatives of a scalar objective, judged per element.

An element passes when ``|analytic - numeric| <= atol + rtol * |numeric|``. The forward
difference ``(L(t+eps) - L(t)) / eps`` is tried first and an element it confirms is not
probed further; otherwise the central difference decides, unless the one-sided
differences keep disagreeing at ``eps / 10`` (a kink: ReLU at 0, a max-pool tie), which
is counted as a kink, not a failure. :mod:`labkit.gradcheck` builds the objectives and
validates the settings; this module only perturbs, differences and judges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from labkit.reports import TensorCheck, Tolerance, summarize


@dataclass
class Settings:
    """How the differences are taken (``eps``, ``mode``, sampling) and judged (``tolerance``)."""

    eps: float
    tolerance: Tolerance
    mode: str
    directions: int
    max_elements: int | None
    rng: np.random.Generator


def _differences(
    place: Callable[[float], None], step: float, objective: Callable[[], float]
) -> tuple[float, float, float]:
    """Central, forward and backward differences along ``place`` of an objective that is 0
    at the unmoved point."""
    place(step)
    plus = objective()
    place(-step)
    minus = objective()
    place(0.0)
    return (plus - minus) / (2 * step), plus / step, -minus / step


def _judge(
    analytic: float,
    place: Callable[[float], None],
    objective: Callable[[], float],
    s: Settings,
) -> tuple[float, bool]:
    """Numeric derivative along ``place`` and whether it sits on a kink.

    A forward difference comes first: it costs one evaluation and is exact (up to
    rounding) wherever the output is linear in the tensor, as it is in every weight and
    bias. Only an element it doesn't confirm pays for the central difference; if that
    still fails, it is probed again at ``eps / 10``. A smooth function gives the same
    central difference at both steps and one-sided differences whose disagreement
    shrinks tenfold (curvature); a kink inside the step (or several, along a direction)
    breaks one or the other, and the element is a kink. Otherwise the central
    difference at ``eps`` (less rounding than the finer one) decides.
    """
    place(s.eps)
    up = objective()  # the objectives are L(t) - L(t0): 0 at the unmoved point
    place(0.0)
    forward = up / s.eps
    if abs(analytic - forward) <= s.tolerance.allowed(forward):
        return forward, False
    place(-s.eps)
    down = -objective()
    place(0.0)
    central, backward = (up + down) / (2 * s.eps), down / s.eps
    tolerance = s.tolerance.allowed(central)
    if abs(analytic - central) <= tolerance:
        return central, False
    fine_central, fine_forward, fine_backward = _differences(place, s.eps / 10, objective)
    gap = abs(forward - backward)
    kink = abs(fine_central - central) > tolerance or (
        gap > tolerance and abs(fine_forward - fine_backward) > 0.5 * gap
    )
    return central, kink


def maps_samples_independently(work, x: np.ndarray, output: np.ndarray) -> bool:
    """True when the layer maps each sample on its own (then input checks can be batched)."""
    try:
        singles = np.concatenate([np.asarray(work.forward(x[i : i + 1])) for i in range(len(x))])
    except (ValueError, TypeError):
        return False
    scale = max(float(np.abs(output).max()), 1.0)
    return singles.shape == output.shape and bool(np.allclose(singles, output, 0, 1e-12 * scale))


def compare_input_batched(
    check: TensorCheck,
    work,
    x: np.ndarray,
    output: np.ndarray,
    projection: np.ndarray,
    grad_x: np.ndarray,
    s: Settings,
    chunk: int = 256,
) -> TensorCheck:
    """Full input check with many perturbed copies of a sample stacked into one forward.

    Only valid for layers that treat samples independently (see
    :func:`maps_samples_independently`); it turns one forward per element into one
    forward per ``chunk`` elements.
    """
    n = len(x)
    rows = x.reshape(n, -1)
    per_sample = rows.shape[1]
    base = output.reshape(n, -1)
    weights = projection.reshape(n, -1)
    index = np.arange(rows.size)
    if s.max_elements is not None and rows.size > s.max_elements:
        index = np.sort(s.rng.choice(rows.size, size=s.max_elements, replace=False))

    def shifted(step: float, picks: np.ndarray) -> np.ndarray:
        """L(x + step e_i) - L(x) for each flat index i in picks, ``chunk`` per forward."""
        result = np.empty(len(picks))
        for begin in range(0, len(picks), chunk):
            part = picks[begin : begin + chunk]
            sample, element = np.divmod(part, per_sample)
            moved = rows[sample]  # fancy indexing: a fresh copy per pick
            moved[np.arange(len(part)), element] += step
            out = np.asarray(work.forward(moved.reshape(len(part), *x.shape[1:])))
            out = out.reshape(len(part), -1)
            result[begin : begin + len(part)] = np.sum(weights[sample] * (out - base[sample]), 1)
        return result

    # The same decisions as _judge, vectorized: forward difference, then central
    # difference for what it doesn't confirm, then the eps/10 kink probe.
    analytic = grad_x.reshape(-1)[index]
    numeric = shifted(s.eps, index) / s.eps
    kink = np.zeros(len(index), dtype=bool)
    unsure = np.flatnonzero(~(np.abs(analytic - numeric) <= s.tolerance.allowed(numeric)))
    if len(unsure):
        up = numeric[unsure] * s.eps
        down = -shifted(-s.eps, index[unsure])
        central = (up + down) / (2 * s.eps)
        one_sided_gap = np.abs(up - down) / s.eps
        numeric[unsure] = central
        tolerance = s.tolerance.allowed(central)
        suspect = ~(np.abs(analytic[unsure] - central) <= tolerance)
        if suspect.any():
            fine = s.eps / 10
            picks = index[unsure[suspect]]
            fine_up, fine_down = shifted(fine, picks), -shifted(-fine, picks)
            fine_central = (fine_up + fine_down) / (2 * fine)
            gap, limit = one_sided_gap[suspect], tolerance[suspect]
            on_kink = (np.abs(fine_central - central[suspect]) > limit) | (
                (gap > limit) & (np.abs(fine_up - fine_down) / fine > 0.5 * gap)
            )
            kink[unsure[suspect][on_kink]] = True
    positions = [tuple(int(v) for v in np.unravel_index(i, x.shape)) for i in index]
    return summarize(check, analytic, numeric, kink, positions, s.tolerance)


def compare_tensor(
    check: TensorCheck,
    tensor: np.ndarray,
    analytic_grad: np.ndarray,
    objective: Callable[[], float],
    s: Settings,
) -> TensorCheck:
    """Perturb ``tensor`` in place (restoring it exactly) and compare with ``analytic_grad``.

    ``tensor`` must be C-contiguous: it is perturbed through a flat view of it.
    """
    flat = tensor.reshape(-1)
    original = flat.copy()
    gradient = analytic_grad.reshape(-1)

    if s.mode == "full":
        index = np.arange(flat.size)
        if s.max_elements is not None and flat.size > s.max_elements:
            index = np.sort(s.rng.choice(flat.size, size=s.max_elements, replace=False))
        analytic = gradient[index]
        numeric = np.empty(len(index))
        kink = np.zeros(len(index), dtype=bool)
        for j, i in enumerate(index):

            def place(delta: float, i=i) -> None:
                flat[i] = original[i] + delta

            numeric[j], kink[j] = _judge(analytic[j], place, objective, s)
        positions = [tuple(int(v) for v in np.unravel_index(i, tensor.shape)) for i in index]
        return summarize(check, analytic, numeric, kink, positions, s.tolerance)

    # fast: directional derivatives <g, v>; a direction that crosses a kink is redrawn
    analytic_values, numeric_values, kinks, attempts = [], [], 0, 0
    while len(analytic_values) < s.directions and attempts < 4 * s.directions:
        attempts += 1
        v = s.rng.standard_normal(flat.size)

        def place(delta: float, v=v) -> None:
            np.add(original, delta * v, out=flat)

        analytic = float(gradient @ v)
        numeric, on_kink = _judge(analytic, place, objective, s)
        if on_kink:
            kinks += 1
            continue
        analytic_values.append(analytic)
        numeric_values.append(numeric)
    count = len(analytic_values)
    check = summarize(
        check,
        np.array(analytic_values),
        np.array(numeric_values),
        np.zeros(count, dtype=bool),
        [(d,) for d in range(count)],
        s.tolerance,
    )
    check.kinks = kinks
    if not count:
        # Every direction crossed a kink (e.g. max-pool ties among ReLU zeros): fall back
        # to single elements, where kinks are told apart one by one.
        sampled = replace(s, mode="full", max_elements=16 * s.directions)
        fallback = compare_tensor(check, tensor, analytic_grad, objective, sampled)
        fallback.mode = "fast→elements"
        return fallback
    return check
