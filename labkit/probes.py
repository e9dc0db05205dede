"""How a tensor is moved for finite differences, and what the move does to the objective.

A :class:`Scorer` turns the layer's output into ``L(t) - L(t0)``, per output element, and
an estimate of the rounding in it. A *probe* moves single elements:
``probe(picks, deltas)`` returns, for each ``j``, ``L(t + deltas[j] e[picks[j]]) - L(t0)``
and its rounding scale. Three probes serve every tensor:

- :func:`sequential_probe`: one forward per element moved (always valid);
- :func:`grouped_probe`: one forward moves one element of each slice ``t[a]`` at once,
  where the slices' *footprints* (the outputs each one moves) are disjoint, as a dense
  layer's weight rows or a convolution's output-channel kernels are; each output
  element's change is credited to the one slice that can move it;
- :func:`stacked_input_probe`: for a layer that maps samples independently, many moved
  copies of a sample stacked into one batch, one forward per ``chunk`` elements.

:func:`mover` moves the whole tensor along a direction (directional derivatives).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Probe = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Move = Callable[[np.ndarray], tuple[float, float]]


class Scorer:
    """``L = sum(weights * output)`` relative to the unmoved output ``base``.

    ``response()`` gives, per output element, ``weights * (output - base)`` and the rounding
    scale ``2 |weights * base|`` where the output changed (0 elsewhere: an element that
    didn't move carries no rounding into the difference). Summed over the outputs,
    rounding errors add like independent errors: in quadrature.
    """

    def __init__(self, forward: Callable[[], np.ndarray], base, weights) -> None:
        self.forward = forward
        self.base = np.asarray(base, dtype=np.float64).reshape(-1)
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        self.weights = np.ascontiguousarray(np.broadcast_to(weights, self.base.shape))
        self.scale = 2 * np.abs(self.weights * self.base)
        self.squares = np.square(self.scale)
        self.resolution = float(np.max(np.abs(self.weights * self.base))) if self.base.size else 0.0

    def _moved(self) -> np.ndarray:
        output = np.asarray(self.forward(), dtype=np.float64).reshape(-1)
        if output.shape != self.base.shape:
            raise ValueError(f"the output changed size from {self.base.size} to {output.size}")
        return output - self.base

    def response(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(weights * (output - base), rounding scale, changed mask)``, flat."""
        moved = self._moved()
        changed = moved != 0
        return self.weights * moved, np.where(changed, self.scale, 0.0), changed

    def __call__(self) -> tuple[float, float]:
        """``L(t) - L(t0)`` and its rounding scale."""
        moved = self._moved()
        noise = np.dot(moved != 0, self.squares) if self.base.size > 1 else self.squares[0]
        return float(moved @ self.weights), float(np.sqrt(noise))


def magnitudes(values: np.ndarray) -> np.ndarray:
    """Each element's scale for its step: ``max(|t|, rms(t) / 100)`` (1 for an all-zero
    tensor): relative to the element, so large and tiny tensors are stepped alike, and
    floored so an element at 0 still moves by a step the output can resolve."""
    rms = float(np.sqrt(np.mean(np.square(values)))) if values.size else 0.0
    return np.maximum(np.abs(values), rms / 100 if rms > 0 else 1.0)


#: What one forward call costs beyond the elements it processes (Python, allocation), in
#: elements: the plans below are compared by elements processed plus this per forward.
CALL_COST = 20_000


def element_probe(
    tensor: np.ndarray,
    scorer: Scorer,
    eps: float,
    stacked: Probe | None = None,
    forward_size: int | None = None,
) -> Probe:
    """The cheapest valid probe of ``tensor``'s elements: one element of every slice at
    once (slices along the leading axes, the level estimated cheapest first), the
    ``stacked`` probe of an input where given, else one element per forward.

    Costs are estimated from sizes only (never timed), so the plan, and the report, is
    the same on every run. ``forward_size`` is what one forward processes (default: the
    tensor's size).
    """
    flat = tensor.reshape(-1)
    size = flat.size
    work = forward_size or size
    plans: list[tuple[float, object]] = [(2 * size * (work + CALL_COST), None)]  # sequential
    if stacked is not None:
        per_sample = size // len(tensor)
        plans.append((2 * size * per_sample + (2 * size / STACK) * CALL_COST, stacked))
    for level in range(1, tensor.ndim):
        slices = int(np.prod(tensor.shape[:level]))
        if slices >= 2 and size // slices >= 1:
            forwards = slices + 2 * (size // slices)
            plans.append((forwards * (work + CALL_COST), level))
    deltas = eps * magnitudes(flat)
    tried = 0
    for _, plan in sorted(plans, key=lambda item: item[0]):
        if plan is None or callable(plan):
            return plan or sequential_probe(flat, scorer)
        if tried == 2:
            continue
        tried += 1
        slices = int(np.prod(tensor.shape[:plan]))
        probe = grouped_probe(flat, slices, scorer, deltas)
        if probe is not None:
            return probe
    return sequential_probe(flat, scorer)


def sequential_probe(flat: np.ndarray, scorer: Scorer) -> Probe:
    """One forward per pick: the element moved, scored, put back exactly."""
    original = flat.copy()

    def probe(picks: np.ndarray, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        diff, noise = np.empty(len(picks)), np.empty(len(picks))
        for j, (i, delta) in enumerate(zip(picks.tolist(), deltas.tolist(), strict=True)):
            flat[i] = original[i] + delta
            try:
                diff[j], noise[j] = scorer()
            finally:
                flat[i] = original[i]
        return diff, noise

    return probe


def footprints(flat: np.ndarray, slices: int, scorer: Scorer, deltas: np.ndarray):
    """Which slice ``t[a]`` owns each output element (-1: none), or None when two slices
    move the same output (then elements can't be moved together). One forward per slice,
    the slice moved by ``deltas`` times random signs."""
    original = flat.copy()
    per_slice = flat.size // slices
    signs = np.where(np.random.default_rng(0).random(flat.size) < 0.5, -1.0, 1.0)
    owner = None
    for a in range(slices):
        part = slice(a * per_slice, (a + 1) * per_slice)
        flat[part] = original[part] + signs[part] * deltas[part]
        try:
            _, _, changed = scorer.response()
        finally:
            flat[part] = original[part]
        if owner is None:
            owner = np.full(changed.shape, -1, dtype=np.int64)
        if (owner[changed] >= 0).any():
            return None
        owner[changed] = a
    return owner


def grouped_probe(
    flat: np.ndarray, slices: int, scorer: Scorer, deltas: np.ndarray
) -> Probe | None:
    """A probe moving one element of each of ``slices`` equal contiguous slices per
    forward, or None where the slices' footprints overlap (a scalar output always does)."""
    if scorer.base.size < 2:
        return None
    per_slice = flat.size // slices
    owner = footprints(flat, slices, scorer, deltas)
    if owner is None:
        return None
    original = flat.copy()
    fallback = sequential_probe(flat, scorer)

    def probe(picks: np.ndarray, moves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        diff, noise = np.empty(len(picks)), np.empty(len(picks))
        owners = picks // per_slice
        order = np.lexsort((picks, owners))
        first = np.searchsorted(owners[order], owners[order], side="left")
        rank = np.empty(len(picks), dtype=np.int64)
        rank[order] = np.arange(len(picks)) - first  # a pick's round: its rank in its slice
        for r in range(int(rank.max()) + 1 if len(picks) else 0):
            js = np.flatnonzero(rank == r)
            idx = picks[js]
            flat[idx] = original[idx] + moves[js]
            try:
                moved, rounding, changed = scorer.response()
            finally:
                flat[idx] = original[idx]
            if (owner[changed] < 0).any():  # an output no slice was seen to move
                diff[js], noise[js] = fallback(idx, moves[js])
                continue
            credited = owner[changed]
            diff[js] = np.bincount(credited, moved[changed], slices)[owners[js]]
            squares = np.bincount(credited, np.square(rounding[changed]), slices)
            noise[js] = np.sqrt(squares[owners[js]])
        return diff, noise

    return probe


STACK = 256  # moved copies per forward of the stacked probe


def stacked_input_probe(
    forward: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    output: np.ndarray,
    weights: np.ndarray,
) -> Probe:
    """Moves of single input elements, up to ``STACK`` moved copies of one sample
    stacked into one forward. Only valid for a layer that maps samples independently."""
    n = len(x)
    rows = x.reshape(n, -1)
    per_sample = rows.shape[1]
    base = output.reshape(n, -1)
    weights = np.asarray(weights, dtype=np.float64).reshape(n, -1)
    squares = np.square(2 * weights * base)

    def probe(picks: np.ndarray, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        diff, noise = np.empty(len(picks)), np.empty(len(picks))
        samples = picks // per_sample
        edges = np.flatnonzero(np.diff(samples)) + 1
        for run in np.split(np.arange(len(picks)), edges):  # picks of one sample, in order
            for begin in range(0, len(run), STACK):
                part = run[begin : begin + STACK]
                sample = int(samples[part[0]])
                moved = np.repeat(rows[sample : sample + 1], len(part), axis=0)
                moved[np.arange(len(part)), picks[part] % per_sample] += deltas[part]
                out = np.asarray(forward(moved.reshape(len(part), *x.shape[1:])), np.float64)
                change = out.reshape(len(part), -1) - base[sample]
                diff[part] = change @ weights[sample]
                noise[part] = np.sqrt((change != 0) @ squares[sample])
        return diff, noise

    return probe


def mover(flat: np.ndarray, scorer: Scorer) -> Move:
    """``move(delta)``: the objective with the whole tensor moved by ``delta``, put back."""
    original = flat.copy()

    def move(delta: np.ndarray) -> tuple[float, float]:
        np.add(original, delta, out=flat)
        try:
            return scorer()
        finally:
            flat[...] = original

    return move
