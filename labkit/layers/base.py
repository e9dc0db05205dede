"""The Layer contract every labkit layer (and every user-written layer) follows."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np

from labkit import hooks


class Layer:
    """A batched layer: ``forward(x)`` maps ``(N, ...)`` to ``(N, ...)``; backward goes back.

    ``backward(output_gradient, learning_rate=None)`` returns dE/d(input) and fills
    ``self.grads[name]`` for every ``self.params[name]``. Passing ``learning_rate`` also
    applies the plain SGD update, so the tutorial's loop
    ``grad = layer.backward(grad, learning_rate)`` runs unchanged.
    """

    replicable: ClassVar[bool] = False
    """Whether :class:`labkit.parallel.DataParallel` may run this layer on several threads.

    Each thread gets ``copy.copy(layer)``: the same ``params`` dict (so the same arrays),
    its own fresh ``grads`` dict, and per-call attributes of its own only where forward
    and backward *rebind* them (``self.input = input``). Set ``replicable = True`` in
    your class when its forward and backward keep state only that way and write to no
    shared array: not to ``params`` (update them through ``grads``), not to a buffer made
    in ``__init__``, not to a list or dict they append to. Read only from the class's own
    body: a subclass (``class MyDense(Dense)`` with its own backward) runs serially until
    it declares ``replicable = True`` itself.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every class states ``replicable`` for itself: a subclass may keep per-call
        state its base did not, so it is never inherited."""
        super().__init_subclass__(**kwargs)
        if "replicable" not in cls.__dict__:
            cls.replicable = False

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.name: str | None = None
        self.input: np.ndarray | None = None

    def forward(self, input: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(
        self, output_gradient: np.ndarray, learning_rate: float | None = None
    ) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    # -- hooks (see labkit.hooks: free while none is registered) -------------------------

    def register_forward_hook(self, fn: hooks.ForwardHook) -> hooks.HookHandle:
        """Call ``fn(layer, input, output)`` after every forward; returns a removable handle."""
        return hooks.register(self, "forward", fn)

    def register_backward_hook(self, fn: hooks.BackwardHook) -> hooks.HookHandle:
        """Call ``fn(layer, grad_input, grad_output)`` after every backward."""
        return hooks.register(self, "backward", fn)

    def __copy__(self) -> Layer:
        """A copy without hooks (a hook's wrapper would still call the original layer)."""
        return self._copy_without_hooks(lambda value: value)

    def __deepcopy__(self, memo: dict) -> Layer:
        """A deep copy without hooks, as :meth:`__copy__`."""
        return self._copy_without_hooks(lambda value: copy.deepcopy(value, memo), memo)

    def _copy_without_hooks(self, copy_value, memo: dict | None = None) -> Layer:
        clone = type(self).__new__(type(self))
        if memo is not None:
            memo[id(self)] = clone
        for key, value in self.__dict__.items():
            if key not in hooks.HOOK_ATTRIBUTES:
                clone.__dict__[key] = copy_value(value)
        return clone

    # -- helpers shared by the concrete layers ------------------------------------------

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Per-sample output shape for a per-sample input shape (used by summaries)."""
        return tuple(input_shape)

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this layer (saved beside the weights)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved: it has no config()")

    def astype(self, dtype: np.dtype | type) -> Layer:
        """Convert every parameter to ``dtype`` in place of the old arrays; returns self."""
        for key, value in self.params.items():
            self.params[key] = value.astype(dtype)
        self.grads = {}
        return self

    def sgd_update(self, learning_rate: float | None) -> None:
        """The tutorial's update ``p -= lr * dp``, done in place; a no-op when lr is None."""
        if learning_rate is None:
            return
        for key, param in self.params.items():
            param -= learning_rate * self.grads[key]

    def describe(self) -> str:
        """Name used in messages: the network's name for the layer, else its repr."""
        return self.name or repr(self)

    def __repr__(self) -> str:
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        except NotImplementedError:
            args = ""
        return f"{type(self).__name__}({args})"


def check_input(layer: Layer, x: np.ndarray, expected: tuple[int | None, ...]) -> None:
    """Raise ValueError naming the layer when ``x`` is not ``(N, *expected)``; None matches any."""
    shape = getattr(x, "shape", None)
    ok = (
        shape is not None
        and len(shape) == len(expected) + 1
        and all(e is None or e == s for e, s in zip(expected, shape[1:], strict=True))
    )
    if not ok:
        want = ", ".join(["N"] + ["*" if e is None else str(e) for e in expected])
        raise ValueError(
            f"{layer.describe()}: expected input of shape ({want}), got "
            f"{tuple(shape) if shape is not None else type(x).__name__}"
        )


def make_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """Accept a Generator, a seed or None, as NumPy's own APIs do."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def glorot_uniform(
    shape: tuple[int, ...], fan_in: int, fan_out: int, rng: np.random.Generator, dtype
) -> np.ndarray:
    """Glorot/Xavier uniform draw, Keras's default, so both sides of a benchmark start alike.

    The tutorial draws N(0, 1); on full MNIST that saturates every sigmoid, so we don't.
    """
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)
