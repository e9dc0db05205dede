"""A small network of your own, with a hand-written layer: what ``--model`` takes.

labkit train --model examples/leaky_net.py:build --epochs 1
labkit gradcheck --model examples/leaky_net.py:LeakyReLU   # one layer
labkit gradcheck --model examples/leaky_net.py:build       # every layer, then the network
"""

from __future__ import annotations

import numpy as np

from labkit import Network
from labkit.layers import Convolutional, Dense, Flatten, Layer, MaxPool


class LeakyReLU(Layer):
    """``max(x, slope * x)``: a ReLU whose negative side keeps a small slope."""

    def __init__(self, slope: float = 0.01) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, input: np.ndarray) -> np.ndarray:
        self.input = input
        return np.where(input > 0, input, self.slope * input)

    def backward(self, output_gradient: np.ndarray, learning_rate=None) -> np.ndarray:
        return np.where(self.input > 0, output_gradient, self.slope * output_gradient)

    def config(self) -> dict:
        return {"slope": self.slope}


def build(seed: int = 0) -> Network:
    """Conv 3x3x8 -> LeakyReLU -> MaxPool 2 -> Flatten -> Dense(1352, 10), logits."""
    rng = np.random.default_rng(seed)
    return Network(
        [
            Convolutional((1, 28, 28), 3, 8, bias="tied", rng=rng),
            LeakyReLU(0.01),
            MaxPool(2),
            Flatten(),
            Dense(8 * 13 * 13, 10, rng=rng),
        ]
    )
