"""A recorded probe's backward pass, layer by layer, and any one number of it verified.

Where :mod:`labkit.backprop` is the maths on one sample, this module reads it off a run:
the network at a recorded step (its recorded weights), the probe digit's forward pass
recomputed from them, and the gradient the recorder kept arriving at each layer
(:meth:`labkit.recording.Recording.probe_gradients`). ``explain_layer`` gives a layer's
parts, ``chain_rule`` the sum behind one element, ``verify`` that element's finite
difference taken on the spot with the checker's own judge. ``layer="loss"`` is the loss
at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labkit.backprop import ChainRule, LayerBackward, explain, explain_loss
from labkit.differences import judge
from labkit.errors import LabkitError
from labkit.gradcheck import float64_copy, settings
from labkit.losses import Loss, resolve_loss
from labkit.network import Network
from labkit.probes import Scorer, sequential_probe
from labkit.recording import Recording
from labkit.reports import TensorCheck, summarize
from labkit.usercode import Model

LOSS = "loss"  # the name of the loss at the end, as a layer of the explainer
STRIP = 12  # records the saliency strip shows
AGREEMENT = 1e-2  # formula vs recorded, over the largest |value|: float16 keeps each value
# to ~5e-4 of its probe's largest; a wrong formula is off by ~1


@dataclass
class ProbePass:
    """One probe's forward pass at a recorded step, and its recorded gradients."""

    step: int
    probe: int
    label: int
    network: Network  # at the step, as trained
    keys: list[str]  # the layers' keys
    loss: Loss  # the loss the probe's gradients are of
    inputs: list[np.ndarray]  # each layer's input, then the logits; one sample each
    recorded: dict[str, np.ndarray]  # "input" and each layer key: the gradient arriving

    @property
    def own_loss(self) -> float:
        """The probe's loss at the step, from its recomputed logits."""
        logits = np.asarray(self.inputs[-1], dtype=np.float64).reshape(1, -1)
        target = np.zeros_like(logits)
        target[0, self.label] = 1.0
        return float(self.loss.value(target, logits))

    def below(self, position: int) -> np.ndarray:
        """The recorded gradient leaving layer ``position`` downwards (its dX)."""
        return self.recorded[self.keys[position - 1]] if position else self.recorded["input"]


@dataclass
class Explained:
    """A layer's backward pass for a probe at a step, beside what the recorder kept."""

    probe_pass: ProbePass
    layer: str  # a layer key, or LOSS
    index: int  # the layer's position (len(layers) for the loss)
    backward: LayerBackward

    @property
    def gradient_part(self) -> str:
        """The part the layer sends down: ``dx`` (``dz`` for the loss)."""
        return "dz" if self.layer == LOSS else "dx"

    @property
    def recorded_dx(self) -> np.ndarray:
        """What the recorder kept of that part: the layer's own backward, in float16."""
        passed = self.probe_pass
        if self.layer == LOSS:
            return passed.recorded[passed.keys[-1]]
        return passed.below(self.index)

    @property
    def agreement(self) -> float | None:
        """Largest |formula's dX − recorded dX| over the largest |value| of either: ~1e-3
        (float16) for a right layer; None for a layer with no formula here. For the loss,
        differences within float32's rounding of ``p`` (training's precision) are not
        counted: a probe the network is sure of has ``p − y`` ~ 1e-12, below it."""
        if self.backward.kind == "layer" or self.gradient_part not in self.backward.parts:
            return None
        formula = self.backward.parts[self.gradient_part].values
        recorded = self.recorded_dx.reshape(formula.shape)
        rounding = float(np.finfo(np.float32).eps) if self.layer == LOSS else 0.0
        difference = max(float(np.max(np.abs(formula - recorded))) - rounding, 0.0)
        scale = max(float(np.max(np.abs(recorded))), float(np.max(np.abs(formula))))
        return difference / (scale or 1.0)

    @property
    def formula_agrees(self) -> bool | None:
        """Whether the formula and the recorded gradient agree to within ``AGREEMENT``."""
        agreement = self.agreement
        return None if agreement is None else agreement <= AGREEMENT


def probe_pass(
    recording: Recording, step: int, probe: int, model: Model | None = None
) -> ProbePass:
    """The probe's forward pass from the weights recorded at ``step`` (the recorded step
    nearest it), with the gradients recorded there; LabkitError (one line) for a run
    recorded without them or a probe out of range."""
    if not recording.has_backward:
        raise LabkitError(
            f"{recording.path}: recorded by an older labkit, without the probes' backward "
            "pass; train it again to explain it"
        )
    if len(recording) == 0:
        raise LabkitError(f"{recording.path}: no record yet")
    labels = recording.probe_labels
    if not 0 <= probe < len(labels):
        raise LabkitError(f"probe {probe} is out of range: the run has probes 0..{len(labels) - 1}")
    step = recording.nearest_step(step)
    network = recording.network_at(step, model)
    h = recording.probe_images[probe : probe + 1].astype(np.float32)
    inputs = [h[0]]
    for layer in network.layers:
        h = layer.forward(h)
        inputs.append(np.asarray(h[0]))
    recorded = {key: values[probe] for key, values in recording.probe_gradients(step).items()}
    keys = [entry["key"] for entry in recording.layers]
    loss = resolve_loss(recording.probe_loss)
    return ProbePass(step, probe, int(labels[probe]), network, keys, loss, inputs, recorded)


def layer_position(recording: Recording, layer: int | str) -> int:
    """A layer's position from its index, key or name; ``"loss"`` is after the last."""
    return len(recording.layers) if layer == LOSS else recording.layer_index(layer)


def explain_at(passed: ProbePass, position: int) -> Explained:
    """The backward pass of the layer at ``position`` (``len(keys)``: the loss)."""
    if position == len(passed.keys):
        backward = explain_loss(
            passed.inputs[-1], passed.label, passed.loss.name, passed.loss.prime
        )
        return Explained(passed, LOSS, position, backward)
    layer = passed.network.layers[position]
    arriving = passed.recorded[passed.keys[position]]
    backward = explain(layer, passed.inputs[position], arriving, passed.below(position))
    return Explained(passed, passed.keys[position], position, backward)


def explain_layer(
    recording: Recording, layer: int | str, probe: int, step: int, model: Model | None = None
) -> Explained:
    """``layer``'s backward pass for ``probe`` at ``step`` (see the module docstring)."""
    position = layer_position(recording, layer)
    return explain_at(probe_pass(recording, step, probe, model), position)


def parse_element(text: str) -> tuple[int, ...]:
    """``"0,5,7"`` as ``(0, 5, 7)``; LabkitError (one line) for anything else."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise LabkitError(f"element {text!r} is not comma-separated integers") from None


def default_element(explained: Explained, part: str) -> tuple[int, ...]:
    """The element of ``part`` with the largest |value|: the one most worth explaining."""
    values = _part(explained, part).values
    return tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(values)), values.shape))


def _part(explained: Explained, part: str):
    parts = explained.backward.parts
    if part not in parts:
        raise LabkitError(f"{explained.layer} has no part {part!r} (parts: {', '.join(parts)})")
    return parts[part]


def element_index(explained: Explained, part: str, index) -> tuple[int, ...]:
    """``index`` as an element of ``part`` (ints); LabkitError (one line) if it is not one."""
    shape = _part(explained, part).values.shape
    index = tuple(int(i) for i in index)
    if len(index) != len(shape) or not all(0 <= i < n for i, n in zip(index, shape, strict=False)):
        raise LabkitError(
            f"element {','.join(map(str, index))} is outside {part} of {explained.layer}, "
            f"of shape {'×'.join(map(str, shape))}"
        )
    return index


def chain_rule(explained: Explained, part: str, index: tuple[int, ...]) -> ChainRule:
    """The chain-rule sum behind ``part[index]``. The gradient arriving (``dy``) is made
    by the layer above: its ``dx`` (the loss's ``dz``) at the same place."""
    index = element_index(explained, part, index)
    if part == "dy":
        above = explain_at(explained.probe_pass, explained.index + 1)
        shape = above.backward.parts[above.gradient_part].values.shape
        flat = np.ravel_multi_index(index, explained.backward.parts["dy"].values.shape)
        index, explained, part = np.unravel_index(flat, shape), above, above.gradient_part
    try:
        return explained.backward.chain_rule(part, tuple(int(i) for i in index))
    except ValueError as exc:
        raise LabkitError(f"{explained.layer}: {exc}") from None


@dataclass
class Verification:
    """One gradient element: the analytic value (float64 backward from the recorded
    weights) and its finite difference, judged as the checker judges an element."""

    element: str
    shown: float  # the value in the view (from the recorded float16 gradients)
    check: TensorCheck

    @property
    def analytic(self) -> float:
        return float(self.check.analytic)

    @property
    def numeric(self) -> float:
        return float(self.check.numeric)

    @property
    def relative_error(self) -> float:
        return float(self.check.max_rel_error)

    @property
    def agrees(self) -> bool:
        return self.check.passed

    @property
    def on_kink(self) -> bool:
        return self.check.kinks > 0

    def line(self) -> str:
        """One line: analytic, numeric ± its error, relative error, the checker's verdict."""
        if self.on_kink:
            return f"{self.element}: on a kink (ReLU at 0 or a max-pool tie), not judged"
        error = f" ± {self.check.numeric_error:.1e}" if self.check.numeric_error else ""
        verdict = "agrees" if self.agrees else "DISAGREES"
        return (
            f"{self.element}: analytic {self.analytic:+.9e}, finite difference "
            f"{self.numeric:+.9e}{error}; relative error {self.relative_error:.1e}: {verdict}"
        )


def _float64_pass(passed: ProbePass):
    """The network in float64 at the recorded weights: its layers, every activation
    (batch of one), the gradient arriving at each layer and at the input, the target."""
    layers = [float64_copy(layer) for layer in passed.network.layers]
    target = np.zeros((1, passed.inputs[-1].size))
    target[0, passed.label] = 1.0
    activations = [np.array(passed.inputs[0][None], dtype=np.float64)]
    for layer in layers:
        # C order, so a flat view of it moves the very array the forward reads (a
        # convolution's output is channels-last in memory: its reshape would be a copy)
        activations.append(np.array(layer.forward(activations[-1]), np.float64, order="C"))
    out = activations[-1]
    grad = passed.loss.prime(target, out.reshape(1, -1)).reshape(out.shape)
    arriving: list[np.ndarray] = [None] * len(layers)
    for position in reversed(range(len(layers))):
        arriving[position] = grad
        grad = np.asarray(layers[position].backward(grad), dtype=np.float64)
    return layers, activations, arriving, grad, target


def verifiable(explained: Explained, part: str) -> bool:
    """Whether :func:`verify` takes ``part``: the gradient arriving (``dy``), sent down
    (``dx``), the loss's ``dz``, or a parameter's gradient ``d<name>``."""
    if part not in explained.backward.parts:
        return False
    if part in ("dx", "dy", "dz"):
        return True
    layers = explained.probe_pass.network.layers
    params = layers[explained.index].params if explained.index < len(layers) else {}
    return part.startswith("d") and part[1:] in params


def verify(explained: Explained, part: str, index: tuple[int, ...]) -> Verification:
    """The finite difference of ``part[index]`` (``dx``, ``dy``, ``dz`` or a parameter's
    ``d<name>``) taken on the spot from the recorded weights in float64, against the
    float64 backward, judged by :func:`labkit.differences.judge`."""
    index = element_index(explained, part, index)
    passed, position = explained.probe_pass, explained.index
    layers, activations, arriving, input_gradient, target = _float64_pass(passed)
    if not verifiable(explained, part):
        raise LabkitError(f"cannot verify {part!r}: verify takes dx, dy, dz or d<parameter>")
    if part in ("dz", "dy"):  # the layer's output (the logits for the loss) moves
        start = position if explained.layer == LOSS else position + 1
        tensor, analytic = activations[start], arriving[start - 1]
    elif part == "dx":
        start, tensor = position, activations[position]
        analytic = arriving[position - 1] if position else input_gradient
    else:  # a parameter's gradient
        start, tensor = position, layers[position].params[part[1:]]
        analytic = layers[position].grads[part[1:]]

    def forward() -> np.ndarray:
        h = activations[start]
        for layer in layers[start:]:
            h = layer.forward(h)
        return np.array([passed.loss.value(target, h.reshape(1, -1))])

    shape = explained.backward.parts[part].values.shape
    pick = np.array([np.ravel_multi_index(index, shape)])
    flat, analytic = tensor.reshape(-1), np.asarray(analytic, np.float64).reshape(-1)
    if not np.shares_memory(flat, tensor):
        raise LabkitError(f"{explained.layer}: {part[1:]} is not contiguous, cannot be moved")
    scorer = Scorer(forward, forward(), [1.0])
    s = settings()
    # the loss is made from the logits (log-sum-exp): it carries their rounding, not only
    # its own value's (a confident probe's loss of 3e-4 is 1 + 3e-4 rounded, then logged)
    resolution = max(scorer.resolution, float(np.max(np.abs(activations[-1]))))
    judged = judge(
        analytic[pick],
        pick,
        flat[pick].copy(),
        sequential_probe(flat, scorer),
        s,
        float(np.max(np.abs(analytic))),
        resolution=resolution,
    )
    element = f"{part}[{','.join(map(str, index))}]"
    check = TensorCheck(explained.layer, part, shape, s.mode)
    summarize(
        check, analytic[pick], judged.numeric, judged.kink, [index], judged.allowed, judged.error
    )
    shown = float(explained.backward.parts[part].values[index])
    return Verification(element, shown, check)


def saliency_strip(
    recording: Recording, probe: int, step: int, count: int = STRIP
) -> tuple[np.ndarray, np.ndarray]:
    """The probe's input gradient at ``count`` records spread over the run, the one at
    ``step`` among them: ``(steps, maps (count, *input shape))``, oldest first."""
    records = np.unique(
        np.r_[
            np.linspace(0, len(recording) - 1, count - 1).round(),
            recording.run.record_at(recording.nearest_step(step)),
        ]
    )
    maps = np.stack([recording.saliency(int(r))[probe] for r in records.astype(int)])
    return recording.steps[records.astype(int)], maps
