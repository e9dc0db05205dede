"""Finite-difference gradient checker for one layer or a whole network.

The layer's output is scalarized with a fixed random projection ``L = sum(R * forward(x))``
so every output element counts; ``backward(R)`` must then return dL/dx and fill
``grads`` with dL/dparam, which are compared with central differences
``(L(t + eps) - L(t - eps)) / 2 eps`` for the input and every parameter.

An element passes when ``|analytic - numeric| <= atol + rtol * |numeric|`` (numpy's
``isclose`` rule). Where the one-sided differences ``(L(t+eps) - L(t)) / eps`` and
``(L(t) - L(t-eps)) / eps`` themselves disagree by more than that tolerance, ``t`` sits
within ``eps`` of a kink (ReLU at 0, a max-pool tie): the element is counted as a
``kink``, not as a failure, since no single derivative exists there. The forward
difference is tried first and an element it confirms is not probed further (so at a
max-pool tie the element that got the gradient passes and the others are kinks).

``mode="full"`` perturbs every element (``max_elements`` caps it per tensor with a random
subset); ``mode="fast"`` checks ``directions`` random directional derivatives ``<g, v>``
per tensor, whatever its size, and redraws a direction that crosses a kink.
Everything runs on a float64 deep copy: the caller's layer is never touched.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from labkit.errors import LabkitError
from labkit.losses import LOSSES, Loss
from labkit.network import Network
from labkit.parallel import single_threaded_blas

TINY = np.finfo(np.float64).tiny


class GradcheckError(LabkitError, ValueError):
    """The check could not run (bad eps, no backward, non-finite output, bad input shape)."""


@dataclass
class TensorCheck:
    """The comparison for one tensor (the input or one parameter) of one layer."""

    layer: str
    tensor: str
    shape: tuple[int, ...]
    mode: str
    checked: int = 0
    failures: int = 0
    kinks: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    worst_index: tuple[int, ...] | None = None
    analytic: float | None = None
    numeric: float | None = None
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.failures == 0 and not self.note

    @property
    def status(self) -> str:
        if not self.passed:
            return "FAIL"
        return f"ok ({self.kinks} kink{'s' * (self.kinks != 1)})" if self.kinks else "ok"

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "status": self.status}


@dataclass
class Report:
    """All tensor checks of a layer or a network; ``passed`` when every one of them did."""

    subject: str
    checks: list[TensorCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[TensorCheck]:
        return [check for check in self.checks if not check.passed]

    def __getitem__(self, key: str) -> TensorCheck:
        """The check of tensor ``key`` ("weights") or ``"<layer>.<tensor>"`` ("07-Dense.weights");
        a bare name that several layers share is refused rather than guessed."""
        found = [c for c in self.checks if key in (c.tensor, f"{c.layer}.{c.tensor}")]
        if len(found) > 1:
            layers = ", ".join(c.layer for c in found)
            raise KeyError(f"{key!r} is in several layers ({layers}): ask for '<layer>.{key}'")
        if not found:
            raise KeyError(key)
        return found[0]

    def to_dict(self) -> dict:
        return {
            "subject": self.subject,
            "passed": self.passed,
            "checks": [c.to_dict() for c in self.checks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        return format_table(self.checks)


class LayerReport(Report):
    """Report of :func:`check_layer`."""


class NetworkReport(Report):
    """Report of :func:`check_network`: ``report["07-Dense.weights"]``, ``report["input"]``."""


def format_table(checks: Iterable[TensorCheck]) -> str:
    """A plain-text table: layer, tensor, shape, errors, worst index, status."""
    header = (
        "layer",
        "tensor",
        "shape",
        "mode",
        "max abs err",
        "max rel err",
        "worst at",
        "status",
    )
    rows = [header]
    for c in checks:
        worst = "-" if c.worst_index is None else str(c.worst_index)
        status = c.status if not c.note else f"FAIL: {c.note}"
        if c.failures and c.analytic is not None:
            status = f"FAIL {c.failures}/{c.checked} (analytic {c.analytic:.6g}, "
            status += f"numeric {c.numeric:.6g} at worst)"
        rows.append(
            (
                c.layer,
                c.tensor,
                str(c.shape),
                c.mode,
                f"{c.max_abs_error:.2e}",
                f"{c.max_rel_error:.2e}",
                worst,
                status,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(line.rstrip() for line in lines)


# -- the comparison engine ------------------------------------------------------------


@dataclass
class _Settings:
    eps: float
    rtol: float
    atol: float
    mode: str
    directions: int
    max_elements: int | None
    rng: np.random.Generator


def _tolerance(numeric: np.ndarray, s: _Settings) -> np.ndarray:
    return s.atol + s.rtol * np.abs(numeric)


def _summarize(
    check: TensorCheck,
    analytic: np.ndarray,
    numeric: np.ndarray,
    kink: np.ndarray,
    positions: list[tuple[int, ...]],
    s: _Settings,
) -> TensorCheck:
    """Fill errors, worst element and counts from per-element analytic/numeric values."""
    error = np.abs(analytic - numeric)
    relative = error / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), TINY)
    fails = ~(error <= _tolerance(numeric, s)) & ~kink  # NaN never passes
    check.checked = len(analytic)
    check.kinks = int(kink.sum())
    check.failures = int(fails.sum())
    considered = ~kink
    if considered.any():
        check.max_abs_error = float(error[considered].max())
        check.max_rel_error = float(relative[considered].max())
        excess = np.where(considered, error / _tolerance(numeric, s), -np.inf)
        worst = int(np.argmax(excess))
        check.worst_index = positions[worst]
        check.analytic, check.numeric = float(analytic[worst]), float(numeric[worst])
    return check


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
    s: _Settings,
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
    if abs(analytic - forward) <= s.atol + s.rtol * abs(forward):
        return forward, False
    place(-s.eps)
    down = -objective()
    place(0.0)
    central, backward = (up + down) / (2 * s.eps), down / s.eps
    tolerance = s.atol + s.rtol * abs(central)
    if abs(analytic - central) <= tolerance:
        return central, False
    fine_central, fine_forward, fine_backward = _differences(place, s.eps / 10, objective)
    gap = abs(forward - backward)
    kink = abs(fine_central - central) > tolerance or (
        gap > tolerance and abs(fine_forward - fine_backward) > 0.5 * gap
    )
    return central, kink


def _per_sample(work, x: np.ndarray, output: np.ndarray) -> bool:
    """True when the layer maps each sample on its own (then input checks can be batched)."""
    try:
        singles = np.concatenate([np.asarray(work.forward(x[i : i + 1])) for i in range(len(x))])
    except (ValueError, TypeError):
        return False
    scale = max(float(np.abs(output).max()), 1.0)
    return singles.shape == output.shape and bool(np.allclose(singles, output, 0, 1e-12 * scale))


def _compare_input_batched(
    check: TensorCheck,
    work,
    x: np.ndarray,
    output: np.ndarray,
    projection: np.ndarray,
    grad_x: np.ndarray,
    s: _Settings,
    chunk: int = 256,
) -> TensorCheck:
    """Full input check with many perturbed copies of a sample stacked into one forward.

    Only valid for layers that treat samples independently (checked by the caller); it
    turns one forward per element into one forward per ``chunk`` elements.
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
    unsure = np.flatnonzero(~(np.abs(analytic - numeric) <= _tolerance(numeric, s)))
    if len(unsure):
        up = numeric[unsure] * s.eps
        down = -shifted(-s.eps, index[unsure])
        central = (up + down) / (2 * s.eps)
        one_sided_gap = np.abs(up - down) / s.eps
        numeric[unsure] = central
        tolerance = _tolerance(central, s)
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
    return _summarize(check, analytic, numeric, kink, positions, s)


def _compare_tensor(
    check: TensorCheck,
    tensor: np.ndarray,
    analytic_grad: np.ndarray,
    objective: Callable[[], float],
    s: _Settings,
) -> TensorCheck:
    """Perturb ``tensor`` in place (restoring it exactly) and compare with ``analytic_grad``."""
    flat = tensor.reshape(-1)
    if not np.shares_memory(flat, tensor):
        raise GradcheckError(f"{check.layer}: {check.tensor} is not a contiguous array")
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
        return _summarize(check, analytic, numeric, kink, positions, s)

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
    check = _summarize(
        check,
        np.array(analytic_values),
        np.array(numeric_values),
        np.zeros(count, dtype=bool),
        [(d,) for d in range(count)],
        s,
    )
    check.kinks = kinks
    if not count:
        # Every direction crossed a kink (e.g. max-pool ties among ReLU zeros): fall back
        # to single elements, where kinks are told apart one by one.
        sampled = replace(s, mode="full", max_elements=16 * s.directions)
        fallback = _compare_tensor(check, tensor, analytic_grad, objective, sampled)
        fallback.mode = "fast→elements"
        return fallback
    return check


def _settings(eps, rtol, atol, mode, directions, max_elements, seed) -> _Settings:
    if not isinstance(eps, (int, float, np.floating)) or not 0 < eps < 1:
        raise GradcheckError(f"eps must be in (0, 1), got {eps}")
    if mode not in ("full", "fast"):
        raise GradcheckError(f"mode must be 'full' or 'fast', got {mode!r}")
    if rtol < 0 or atol < 0:
        raise GradcheckError(f"rtol and atol must be >= 0, got {rtol}, {atol}")
    if directions < 1:
        raise GradcheckError(f"directions must be >= 1, got {directions}")
    if max_elements is not None and max_elements < 1:
        raise GradcheckError(f"max_elements must be >= 1 or None, got {max_elements}")
    return _Settings(eps, rtol, atol, mode, directions, max_elements, np.random.default_rng(seed))


def float64_copy(layer):
    """Deep copy of ``layer`` with every float parameter in float64.

    Attributes that alias a parameter array (tutorial-style ``self.weights``) are pointed
    at the new array too, so layers that read either keep working.
    """
    work = copy.deepcopy(layer)
    params = getattr(work, "params", None) or {}
    for name, value in list(params.items()):
        converted = np.array(value, dtype=np.float64, order="C")
        for attr, attr_value in list(vars(work).items()):
            if attr_value is value:
                setattr(work, attr, converted)
        params[name] = converted
    return work


def _name(layer) -> str:
    describe = getattr(layer, "describe", None)
    return describe() if callable(describe) else type(layer).__name__


def _require_backward(layer) -> None:
    from labkit.layers.base import Layer

    backward = getattr(type(layer), "backward", None)
    if not callable(backward) or backward is Layer.backward:
        raise GradcheckError(f"{_name(layer)}: has no backward method to check")
    if not callable(getattr(type(layer), "forward", None)) or type(layer).forward is Layer.forward:
        raise GradcheckError(f"{_name(layer)}: has no forward method to check")


def _finite(value: np.ndarray, what: str, layer_name: str) -> np.ndarray:
    if not np.all(np.isfinite(value)):
        raise GradcheckError(f"{layer_name}: {what} is not finite (nan or inf)")
    return value


def example_input(layer, batch: int = 2, seed: int = 0) -> np.ndarray:
    """A float64 input batch for ``layer``, from its declared input shape.

    Values are normal draws pushed at least 0.05 away from 0, so ReLU kinks are avoided;
    a continuous draw makes max-pool ties improbable.
    """
    from labkit.layers import Activation, MaxPool, Softmax

    shape = getattr(layer, "input_shape", None)
    if shape is None and hasattr(layer, "input_size"):
        shape = (layer.input_size,)
    if shape is None and isinstance(layer, MaxPool):
        side = 2 * layer.pool_size + layer.stride
        shape = (2, side, side)
    if shape is None and isinstance(layer, Softmax):
        shape = (5,)
    if shape is None and isinstance(layer, Activation):
        shape = (3, 4, 4)
    if shape is None:
        raise GradcheckError(f"{_name(layer)}: declares no input shape; pass x explicitly")
    x = np.random.default_rng(seed).standard_normal((batch, *shape))
    return np.where(np.abs(x) < 0.05, x + np.copysign(0.05, x), x)


def check_layer(
    layer,
    x: np.ndarray | None = None,
    *,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    mode: str = "full",
    seed: int = 0,
    directions: int = 4,
    max_elements: int | None = None,
) -> LayerReport:
    """Compare ``layer.backward`` with central differences for its input and every parameter."""
    name = _name(layer)
    try:
        s = _settings(eps, rtol, atol, mode, directions, max_elements, seed)
    except GradcheckError as exc:
        raise GradcheckError(f"{name}: {exc}") from None
    _require_backward(layer)
    work = float64_copy(layer)
    x = example_input(layer, seed=seed) if x is None else np.array(x, dtype=np.float64, order="C")
    if x.ndim < 1 or len(x) == 0:
        raise GradcheckError(f"{name}: x must be a non-empty batch (N, ...), got shape {x.shape}")

    with single_threaded_blas():  # thousands of tiny ops: BLAS threads only cost here
        return _check_layer(work, name, x, s)


OVERWROTE = "backward overwrote the output_gradient it was given"


def _labkit_pass(work, name: str, x: np.ndarray, rng: np.random.Generator):
    """The layer's forward and ``backward(R)`` for a random R drawn from ``rng``.

    Returns (output, R, dE/dx, parameter grads, whether backward overwrote R). A first
    forward on different data catches layers that keep a stale cached input.
    """
    try:
        work.forward(x[::-1].copy() * 0.5 + 0.1)
        output = np.array(_finite(np.asarray(work.forward(x)), "forward output", name))
    except ValueError as exc:
        raise GradcheckError(str(exc) if name in str(exc) else f"{name}: {exc}") from None
    projection = rng.standard_normal(output.shape)
    if hasattr(work, "grads"):
        work.grads = {}
    handed = projection.copy()
    grad_x = work.backward(handed)
    overwritten = not np.array_equal(handed, projection)
    grads = dict(getattr(work, "grads", None) or {})  # before any further forward
    return output, projection, grad_x, grads, overwritten


def _check_layer(work, name: str, x: np.ndarray, s: _Settings) -> LayerReport:
    output, projection, grad_x, grads, overwritten = _labkit_pass(work, name, x, s.rng)

    def objective() -> float:
        """L(t) - L(t0), from the output difference: no cancellation of two large sums."""
        return float(np.vdot(projection, work.forward(x) - output))

    params = getattr(work, "params", None) or {}
    report = LayerReport(name)
    input_check = TensorCheck(name, "input", tuple(x.shape), s.mode)
    if (
        s.mode == "full"
        and _valid_gradient(input_check, x, grad_x)
        and _per_sample(work, x, output)
    ):
        grad = np.asarray(grad_x, dtype=np.float64)
        report.checks.append(
            _compare_input_batched(input_check, work, x, output, projection, grad, s)
        )
    else:
        report.checks.append(_check_one(name, "input", x, grad_x, objective, s))
    if overwritten:  # callers (hooks, the network) may still hold that array
        report.checks[-1].note = OVERWROTE
    for pname, value in params.items():
        report.checks.append(_check_one(name, pname, value, grads.get(pname), objective, s))
    return report


def _valid_gradient(check: TensorCheck, value: np.ndarray, grad) -> bool:
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


def _check_one(layer_name, tensor_name, value, grad, objective, s) -> TensorCheck:
    check = TensorCheck(layer_name, tensor_name, tuple(value.shape), s.mode)
    if not _valid_gradient(check, value, grad):
        return check
    grad = np.asarray(grad, dtype=np.float64)
    return _compare_tensor(check, value, grad, objective, s)


def check_network(
    network: Network,
    x: np.ndarray,
    y: np.ndarray,
    loss: str | Loss = "softmax_cross_entropy",
    *,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
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
        s = _settings(eps, rtol, atol, mode, directions, max_elements, seed)
    except GradcheckError as exc:
        raise GradcheckError(f"network: {exc}") from None
    loss = LOSSES[loss] if isinstance(loss, str) else loss
    for layer in network.layers:
        _require_backward(layer)
    work = Network([float64_copy(layer) for layer in network.layers])
    x = np.array(x, dtype=np.float64, order="C")
    y = np.asarray(y, dtype=np.float64)
    with single_threaded_blas():
        return _check_network(work, x, y, loss, s)


def _check_network(work: Network, x: np.ndarray, y: np.ndarray, loss: Loss, s) -> NetworkReport:
    try:
        output = _finite(work.forward(x), "network output", "network")
    except ValueError as exc:
        raise GradcheckError(f"network: {exc}") from None

    base_loss = loss.value(y, output)
    if not np.isfinite(base_loss):
        raise GradcheckError(f"network: the {loss.name} loss is not finite on this input")

    def objective() -> float:
        return float(loss.value(y, work.forward(x)) - base_loss)

    for layer in work.layers:
        if hasattr(layer, "grads"):
            layer.grads = {}
    grad_x = work.backward(loss.prime(y, output))
    report = NetworkReport("network")
    report.checks.append(_check_one("network", "input", x, grad_x, objective, s))
    for layer in work.layers:
        grads = getattr(layer, "grads", None) or {}
        for pname, value in (getattr(layer, "params", None) or {}).items():
            check = _check_one(_name(layer), pname, value, grads.get(pname), objective, s)
            report.checks.append(check)
    return report
