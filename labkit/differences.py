"""The finite-difference engine: numeric derivatives with their own error, judged.

**Elements.** Each element ``t`` moves by a step relative to its magnitude,
``h = eps * max(|t|, rms(tensor) / 100)`` (``LINEAR_STEP`` instead of ``eps`` in a tensor
the objective is linear in: no truncation error there), in both directions: the central
difference ``(L(t+h) - L(t-h)) / 2h`` is the numeric derivative, and its rounding is
estimated from the outputs that moved (``64 eps |R y| / h``, in quadrature) and the largest
output, which may not show the move at all (``4 eps max|R y| / h``). An element passes
when ``|analytic - numeric| <= rtol * max(|numeric|, FLOOR * max|analytic|) + atol +
rounding``. One that doesn't is probed again at ``h / 10``: one-sided differences
``(L(t+h) - L(t)) / h`` and ``(L(t) - L(t-h)) / h`` that disagree at both steps by the same
slope jump put ``t`` on a kink (ReLU at 0, a max-pool tie), not judged alone; steps and
slopes that agree to their rounding make the numeric value sure, and the element fails;
otherwise (curvature, or a kink between ``h / 10`` and ``h``) ``h / 100`` decides and the
element is judged at ``h / 10``.

**Kinks jointly.** The elements at kinks are then moved together: tied max-pool inputs
moved together stay tied, so ``L`` is smooth along that direction and the gradient's sum
over them must match its slope; where it still kinks, the sum must lie between the two
one-sided slopes. A gradient valid element by element but not jointly fails here.

**Directions.** The whole tensor moves along the gradient itself (in full mode as well),
``u = s * g / max|g|``; a Richardson extrapolation of central differences at ``h`` and
``h / 2`` (``h = 1e-4``) gives ``<grad L, u>`` to ~1e-12, so a whole tensor scaled by
``1 + 1e-7`` fails. ``mode="fast"`` checks only directions: the gradient's and random ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from labkit.probes import Move, Probe, magnitudes
from labkit.reports import FlatPositions, TensorCheck, Tolerance, summarize

EPS = float(np.finfo(np.float64).eps)
ROUNDING = 64  # rounding safety factor: sums of many terms round worse than their total
QUANTUM = 4  # an output too large to resolve the move at all: up to half an ulp of it, lost
FINE = 10  # ratio of the kink probes' steps
DIRECTION_STEP = 1e-4  # relative step along a direction; Richardson cancels the h^2 error
DIRECTION_RTOL = 1e-2  # a direction's tolerance, as a fraction of the elements' rtol
LINEAR_STEP = 1e-2  # relative step in a tensor the objective is linear in: no truncation


@dataclass
class Settings:
    """How the differences are taken (``eps``, ``mode``, sampling) and judged (``tolerance``)."""

    eps: float
    tolerance: Tolerance
    mode: str
    directions: int
    max_elements: int | None
    rng: np.random.Generator


@dataclass
class Judged:
    """Per-element outcome of :func:`judge`."""

    numeric: np.ndarray
    error: np.ndarray  # the numeric value's estimated error (rounding, step dependence)
    allowed: np.ndarray
    kink: np.ndarray


def _rounding(noise, step, resolution: float):
    """The rounding a difference of ``L`` over ``step`` may carry: the outputs that moved
    (``noise``), and one output too large for the move to show in it (``resolution``)."""
    return EPS * (ROUNDING * noise + QUANTUM * resolution) / step


def _central(probe: Probe, picks, up, down, resolution: float = 0.0):
    """Central, forward and backward differences at steps ``up`` / ``down``, and rounding."""
    plus, plus_noise = probe(picks, up)
    minus, minus_noise = probe(picks, -down)
    central = (plus - minus) / (up + down)
    rounding = _rounding(np.hypot(plus_noise, minus_noise), up + down, resolution)
    return central, plus / up, -minus / down, rounding


def judge(
    analytic: np.ndarray,
    picks: np.ndarray,
    original: np.ndarray,
    probe: Probe,
    s: Settings,
    scale: float,
    linear: bool = False,
    resolution: float = 0.0,
) -> Judged:
    """Numeric derivatives of the ``picks`` elements (values ``original``), judged against
    ``analytic`` (see the module docstring); ``scale`` is the tensor's largest |gradient|.
    Where the objective is ``linear`` in the tensor, a forward difference is exact and
    comes first; the elements it doesn't confirm get the whole treatment. ``resolution``
    is the largest ``|R * output|``: a move smaller than half its ulp is lost in it."""
    steps = s.eps * magnitudes(original)

    def exact(h: np.ndarray, at) -> tuple[np.ndarray, np.ndarray]:
        """Steps as they land in floating point: (t + h) - t and t - (t - h)."""
        t = original[at]
        return (t + h) - t, t - (t - h)

    up, down = exact(steps, slice(None))
    count = len(picks)
    numeric, rounding = np.zeros(count), np.zeros(count)
    forward, backward = np.zeros(count), np.zeros(count)
    todo = np.arange(count)
    if linear:
        plus, noise = probe(picks, up)
        numeric, rounding = plus / up, _rounding(noise, up, resolution)
        allowed = s.tolerance.allowed(numeric, scale) + rounding
        todo = np.flatnonzero(~(np.abs(analytic - numeric) <= allowed))
    if len(todo):
        t = todo
        numeric[t], forward[t], backward[t], rounding[t] = _central(
            probe, picks[t], up[t], down[t], resolution
        )
    allowed = s.tolerance.allowed(numeric, scale) + rounding
    error = rounding.copy()
    kink = np.zeros(count, dtype=bool)
    unsure = todo[~(np.abs(analytic[todo] - numeric[todo]) <= allowed[todo])]
    if not len(unsure):
        return Judged(numeric, error, allowed, kink)

    u = unsure
    up2, down2 = exact(steps[u] / FINE, u)
    fine, fine_forward, fine_backward, fine_rounding = _central(
        probe, picks[u], up2, down2, resolution
    )
    fine_allowed = s.tolerance.allowed(fine, scale) + fine_rounding
    # A kink: the one-sided slopes differ by more than their rounding (which is twice the
    # central difference's), by as much at h/10 as at h. A NaN is never a kink: it fails.
    gap, fine_gap = np.abs(forward[u] - backward[u]), np.abs(fine_forward - fine_backward)
    finite = np.isfinite(numeric[u]) & np.isfinite(fine)
    at_kink = finite & (gap > allowed[u] + 2 * rounding[u])
    at_kink &= (fine_gap > 0.5 * gap) & (fine_gap > 2 * fine_rounding)
    kink[u[at_kink]] = True
    # Straight at this scale (the one-sided slopes agree to their rounding, the steps to
    # theirs): the coarse step, with less rounding, is sure, and it is a failure. Curved
    # (the slopes' gap shrinks with the step) or a kink between h/10 and h: h/100 decides.
    drift = np.abs(numeric[u] - fine)
    curved = (gap > 4 * rounding[u]) & (fine_gap < 0.5 * gap)
    agree = ~at_kink & ~curved & (drift <= 2 * (rounding[u] + fine_rounding))
    agree |= ~finite
    error[u] = np.where(agree, drift + rounding[u], error[u])
    between = np.flatnonzero(~agree & ~at_kink)
    if len(between):
        b = u[between]
        up3, down3 = exact(steps[b] / FINE**2, b)
        finest, _, _, finest_rounding = _central(probe, picks[b], up3, down3, resolution)
        steady = np.abs(fine[between] - finest) <= fine_allowed[between] + (
            s.tolerance.allowed(finest, scale) + finest_rounding
        )
        numeric[b] = fine[between]
        error[b] = np.abs(fine[between] - finest) + fine_rounding[between]
        allowed[b] = fine_allowed[between] + 2 * np.abs(fine[between] - finest)
        kink[b[~steady]] = True
    return Judged(numeric, error, allowed, kink)


@dataclass
class Slope:
    """A directional derivative: its value, estimated error, and whether it is sure."""

    value: float
    error: float
    sure: bool


def slope_along(move: Move, u: np.ndarray, resolution: float = 0.0) -> Slope:
    """``<grad L, u>`` by Richardson extrapolation of central differences at ``h`` and
    ``h / 2``, ``h`` = 1e-4, 1e-6, 1e-8 until it is sure: both steps agree and the
    one-sided slopes converge (a kink inside the step breaks one or the other; a kink
    exactly at ``t`` leaves the central difference steady but not the one-sided gap)."""
    best, previous_gap = None, None
    for h in (DIRECTION_STEP, DIRECTION_STEP / 100, DIRECTION_STEP / 1e4):
        centrals, gaps, noise = [], [], 0.0
        for step in (h, h / 2):
            plus, plus_noise = move(step * u)
            minus, minus_noise = move(-step * u)
            centrals.append((plus - minus) / (2 * step))
            gaps.append(abs(plus + minus) / step)
            noise = max(noise, EPS * (plus_noise + minus_noise + QUANTUM * resolution) / step)
        coarse, fine = centrals
        value = (4 * fine - coarse) / 3
        error = abs(coarse - fine) + noise
        slack = 1e-6 * abs(value) + ROUNDING * noise
        # One-sided slopes that differ by the same amount at h and h/2 cross a kink (the
        # central difference can be steady across one); if their gap stays as a 100 times
        # smaller step, the kink is exactly at t, and no smaller step escapes it.
        kinked = gaps[1] > 0.75 * gaps[0] and gaps[0] > ROUNDING * noise
        if kinked and previous_gap is not None and gaps[0] > 0.1 * previous_gap:
            return Slope(value, error, sure=False)
        previous_gap = gaps[0] if kinked else None
        slope = Slope(value, error, sure=not kinked and abs(coarse - fine) <= slack)
        if slope.sure:
            return slope
        best = slope if best is None or slope.error < best.error else best
    return best


def slope_allowed(slope: Slope, s: Settings) -> float:
    """The error allowed against a sure slope: a hundredth of the elements' rtol, plus
    four times its own estimated error."""
    rtol = s.tolerance.rtol * DIRECTION_RTOL
    return s.tolerance.atol + rtol * abs(slope.value) + 4 * slope.error


def judge_gradient_direction(check: TensorCheck, analytic: float, slope: Slope, s) -> None:
    """Note a failure on ``check`` when ``analytic`` misses the slope along the gradient."""
    relative = abs(analytic - slope.value) / max(abs(slope.value), abs(analytic), 1e-300)
    check.directional = relative
    if not abs(analytic - slope.value) <= slope_allowed(slope, s):
        check.add_note(
            f"along the gradient: analytic {analytic:.10g}, numeric {slope.value:.10g} "
            f"± {slope.error:.1g} (relative error {relative:.1e})"
        )


def _gradient_direction(gradient: np.ndarray, magnitude: np.ndarray) -> np.ndarray | None:
    """``magnitude * g / max|g|``: the whole tensor moved the way the gradient says."""
    top = float(np.max(np.abs(gradient))) if gradient.size else 0.0
    return None if top == 0 or not np.isfinite(top) else magnitude * (gradient / top)


def check_kinks_jointly(
    check, gradient, picks, kink, original, move, s, scale, resolution: float = 0.0
) -> None:
    """Move every element at a kink together (see the module docstring); note on ``check``
    a gradient that is not valid jointly, or a tensor with nothing but kinks."""
    at = picks[kink]
    if not len(at):
        return
    u = np.zeros(len(original))
    u[at] = s.eps * magnitudes(original)[at] / FINE
    analytic = float(gradient[at] @ u[at])
    sides = []
    for factor in (1.0, 1.0 / FINE):
        plus, plus_noise = move(factor * u)
        minus, minus_noise = move(-factor * u)
        rounding = _rounding(np.hypot(plus_noise, minus_noise), factor, resolution)
        sides.append((plus / factor, -minus / factor, rounding))
    (f1, b1, r1), (f2, b2, r2) = sides
    allowed = s.tolerance.allowed((f2 + b2) / 2, scale * float(np.abs(u).sum())) + r2
    smooth = abs(f1 - b1) <= allowed + r1 and abs(f2 - b2) <= allowed
    count = f"the {len(at)} elements at kinks, moved together"
    if smooth:
        slope = (f2 + b2) / 2
        if not abs(analytic - slope) <= allowed:
            check.add_note(f"{count}: the gradient gives {analytic:.6g}, the slope is {slope:.6g}")
    elif not min(f2, b2) - allowed <= analytic <= max(f2, b2) + allowed:
        check.add_note(
            f"{count}: the gradient gives {analytic:.6g}, outside the one-sided slopes "
            f"{min(f2, b2):.6g} and {max(f2, b2):.6g}"
        )
    elif check.kinks == check.checked:
        check.add_note("every element is at a kink: no derivative could be compared")


def miss_chance(sampled: int, fraction: float) -> float:
    """The chance that ``sampled`` elements drawn at random (without replacement) from a
    tensor all miss a fault touching ``fraction`` of its elements: at most
    ``(1 - fraction) ** sampled``, whatever the tensor's size (drawing without replacement
    only lowers it)."""
    return float((1.0 - fraction) ** sampled)


def is_linear(move: Move, magnitude: np.ndarray, s: Settings, step: float = LINEAR_STEP) -> bool:
    """Whether the objective is linear in the tensor (a weight, a convolution's input):
    along two random directions, ``L(t + u) + L(t - u) - 2 L(t)`` is rounding alone."""
    for _ in range(2):
        u = step * magnitude * s.rng.standard_normal(magnitude.size)
        (plus, plus_noise), (minus, minus_noise) = move(u), move(-u)
        if not abs(plus + minus) <= ROUNDING * EPS * (plus_noise + minus_noise):
            return False
    return True


def compare_tensor(
    check: TensorCheck,
    tensor: np.ndarray,
    analytic_grad: np.ndarray,
    probe: Probe,
    move: Move,
    s: Settings,
    resolution: float = 0.0,
) -> TensorCheck:
    """Compare ``analytic_grad`` with differences of ``tensor`` (moved in place through
    ``probe`` and ``move``, which put it back exactly): elements (full mode), kinks
    jointly, and directions."""
    original = tensor.reshape(-1).copy()
    gradient = analytic_grad.reshape(-1)
    scale = float(np.max(np.abs(gradient))) if gradient.size else 0.0
    magnitude = magnitudes(original)
    if s.mode != "full":
        return _compare_directions(check, tensor, analytic_grad, probe, move, s, resolution)
    picks = np.arange(original.size)
    if s.max_elements is not None and original.size > s.max_elements:
        picks = np.sort(s.rng.choice(original.size, size=s.max_elements, replace=False))
    analytic = gradient[picks]
    linear = is_linear(move, magnitude, s)
    # linear in the tensor (a weight, a bias, a convolution's input): a large step has no
    # truncation error and a thousand times less rounding than eps
    stepped = replace(s, eps=max(s.eps, LINEAR_STEP)) if linear else s
    judged = judge(analytic, picks, original[picks], probe, stepped, scale, linear, resolution)
    positions = FlatPositions(tensor.shape, picks)
    summarize(check, analytic, judged.numeric, judged.kink, positions, judged.allowed, judged.error)
    if len(picks) == original.size:  # a sample of a tie would move apart: all or nothing
        check_kinks_jointly(
            check, gradient, picks, judged.kink, original, move, s, scale, resolution
        )
    u = _gradient_direction(gradient, magnitude)
    if u is not None and not check.failures:  # the whole tensor, where no element failed
        slope = slope_along(move, u, resolution)
        if slope.sure:
            judge_gradient_direction(check, float(gradient @ u), slope, s)
    return check


def _compare_directions(
    check, tensor, analytic_grad, probe, move, s: Settings, resolution: float = 0.0
) -> TensorCheck:
    """Fast mode: the gradient's direction, then random ones; a direction that crosses a
    kink is redrawn, and if every one does, sampled elements are checked instead."""
    gradient = analytic_grad.reshape(-1)
    magnitude = magnitudes(tensor.reshape(-1))
    first = _gradient_direction(gradient, magnitude)
    pending = [] if first is None else [first]
    analytic, numeric, errors, allowed = [], [], [], []
    kinks = attempts = 0
    while len(analytic) < s.directions and attempts < 4 * s.directions:
        attempts += 1
        u = pending.pop() if pending else magnitude * s.rng.standard_normal(gradient.size)
        slope = slope_along(move, u, resolution)
        if not slope.sure:
            kinks += 1
            continue
        analytic.append(float(gradient @ u))
        numeric.append(slope.value)
        errors.append(slope.error)
        allowed.append(slope_allowed(slope, s))
        if u is first:
            relative = abs(analytic[0] - numeric[0]) / max(
                abs(numeric[0]), abs(analytic[0]), 1e-300
            )
            check.directional = relative
    if not analytic:
        # Every direction crossed a kink (e.g. max-pool ties among ReLU zeros): fall back
        # to single elements, where kinks are told apart one by one.
        sampled = replace(s, mode="full", max_elements=16 * s.directions)
        fallback = compare_tensor(check, tensor, analytic_grad, probe, move, sampled, resolution)
        fallback.mode = "fast→elements"
        return fallback
    count = len(analytic)
    summarize(
        check,
        np.array(analytic),
        np.array(numeric),
        np.zeros(count, dtype=bool),
        [(d,) for d in range(count)],
        np.array(allowed),
        np.array(errors),
    )
    check.kinks = kinks
    return check
