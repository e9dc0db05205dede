"""Forward and backward hooks on layers, at no cost while none is registered.

Registering the first hook on a layer puts a wrapper in the *instance's* ``forward`` (or
``backward``) attribute, which shadows the class's method; removing the last hook deletes
it again. A layer without hooks therefore runs exactly its own method, with no check.

- forward hooks: ``fn(layer, input, output)`` after ``forward`` returns;
- backward hooks: ``fn(layer, grad_input, grad_output)`` after ``backward`` returns, where
  ``grad_output`` is the gradient that arrived and ``grad_input`` the one returned (None
  when the layer skipped it); parameter gradients are in ``layer.grads``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

ForwardHook = Callable[[Any, Any, Any], None]
BackwardHook = Callable[[Any, Any, Any], None]

_ids = itertools.count()
HOOK_ATTRIBUTES = ("forward", "backward", "_forward_hooks", "_backward_hooks")


class HookHandle:
    """Returned by ``register_*_hook``; ``remove()`` detaches the hook (twice is harmless)."""

    def __init__(self, layer, kind: str, key: int) -> None:
        self.layer, self.kind, self.key = layer, kind, key

    def remove(self) -> None:
        hooks = self.layer.__dict__.get(f"_{self.kind}_hooks")
        if hooks is None:
            return
        hooks.pop(self.key, None)
        if not hooks:
            self.layer.__dict__.pop(self.kind, None)
            self.layer.__dict__.pop(f"_{self.kind}_hooks", None)

    def __enter__(self) -> HookHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class HandleGroup:
    """Several handles removed together (what ``Network.register_hook`` returns)."""

    def __init__(self, handles: Iterable[HookHandle]) -> None:
        self.handles = list(handles)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def __enter__(self) -> HandleGroup:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def has_hooks(layer, kind: str | None = None) -> bool:
    """Whether ``layer`` has ``kind`` ("forward" or "backward") hooks; any kind by default."""
    kinds = ("forward", "backward") if kind is None else (kind,)
    return any(layer.__dict__.get(f"_{k}_hooks") for k in kinds)


def register(layer, kind: str, fn: Callable) -> HookHandle:
    """Attach ``fn`` as a ``kind`` ("forward" or "backward") hook of ``layer``."""
    if kind not in ("forward", "backward"):
        raise ValueError(f"hook kind must be 'forward' or 'backward', got {kind!r}")
    if not callable(fn):
        raise TypeError(f"a hook must be callable, got {type(fn).__name__}")
    hooks = layer.__dict__.setdefault(f"_{kind}_hooks", {})
    key = next(_ids)
    hooks[key] = fn
    if kind not in layer.__dict__:
        method = getattr(type(layer), kind).__get__(layer)
        wrapper = _forward_wrapper if kind == "forward" else _backward_wrapper
        layer.__dict__[kind] = wrapper(layer, method)
    return HookHandle(layer, kind, key)


def fire(layer, kind: str, first: Any, second: Any) -> None:
    """Call ``layer``'s ``kind`` hooks with ``(layer, first, second)``, in registration order.

    The wrappers below call it; so does a split step, once it has the whole batch's
    values back together (:mod:`labkit.parallel`).
    """
    for hook in list(layer.__dict__.get(f"_{kind}_hooks", {}).values()):
        hook(layer, first, second)


def _forward_wrapper(layer, method) -> Callable:
    def forward(input):
        output = method(input)
        fire(layer, "forward", input, output)
        return output

    return forward


def _backward_wrapper(layer, method) -> Callable:
    def backward(output_gradient, learning_rate=None, **options):
        grad_input = method(output_gradient, learning_rate, **options)
        fire(layer, "backward", grad_input, output_gradient)
        return grad_input

    return backward
