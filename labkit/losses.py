"""Losses and their derivatives, ``loss(y_true, y_pred)`` as in the tutorial.

Each derivative is with respect to ``y_pred`` and already averages over the batch, so
layers only ever sum over it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from labkit.errors import LabkitError
from labkit.layers.activations import softmax


def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean squared error over every element."""
    return float(np.mean((y_true - y_pred) ** 2))


def mse_prime(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    return 2 * (y_pred - y_true) / np.size(y_true)


def binary_cross_entropy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The tutorial's BCE on probabilities, averaged over every element."""
    return float(np.mean(-y_true * np.log(y_pred) - (1 - y_true) * np.log(1 - y_pred)))


def binary_cross_entropy_prime(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    return ((1 - y_true) / (1 - y_pred) - y_true / y_pred) / np.size(y_true)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log(softmax(z))`` per sample without overflow: ``z - max - log(sum(exp(z - max)))``."""
    flat = logits.reshape(logits.shape[0], -1)
    shifted = flat - flat.max(axis=1, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return out.reshape(logits.shape)


def softmax_cross_entropy(y_true: np.ndarray, logits: np.ndarray) -> float:
    """Cross-entropy of one-hot (or soft) targets against softmax(logits), mean over the batch."""
    return float(-(y_true * log_softmax(logits)).sum() / logits.shape[0])


def softmax_cross_entropy_prime(y_true: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """``(softmax(z) - y) / N``: the fused, stable gradient with respect to the logits."""
    return (softmax(logits) - y_true) / logits.shape[0]


class Loss(NamedTuple):
    """A loss by name with its derivative, as the trainer and the checker use them."""

    name: str
    value: Callable[[np.ndarray, np.ndarray], float]
    prime: Callable[[np.ndarray, np.ndarray], np.ndarray]


LOSSES: dict[str, Loss] = {
    "mse": Loss("mse", mse, mse_prime),
    "binary_cross_entropy": Loss(
        "binary_cross_entropy", binary_cross_entropy, binary_cross_entropy_prime
    ),
    "softmax_cross_entropy": Loss(
        "softmax_cross_entropy", softmax_cross_entropy, softmax_cross_entropy_prime
    ),
}


def resolve_loss(loss: str | Loss) -> Loss:
    """The loss named ``loss`` in :data:`LOSSES` (a :class:`Loss` passes through as it is);
    an unknown name is a one-line LabkitError listing the known ones."""
    if not isinstance(loss, str):
        return loss
    if loss not in LOSSES:
        raise LabkitError(f"unknown loss {loss!r} (known: {', '.join(sorted(LOSSES))})")
    return LOSSES[loss]
