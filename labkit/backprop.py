"""One layer's backward pass for one sample, spelled out: the parts a student looks at
and, for any element of a gradient, the chain-rule sum that makes it.

Pure maths in float64 on one sample (no batch axis), written from the formulas, not by
calling the layer's ``backward``: that is what it explains (and what the explainer holds
it against). ``explain(layer, x, dy)`` returns a :class:`LayerBackward`:

- convolution (valid cross-correlation, stride 1, kernels ``K (D, C, k, k)``):
  ``dX = dY ⊛full rot180(K)``: ``dX[c,i,j] = Σ_d,u,v dY[d,i−u,j−v] K[d,c,u,v]``;
  ``dK[d,c,u,v] = Σ_i,j X[c,i+u,j+v] dY[d,i,j]`` (the input correlated with dY);
  ``dB[d] = Σ_i,j dY[d,i,j]`` (tied) or ``dB = dY`` (the tutorial's untied bias);
- max-pool: the routing mask (the first maximum of each window, row-major) and
  ``dX = mask · dY`` of the window;
- an activation: ``dX = dY ⊙ f'(X)`` (ReLU: the mask ``X > 0``, and what it zeroed);
- dense (``W (m, n)``): ``dW = dY xᵀ``, ``db = dY``, ``dX = Wᵀ dY``;
- reshape: ``dX = dY`` in the input's shape;
- the loss (softmax cross-entropy): ``dz = p − y`` (:func:`explain_loss`);
- any other layer: its input, output and the two gradients, with no sum to show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from labkit.layers import Activation, Convolutional, Dense, MaxPool, ReLU, Reshape, Sigmoid, Tanh
from labkit.layers.activations import softmax

SHOWN_TERMS = 12  # terms a summary lists before "and N more"
SYMBOLS = {  # how an element of each part is named (a view's hover, a chain rule's terms)
    "x": "X",
    "kernels": "K",
    "y": "Y",
    "dy": "dY",
    "rotated": "rot180(K)",
    "dx": "dX",
    "dkernels": "dK",
    "dbiases": "dB",
    "mask": "mask",
    "prime": "f'(X)",
    "zeroed": "zeroed",
    "weights": "W",
    "dweights": "dW",
    "dbias": "db",
    "z": "z",
    "p": "p",
    "target": "y",
    "dz": "dz",
}


@dataclass(frozen=True)
class Part:
    """One array of a layer's backward pass, for one sample."""

    key: str  # "x", "y", "dy", "dx", "d" + a parameter's name, "mask", ...
    title: str
    values: np.ndarray  # float64
    formula: str = ""  # how it is made from the others
    signed: bool = True  # drawn on a scale centred at 0


@dataclass(frozen=True)
class Term:
    """One product of a chain-rule sum: its factors' names and values, and its value."""

    label: str
    factors: tuple[float, ...]
    value: float


@dataclass(frozen=True)
class ChainRule:
    """How one element of a gradient is made: ``total = Σ terms`` (largest |term| first)."""

    element: str  # "dX[0,5,7]"
    formula: str
    terms: tuple[Term, ...]
    total: float

    def lines(self, shown: int = SHOWN_TERMS) -> list[str]:
        """The sum as text: the formula, the largest terms, the rest in one line, the total."""
        out = [f"{self.element} = {self.formula}"]
        for term in self.terms[:shown]:
            out.append(f"  {term.value:+.6e}  = {term.label}")
        rest = self.terms[shown:]
        if rest:
            out.append(f"  {sum(t.value for t in rest):+.6e}  = {len(rest)} smaller terms")
        out.append(f"  {self.total:+.6e}  = {self.element} ({len(self.terms)} terms)")
        return out


@dataclass
class LayerBackward:
    """A layer's parts (by key, in reading order) and the chain rule of its gradients."""

    kind: str  # "convolution", "maxpool", "activation", "dense", "reshape", "loss", "layer"
    parts: dict[str, Part]
    rules: dict[str, Callable[[tuple[int, ...]], ChainRule]] = field(default_factory=dict)

    def chain_rule(self, part: str, index: tuple[int, ...]) -> ChainRule:
        """The sum that makes ``parts[part].values[index]``; ValueError (one line) for a
        part with no sum shown or an index outside it."""
        if part not in self.rules:
            known = ", ".join(self.rules) or "none"
            raise ValueError(f"no chain rule for part {part!r} (parts with one: {known})")
        shape = self.parts[part].values.shape
        index = tuple(int(i) for i in index)
        if len(index) != len(shape) or not all(
            0 <= i < n for i, n in zip(index, shape, strict=False)
        ):
            raise ValueError(f"element {index} is outside {part} of shape {shape}")
        return self.rules[part](index)


def _name(symbol: str, index) -> str:
    return f"{symbol}[{','.join(str(int(i)) for i in index)}]"


def _rule(element: str, formula: str, labels, factors) -> ChainRule:
    """A ChainRule from per-term labels and factor columns, sorted by |term|."""
    factors = np.asarray(factors, dtype=np.float64).reshape(len(labels), -1)
    values = np.prod(factors, axis=1)
    order = np.argsort(-np.abs(values), kind="stable")
    terms = tuple(Term(labels[i], tuple(factors[i].tolist()), float(values[i])) for i in order)
    return ChainRule(element, formula, terms, float(np.sum(values)))


# -- convolution ------------------------------------------------------------------------


def convolution_parts(x, kernels, biases, dy) -> dict[str, Part]:
    """Forward and backward of a valid cross-correlation for one sample ``x (C, H, W)``."""
    d, c, k, _ = kernels.shape
    windows = sliding_window_view(x, (k, k), axis=(1, 2))  # (C, OH, OW, k, k)
    tied = biases.ndim == 1
    y = np.einsum("cijuv,dcuv->dij", windows, kernels) + (biases[:, None, None] if tied else biases)
    rotated = kernels[:, :, ::-1, ::-1]
    padded = np.pad(dy, ((0, 0), (k - 1, k - 1), (k - 1, k - 1)))
    dx = np.einsum("dijuv,dcuv->cij", sliding_window_view(padded, (k, k), axis=(1, 2)), rotated)
    oh, ow = dy.shape[1:]
    dk = np.einsum("cuvij,dij->dcuv", sliding_window_view(x, (oh, ow), axis=(1, 2)), dy)
    db = dy.sum(axis=(1, 2)) if tied else dy.copy()
    return {
        "x": Part("x", "input X", x),
        "kernels": Part("kernels", "kernels K", kernels),
        "y": Part("y", "output Y", y, "Y = B + X ⋆ K (valid cross-correlation)"),
        "dy": Part("dy", "output gradient dY (arriving)", dy),
        "rotated": Part("rotated", "kernels rotated 180°", rotated, "rot180(K)"),
        "dx": Part("dx", "input gradient dX", dx, "dX = dY ∗full rot180(K)"),
        "dkernels": Part("dkernels", "kernel gradient dK", dk, "dK = X ⋆ dY"),
        "dbiases": Part("dbiases", "bias gradient dB", db, "dB = Σ_i,j dY" if tied else "dB = dY"),
    }


def convolution_rules(x, kernels, dy, tied: bool) -> dict[str, Callable]:
    """The chain rule of each element of dX, dK and dB."""
    d_count, _, k, _ = kernels.shape
    oh, ow = dy.shape[1:]

    def dx(index):
        c, i, j = index
        labels, factors = [], []
        for d in range(d_count):
            for u in range(max(0, i - oh + 1), min(k, i + 1)):
                for v in range(max(0, j - ow + 1), min(k, j + 1)):
                    labels.append(f"{_name('dY', (d, i - u, j - v))} × {_name('K', (d, c, u, v))}")
                    factors.append((dy[d, i - u, j - v], kernels[d, c, u, v]))
        formula = "Σ_d,u,v dY[d, i−u, j−v] × K[d, c, u, v]"
        return _rule(_name("dX", index), formula, labels, factors)

    def dk(index):
        d, c, u, v = index
        labels = [
            f"{_name('X', (c, i + u, j + v))} × {_name('dY', (d, i, j))}"
            for i in range(oh)
            for j in range(ow)
        ]
        factors = np.stack([x[c, u : u + oh, v : v + ow].ravel(), dy[d].ravel()], axis=1)
        formula = "Σ_i,j X[c, i+u, j+v] × dY[d, i, j]"
        return _rule(_name("dK", index), formula, labels, factors)

    def db(index):
        if not tied:
            return _rule(_name("dB", index), "dY[d, i, j]", [_name("dY", index)], [dy[index]])
        (d,) = index
        labels = [_name("dY", (d, i, j)) for i in range(oh) for j in range(ow)]
        return _rule(_name("dB", index), "Σ_i,j dY[d, i, j]", labels, dy[d].ravel())

    return {"dx": dx, "dkernels": dk, "dbiases": db}


# -- max-pool ---------------------------------------------------------------------------


def winners(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """``(C, OH, OW, 2)``: the row and column of each window's first maximum (row-major)."""
    windows = sliding_window_view(x, (size, size), axis=(1, 2))[:, ::stride, ::stride]
    flat = windows.reshape(*windows.shape[:3], -1).argmax(axis=-1)
    rows, cols = np.divmod(flat, size)
    grid_r, grid_c = np.meshgrid(np.arange(flat.shape[1]), np.arange(flat.shape[2]), indexing="ij")
    return np.stack([grid_r * stride + rows, grid_c * stride + cols], axis=-1)


def maxpool_parts(x, dy, size: int, stride: int) -> tuple[dict[str, Part], Callable]:
    """Max-pool's routing for one sample ``x (C, H, W)``, and the chain rule of dX."""
    won = winners(x, size, stride)
    channels, oh, ow, _ = won.shape
    mask, dx = np.zeros_like(x), np.zeros_like(x)
    y = np.empty(dy.shape)
    for c in range(channels):
        for a in range(oh):
            for b in range(ow):
                r, s = won[c, a, b]
                mask[c, r, s] = 1.0
                dx[c, r, s] += dy[c, a, b]
                y[c, a, b] = x[c, r, s]
    parts = {
        "x": Part("x", "input X", x),
        "y": Part("y", "output Y (each window's max)", y),
        "dy": Part("dy", "output gradient dY (arriving)", dy),
        "mask": Part("mask", "routing mask (the window's winner)", mask, signed=False),
        "dx": Part("dx", "input gradient dX (routed)", dx, "dX = dY at each winner, 0 elsewhere"),
    }

    def rule(index):
        c, i, j = index
        labels, factors = [], []
        for a in range(max(0, (i - size) // stride + 1), min(oh, i // stride + 1)):
            for b in range(max(0, (j - size) // stride + 1), min(ow, j // stride + 1)):
                if a * stride <= i < a * stride + size and b * stride <= j < b * stride + size:
                    won_here = tuple(won[c, a, b]) == (i, j)
                    labels.append(f"{_name('dY', (c, a, b))} × [won window ({a},{b})]")
                    factors.append((dy[c, a, b], 1.0 if won_here else 0.0))
        if not labels:  # a row or column no window covers
            return _rule(_name("dX", index), "not in any window", ["0"], [0.0])
        return _rule(_name("dX", index), "Σ_windows dY × [X is the window's max]", labels, factors)

    return parts, rule


# -- activations, dense, reshape ----------------------------------------------------------


def derivative(layer, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, str, str]:
    """``f'(x)`` of an elementwise activation, its symbol and its formula."""
    if isinstance(layer, ReLU):
        return (x > 0).astype(np.float64), "[X > 0]", "1 where X > 0, else 0"
    if isinstance(layer, Sigmoid):
        return y * (1 - y), "σ'(X)", "σ'(X) = Y (1 − Y)"
    if isinstance(layer, Tanh):
        return 1 - y * y, "tanh'(X)", "tanh'(X) = 1 − Y²"
    return np.asarray(layer.activation_prime(x), dtype=np.float64), "f'(X)", "f'(X)"


def activation_parts(layer, x, dy) -> tuple[dict[str, Part], Callable]:
    """An elementwise activation on one sample: ``dX = dY ⊙ f'(X)``."""
    y = np.asarray(layer.activation(x), dtype=np.float64)
    prime, symbol, formula = derivative(layer, x, y)
    relu = isinstance(layer, ReLU)
    parts = {
        "x": Part("x", "input X", x),
        "y": Part("y", "output Y", y),
        "dy": Part("dy", "output gradient dY (arriving)", dy),
        "prime": Part("prime", "mask X > 0" if relu else symbol, prime, formula, signed=False),
    }
    if relu:
        parts["zeroed"] = Part("zeroed", "what the mask zeroed", dy * (1 - prime), "dY where X ≤ 0")
    parts["dx"] = Part("dx", "input gradient dX", dy * prime, f"dX = dY ⊙ {symbol}")

    def rule(index):
        label = f"{_name('dY', index)} × {symbol.replace('X', _name('X', index))}"
        return _rule(_name("dX", index), f"dY ⊙ {symbol}", [label], [(dy[index], prime[index])])

    return parts, rule


def dense_parts(x, weights, bias, dy) -> tuple[dict[str, Part], dict[str, Callable]]:
    """A dense layer on one sample ``x (n,)``: ``dW = dY xᵀ``, ``db = dY``, ``dX = Wᵀ dY``."""
    y = weights @ x + bias
    parts = {
        "x": Part("x", "input x", x),
        "weights": Part("weights", "weights W", weights),
        "y": Part("y", "output y = W x + b", y),
        "dy": Part("dy", "output gradient dY (arriving)", dy),
        "dweights": Part("dweights", "weight gradient dW", np.outer(dy, x), "dW = dY xᵀ"),
        "dbias": Part("dbias", "bias gradient db", dy.copy(), "db = dY"),
        "dx": Part("dx", "input gradient dX", weights.T @ dy, "dX = Wᵀ dY"),
    }

    def dx(index):
        (j,) = index
        labels = [f"{_name('W', (i, j))} × {_name('dY', (i,))}" for i in range(len(dy))]
        return _rule(_name("dX", index), "Σ_i W[i, j] × dY[i]", labels, np.c_[weights[:, j], dy])

    def dw(index):
        i, j = index
        label = f"{_name('dY', (i,))} × {_name('x', (j,))}"
        return _rule(_name("dW", index), "dY[i] × x[j]", [label], [(dy[i], x[j])])

    def db(index):
        return _rule(_name("db", index), "dY[i]", [_name("dY", index)], [dy[index]])

    return parts, {"dx": dx, "dweights": dw, "dbias": db}


def explain(layer, x: np.ndarray, dy: np.ndarray, dx: np.ndarray | None = None) -> LayerBackward:
    """``layer``'s backward pass for one sample: ``x`` its input, ``dy`` the gradient
    arriving at its output (per-sample shapes). A layer with no formula here is shown
    with ``dx`` as given (its own backward's)."""
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    params = {name: np.asarray(v, np.float64) for name, v in layer.params.items()}
    if isinstance(layer, Convolutional):
        kernels, biases = params["kernels"], params["biases"]
        parts = convolution_parts(x, kernels, biases, dy)
        return LayerBackward(
            "convolution", parts, convolution_rules(x, kernels, dy, biases.ndim == 1)
        )
    if isinstance(layer, MaxPool):
        parts, rule = maxpool_parts(x, dy, layer.pool_size, layer.stride)
        return LayerBackward("maxpool", parts, {"dx": rule})
    if isinstance(layer, Activation):
        parts, rule = activation_parts(layer, x, dy)
        return LayerBackward("activation", parts, {"dx": rule})
    if isinstance(layer, Dense):
        parts, rules = dense_parts(x.reshape(-1), params["weights"], params["bias"], dy.reshape(-1))
        return LayerBackward("dense", parts, rules)
    if isinstance(layer, Reshape):
        back = dy.reshape(x.shape)
        parts = {
            "x": Part("x", "input X", x),
            "dy": Part("dy", "output gradient dY (arriving)", dy),
            "dx": Part("dx", "input gradient dX", back, "dX = dY, in X's shape"),
        }

        def rule(index):
            source = np.unravel_index(np.ravel_multi_index(index, x.shape), dy.shape)
            return _rule(_name("dX", index), "dY, reshaped", [_name("dY", source)], [dy[source]])

        return LayerBackward("reshape", parts, {"dx": rule})
    parts = {
        "x": Part("x", "input X", x),
        "dy": Part("dy", "output gradient dY (arriving)", dy),
    }
    if dx is not None:
        parts["dx"] = Part("dx", "input gradient dX (the layer's own backward)", np.asarray(dx))
    return LayerBackward("layer", parts)


def explain_loss(logits: np.ndarray, label: int, loss_name: str, prime=None) -> LayerBackward:
    """The loss at the end for one sample: softmax cross-entropy's ``dz = p − y``; another
    loss's derivative ``prime(y, z)`` (of one sample) is shown without a sum."""
    z = np.asarray(logits, np.float64).reshape(-1)
    target = np.zeros_like(z)
    target[label] = 1.0
    parts = {"z": Part("z", "logits z (the last layer's output)", z)}
    if loss_name != "softmax_cross_entropy":
        dz = np.asarray(prime(target[None], z[None]), np.float64).reshape(-1)
        parts["target"] = Part("target", "target y (one-hot)", target, signed=False)
        parts["dz"] = Part("dz", "loss gradient dz", dz, f"d {loss_name} / dz")
        return LayerBackward("loss", parts)
    p = softmax(z[None])[0]
    parts["p"] = Part("p", "probabilities p = softmax(z)", p, signed=False)
    parts["target"] = Part("target", "target y (one-hot)", target, signed=False)
    parts["dz"] = Part("dz", "loss gradient dz = p − y", p - target, "dz = p − y")

    def rule(index):
        (i,) = index
        labels = [_name("p", index), f"−{_name('y', index)}"]
        return _rule(_name("dz", index), "p[i] − y[i]", labels, [p[i], -target[i]])

    return LayerBackward("loss", parts, {"dz": rule})
