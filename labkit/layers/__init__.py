"""Batched, vectorized layers that follow the tutorial's forward/backward contract."""

from labkit.layers.activations import Activation, ReLU, Sigmoid, Softmax, Tanh, softmax
from labkit.layers.base import Layer
from labkit.layers.convolutional import Convolutional
from labkit.layers.dense import Dense
from labkit.layers.pooling import MaxPool
from labkit.layers.registry import BUILTIN_LAYERS, register_layer
from labkit.layers.reshape import Flatten, Reshape

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
    "register_layer",
    "softmax",
]
