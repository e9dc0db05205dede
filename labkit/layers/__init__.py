"""Batched, vectorized layers that follow the tutorial's forward/backward contract."""

from labkit.layers.activations import Activation, ReLU, Sigmoid, Softmax, Tanh, softmax
from labkit.layers.base import Layer
from labkit.layers.convolutional import Convolutional
from labkit.layers.dense import Dense
from labkit.layers.pooling import MaxPool
from labkit.layers.reshape import Flatten, Reshape

# labkit's own layers: the ones Network.load rebuilds and DataParallel may run on threads.
BUILTIN_LAYERS = frozenset(
    {Convolutional, Dense, MaxPool, Reshape, Flatten, Sigmoid, Tanh, ReLU, Softmax}
)

__all__ = [
    "BUILTIN_LAYERS",
    "Activation",
    "Convolutional",
    "Dense",
    "Flatten",
    "Layer",
    "MaxPool",
    "ReLU",
    "Reshape",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "softmax",
]
