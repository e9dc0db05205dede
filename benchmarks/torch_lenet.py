"""labkit's lenet in PyTorch (CPU, eager), for ``bench_engine.py``: the same function,
the same weights, Adam with Keras's defaults. Imported only when torch is installed.

PyTorch is channels-first and flattens ``(C, H, W)`` like labkit, and ``nn.Linear``
keeps its weights ``(out, in)``: labkit's parameters copy over as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from labkit.network import Network

try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover - bench_engine reports the peer as missing
    torch = None


def available() -> str | None:
    """torch's version, or None when it is not installed."""
    return None if torch is None else torch.__version__


def setup(threads: int) -> None:
    """Pin torch's thread pools before any op runs (inter-op pool: one thread, as for TF)."""
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def build(network: Network) -> tuple[Any, Any]:
    """The twin of labkit's ``lenet`` with ``network``'s weights, and its Adam."""
    model = nn.Sequential(
        nn.Conv2d(1, 16, 5),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(16, 32, 5),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(512, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )
    ours = [layer for layer in network if layer.params]
    theirs = [module for module in model if isinstance(module, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        for layer, module in zip(ours, theirs, strict=True):
            weights, bias = (np.asarray(value) for value in layer.params.values())
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights)))
            module.bias.copy_(torch.from_numpy(np.ascontiguousarray(bias)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)  # Keras's eps
    return model, optimizer


def logits(model: Any, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


def steps(model: Any, optimizer: Any, batches: Iterator[tuple[np.ndarray, np.ndarray]]):
    """A function running ``n`` eager training steps (forward, cross-entropy, backward, Adam)
    on the next batches; each returns the loss as a float, so it is complete when timed."""
    loss_of = nn.CrossEntropyLoss()
    tensors = _as_tensors(batches)

    def run(n: int) -> None:
        for _ in range(n):
            x, labels = next(tensors)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_of(model(x), labels)
            loss.backward()
            optimizer.step()
            loss.item()

    return run


def _as_tensors(batches: Iterator[tuple[np.ndarray, np.ndarray]]) -> Iterator:
    """Each (images, one-hot) batch as (float tensor, class-index tensor), converted once."""
    cache: dict[int, tuple[Any, Any]] = {}
    for x, y in batches:
        if id(x) not in cache:
            cache[id(x)] = (torch.from_numpy(x), torch.from_numpy(y.argmax(axis=1)))
        yield cache[id(x)]


def predictor(model: Any, x: np.ndarray, batch: int) -> Callable[[], np.ndarray]:
    """Inference over ``x`` in batches under ``torch.inference_mode`` (no autograd)."""
    images = torch.from_numpy(x)

    def run() -> np.ndarray:
        with torch.inference_mode():
            outs = [model(images[i : i + batch]) for i in range(0, len(images), batch)]
            return torch.cat(outs).numpy()

    return run
