"""Network: an ordered list of layers with forward, backward, predict, summary, save and load."""

from __future__ import annotations

import copy
import inspect
import json
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from labkit import fused, hooks
from labkit.atomic import atomic_file
from labkit.errors import LabkitError, one_line
from labkit.layers import registry
from labkit.layers.base import Layer
from labkit.parallel import DataParallel, step_blas

ARCHITECTURE_KEY = "__architecture__"
MODEL_KEY = "__model__"  # the --model text, when the network came from the user's code


def layer_key(index: int, layer: Layer) -> str:
    """A layer's default name: its position and class, e.g. ``03-Convolutional``.

    The one naming scheme a user reads: check reports, the dashboard, ``labkit inspect``
    and a run's array names (where it is also a safe path part) all use it. A name the
    user gave a layer replaces it in reports; the run keeps the key for its arrays.
    """
    return f"{index:02d}-{type(layer).__name__}"


def _backward_through(
    steps: Sequence, grad: np.ndarray, learning_rate: float | None, input_gradient: bool
) -> np.ndarray | None:
    """Backpropagate through layers (or fused blocks) in reverse; the first one skips dE/dX
    when ``input_gradient`` is False and it can."""
    for step in reversed(steps[1:]):
        grad = step.backward(grad, learning_rate)
    first = steps[0]
    if not input_gradient and getattr(first, "can_skip_input_gradient", False):
        return first.backward(grad, learning_rate, input_gradient=False)
    return first.backward(grad, learning_rate)


class Network:
    """Layers applied in order; ``backward`` runs them in reverse, as the tutorial's loop does."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = list(layers)
        for index, layer in enumerate(self.layers):
            if not isinstance(getattr(layer, "params", None), dict):
                raise LabkitError(
                    f"layer {index} ({type(layer).__name__}) does not follow labkit's Layer "
                    "contract (no params dict): a tutorial-style layer can be checked with "
                    "check_layer, but a Network needs labkit.layers.Layer subclasses"
                )
            if layer.name is None:
                layer.name = layer_key(index, layer)
        self._steps: list = []  # what step_forward ran, for step_backward (labkit.fused)

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(
        self,
        grad: np.ndarray,
        learning_rate: float | None = None,
        *,
        input_gradient: bool = True,
    ) -> np.ndarray | None:
        """Backpropagate ``grad`` (dE/d output) through every layer; returns dE/d input.

        ``input_gradient=False`` lets a first layer that supports it (Convolutional) skip
        computing a gradient nobody reads; training uses this, gradient checks don't.
        """
        return _backward_through(self.layers, grad, learning_rate, input_gradient)

    def step_forward(self, x: np.ndarray, *, backward: bool = True) -> np.ndarray:
        """``forward(x)`` as a training step runs it: runs of Convolutional -> MaxPool ->
        ReLU computed as one block (:mod:`labkit.fused`; the same values, fewer passes).
        Hooks fire as in ``forward``; the fused layers keep no per-call state of their
        own, so follow it with :meth:`step_backward`, not with a layer's ``backward``.
        ``backward=False`` (inference) keeps nothing for a backward pass."""
        steps = fused.plan(self.layers)
        for step in steps:
            x = step.forward(x)
        self._steps = steps if backward else []
        return x

    def step_backward(self, grad: np.ndarray, *, input_gradient: bool = True) -> np.ndarray | None:
        """``backward(grad)`` after :meth:`step_forward`, through the same blocks."""
        steps, self._steps = self._steps, []  # the blocks' saved arrays go with this pass
        if not steps:
            raise RuntimeError("Network.step_backward needs a step_forward first")
        return _backward_through(steps, grad, None, input_gradient)

    def register_hook(
        self,
        forward: hooks.ForwardHook | None = None,
        backward: hooks.BackwardHook | None = None,
    ) -> hooks.HandleGroup:
        """Attach the same forward and/or backward hook to every layer; one handle for all."""
        handles = []
        for layer in self.layers:
            if forward is not None:
                handles.append(layer.register_forward_hook(forward))
            if backward is not None:
                handles.append(layer.register_backward_hook(backward))
        return hooks.HandleGroup(handles)

    def predict(
        self, x: np.ndarray, batch_size: int = 500, *, threads: int | None = None
    ) -> np.ndarray:
        """Forward ``x`` in batches (bounded memory); returns the stacked outputs.

        Each batch is split over ``threads`` threads (default: every core) where that is
        safe and pays (see :class:`labkit.parallel.DataParallel`); BLAS runs as in training
        (:func:`labkit.parallel.step_blas`), held once for all the batches.
        """
        runner = DataParallel(self, threads)
        with step_blas():
            outputs = [runner.forward(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(outputs, axis=0)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Per-sample input shape, when the first layer declares one."""
        first = self.layers[0] if self.layers else None
        shape = getattr(first, "input_shape", None)
        if shape is None and hasattr(first, "input_size"):
            shape = (first.input_size,)
        return tuple(shape) if shape is not None else None

    def output_shapes(self, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        """Each layer's per-sample output shape for a per-sample ``input_shape``, found by
        passing one zero sample through (so a user's layer needs no ``output_shape``).

        Shapes that do not chain are a LabkitError naming the two layers and the shapes.
        """
        params = (value for layer in self.layers for value in layer.params.values())
        dtype = next((value.dtype for value in params), np.float32)
        x = np.zeros((1, *input_shape), dtype=dtype)
        shapes, previous = [], "the input"
        for layer in self.layers:
            try:
                x = np.asarray(copy.copy(layer).forward(x))  # a copy keeps no cached input
            except Exception as exc:  # a user's layer may raise anything on a bad shape
                reason = one_line(exc).removeprefix(f"{layer.describe()}: ")
                raise LabkitError(
                    f"{layer.describe()} does not take {previous}'s output "
                    f"{tuple(x.shape[1:])} per sample: {reason}"
                ) from None
            shapes.append(tuple(x.shape[1:]))
            previous = layer.describe()
        return shapes

    def parameter_count(self) -> int:
        return sum(int(p.size) for layer in self.layers for p in layer.params.values())

    def astype(self, dtype: np.dtype | type) -> Network:
        """Convert every parameter to ``dtype`` (float32 to train, float64 to check)."""
        for layer in self.layers:
            layer.astype(dtype)
        return self

    def summary(self) -> str:
        """A table of layers, per-sample output shapes and parameter counts."""
        rows = [("layer", "output shape", "params")]
        shape = self.input_shape
        for layer in self.layers:
            shape = layer.output_shape(shape) if shape is not None else None
            count = sum(int(p.size) for p in layer.params.values())
            rows.append((repr(layer), str(shape) if shape else "?", f"{count:,}"))
        rows.append(("total", "", f"{self.parameter_count():,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
        return "\n".join(lines)

    # -- persistence --------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter under ``"<layer index>.<name>"``."""
        return {
            f"{index}.{name}": value
            for index, layer in enumerate(self.layers)
            for name, value in layer.params.items()
        }

    def architecture(self, *, partial: bool = False) -> list[dict]:
        """The layer classes and constructor arguments, as plain JSON-able data: labkit's
        own classes by name, any other as ``module:qualname`` (see labkit.layers.registry).

        A layer without ``config()`` raises NotImplementedError, or with ``partial`` gets
        ``"config": None`` (its code, passed again with ``--model``, rebuilds it).
        """
        entries = []
        for layer in self.layers:
            try:
                config = layer.config()
            except NotImplementedError:
                if not partial:
                    raise
                config = None
            entries.append({"class": registry.class_name(type(layer)), "config": config})
        return entries

    def save(self, path: str | os.PathLike, *, model: str | None = None) -> None:
        """Write the architecture (JSON) and weights to one ``.npz``; no pickle involved.

        ``model`` is the ``--model`` text that built the network, kept so that a reader
        who needs the user's code can be told which to pass.
        """
        extra = {} if model is None else {MODEL_KEY: np.array(model)}
        spec = json.dumps(self.architecture(partial=True))
        with atomic_file(path) as handle:  # never half a weights file, even on a full disk
            np.savez(handle, **{ARCHITECTURE_KEY: np.array(spec)}, **extra, **self.state_dict())

    @classmethod
    def from_architecture(
        cls, spec: list[dict], layers: Iterable[type] = (), *, seed: int | None = None
    ) -> Network:
        """A fresh network from :meth:`architecture`'s description.

        labkit's layers are known by name; a user's class only when it is in ``layers``
        (or registered): a description never imports code by itself. ``seed`` fixes the
        initial weights of the layers whose constructor takes an ``rng``.
        """
        rng = None if seed is None else np.random.default_rng(seed)
        if not isinstance(spec, list) or not spec:
            raise LabkitError("unreadable architecture (expected a non-empty list of layers)")
        layers = tuple(layers)
        built = []
        for index, entry in enumerate(spec):
            config = entry.get("config", {}) if isinstance(entry, dict) else None
            if not isinstance(entry, dict) or not isinstance(config, dict | None):
                raise LabkitError(f"layer {index}: expected {{'class': ..., 'config': {{...}}}}")
            layer_class = registry.resolve(entry.get("class"), layers)
            if config is None:
                raise LabkitError(
                    f"layer {index} ({entry['class']}) was saved without a config(): "
                    "rebuild the network from its code (--model FILE.py:NAME)"
                )
            arguments = _config(config)
            if rng is not None and "rng" in inspect.signature(layer_class).parameters:
                arguments["rng"] = rng
            try:
                built.append(layer_class(**arguments))
            except Exception as exc:  # a user's constructor may raise anything
                raise LabkitError(
                    f"layer {index} ({entry.get('class')}): bad config ({one_line(exc)})"
                ) from None
        return cls(built)

    @classmethod
    def load(cls, path: str | os.PathLike, layers: Iterable[type] = ()) -> Network:
        """Rebuild a network saved with :meth:`save` (never unpickles or imports anything;
        a user's layer classes come from ``layers``, as in :meth:`from_architecture`)."""
        from labkit.usercode import load_network  # one loader, for the CLI and for Python

        return load_network(path, layers=layers)

    def load_weights(self, path: str | os.PathLike) -> None:
        """Copy weights saved with :meth:`save` into this network's layers."""
        self.set_weights(_read_npz(path), source=path)

    def set_weights(
        self, arrays: Mapping[str, np.ndarray], source: object = "weights", *, keep_dtype=True
    ) -> None:
        """Copy ``{"<layer index>.<name>": array}`` in (the :meth:`state_dict` keys) after
        checking every name, shape and dtype (real numbers only: a string or complex
        array is refused, never cast); ``keep_dtype`` casts to the network's dtypes.

        ``source`` names where the weights came from, in the one-line error.
        """
        expected = self.state_dict()
        missing = sorted(set(expected) - set(arrays))
        if missing:
            raise LabkitError(f"{source}: weights do not fit this network (missing {missing[0]})")
        for key, current in expected.items():
            if np.shape(arrays[key]) != current.shape:
                raise LabkitError(
                    f"{source}: weight {key} has shape {np.shape(arrays[key])}, "
                    f"the network expects {current.shape}"
                )
            kind = np.asarray(arrays[key]).dtype
            if kind.kind not in "fiu":  # strings, complex, booleans, dates, records
                raise LabkitError(
                    f"{source}: weight {key} has dtype {kind}, not real numbers (float or int)"
                )
        for index, layer in enumerate(self.layers):
            for name in layer.params:
                value = np.asarray(arrays[f"{index}.{name}"])
                dtype = layer.params[name].dtype if keep_dtype else value.dtype
                layer.params[name] = value.astype(dtype, copy=True)


class SavedWeights(NamedTuple):
    """What :meth:`Network.save` wrote: the architecture, the weight arrays by
    :meth:`Network.state_dict` key, and the ``--model`` text that built it (or None)."""

    architecture: list
    arrays: dict[str, np.ndarray]
    model: str | None


def read_weights(path: str | os.PathLike) -> SavedWeights:
    """Read a weights file without building anything (nothing unpickled or imported)."""
    arrays = _read_npz(path)
    if ARCHITECTURE_KEY not in arrays:
        raise LabkitError(f"{path}: not a labkit weights file (no architecture inside)")
    try:
        architecture = json.loads(str(arrays.pop(ARCHITECTURE_KEY)))
    except json.JSONDecodeError as exc:
        raise LabkitError(f"{path}: unreadable architecture ({exc!r})") from None
    model = str(arrays.pop(MODEL_KEY)) if MODEL_KEY in arrays else None
    return SavedWeights(architecture, arrays, model)


def _read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise LabkitError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise LabkitError(f"{path}: not a readable .npz file ({exc})") from None


def _config(config: dict) -> dict:
    """A stored config as constructor arguments (JSON lists back to tuples)."""
    return {key: tuple(v) if isinstance(v, list) else v for key, v in config.items()}
