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
        m = state.setdefault("m", np.zeros_like(param))
        v = state.setdefault("v", np.zeros_like(param))
        m *= self.beta1
        m += (1 - self.beta1) * grad
        v *= self.beta2
        v += (1 - self.beta2) * (grad * grad)
        t = self.iterations
        step = self.lr * np.sqrt(1 - self.beta2**t) / (1 - self.beta1**t)
        param -= (step * m / (np.sqrt(v) + self.eps)).astype(param.dtype, copy=False)


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "adam": Adam}
