"""Optimizers that update every layer's ``params`` in place from its ``grads``."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from labkit.layers.base import Layer


class Optimizer:
    """Walks the layers' parameters; subclasses say how one tensor is updated."""

    def __init__(self, layers: Iterable[Layer], lr: float) -> None:
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"learning rate must be positive and finite, got {lr}")
        self.layers = list(getattr(layers, "layers", layers))
        self.lr = float(lr)
        self.state: dict[tuple[int, str], dict[str, np.ndarray]] = {}
        self.iterations = 0

    def step(self) -> None:
        """Apply one update to every parameter from the gradients of the last backward."""
        self.iterations += 1
        for index, layer in enumerate(self.layers):
            for name, param in layer.params.items():
                state = self.state.setdefault((index, name), {})
                self.update(param, layer.grads[name], state)

    def update(self, param: np.ndarray, grad: np.ndarray, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """The tutorial's update: ``p -= lr * g``."""

    def update(self, param, grad, state) -> None:
        param -= self.lr * grad


class Momentum(Optimizer):
    """Heavy-ball momentum: ``v = mu v - lr g; p += v``."""

    def __init__(self, layers: Iterable[Layer], lr: float = 0.01, momentum: float = 0.9) -> None:
        super().__init__(layers, lr)
        self.momentum = float(momentum)

    def update(self, param, grad, state) -> None:
        velocity = state.setdefault("velocity", np.zeros_like(param))
        velocity *= self.momentum
        velocity -= self.lr * grad
        param += velocity


class Adam(Optimizer):
    """Adam (Kingma & Ba) with Keras's defaults, bias-corrected, updated in place."""

    def __init__(
        self,
        layers: Iterable[Layer],
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-7,
    ) -> None:
        super().__init__(layers, lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, param, grad, state) -> None:
        # In place with one scratch array per parameter: a step allocates nothing (the
        # update is a dozen elementwise passes over every weight, once per training step).
        if not state:
            state.update(m=np.zeros_like(param), v=np.zeros_like(param))
            state["scratch"] = np.empty_like(param)
        m, v, scratch = state["m"], state["v"], state["scratch"]
        m *= self.beta1
        m += np.multiply(grad, 1 - self.beta1, out=scratch)
        v *= self.beta2
        np.multiply(grad, grad, out=scratch)
        v += np.multiply(scratch, 1 - self.beta2, out=scratch)
        t = self.iterations
        step = self.lr * np.sqrt(1 - self.beta2**t) / (1 - self.beta1**t)
        np.sqrt(v, out=scratch)
        scratch += self.eps
        np.divide(m, scratch, out=scratch)
        param -= np.multiply(scratch, step, out=scratch)


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "adam": Adam}
