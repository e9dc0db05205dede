"""Which layer class a saved name stands for: labkit's own by name, a user's only when
the user's own code handed it in (``--model``, ``layers=[...]`` or :func:`register_layer`).

A weights file or a run names each layer's class: labkit's own by its bare name
(``"Convolutional"``), any other as ``"module:qualname"`` (``"my_layers:LeakyReLU"``).
Reading a file never imports anything: a name that no class handed in matches is refused
with one line saying which class is missing and how to pass it.
"""

from __future__ import annotations

from collections.abc import Iterable

from labkit.errors import LabkitError
from labkit.layers.activations import ReLU, Sigmoid, Softmax, Tanh
from labkit.layers.base import Layer
from labkit.layers.convolutional import Convolutional
from labkit.layers.dense import Dense
from labkit.layers.pooling import MaxPool
from labkit.layers.reshape import Flatten, Reshape

# labkit's own layers: rebuilt from their bare names. Each declares replicable = True in its
# own body (it keeps per-call state only by rebinding attributes), so DataParallel splits
# batches over them; the declaration is never inherited (Layer.replicable): a subclass
# (a user's, a test mutant) does not inherit it.
BUILTIN_LAYERS = frozenset(
    {Convolutional, Dense, MaxPool, Reshape, Flatten, Sigmoid, Tanh, ReLU, Softmax}
)
_BUILTIN_BY_NAME = {cls.__name__: cls for cls in BUILTIN_LAYERS}
_registered: dict[str, type] = {}

HOW_TO_PASS = (
    "pass the code that defines it: --model FILE.py:NAME on the command line, "
    "layers=[TheClass] in Python, or decorate it with labkit.register_layer"
)


class UnknownLayerClass(LabkitError):
    """A saved layer class that no class handed in by the user's code matches."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


def class_name(cls: type) -> str:
    """The name a file stores for a layer class: bare for labkit's own, else module:qualname."""
    if cls in BUILTIN_LAYERS:
        return cls.__name__
    return f"{cls.__module__}:{cls.__qualname__}"


def register_layer(cls: type) -> type:
    """Let files name ``cls`` (a class decorator): :meth:`Network.load` will rebuild it."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register_layer takes a Layer subclass, got {cls!r}")
    _registered[class_name(cls)] = cls
    return cls


def resolve(name: str, layers: Iterable[type] = ()) -> type:
    """The class a stored ``name`` stands for, among labkit's own, ``layers`` and the
    registered ones: the exact ``module:qualname`` first; else, by qualname alone, one of
    the classes handed in as ``layers`` or defined in ``__main__`` (a notebook's
    ``__main__:LeakyReLU`` is the file's ``leaky_net:LeakyReLU``), never another
    module's registered class of the same name."""
    if not isinstance(name, str) or not name:
        raise UnknownLayerClass(f"bad layer class name {name!r}")
    if name in _BUILTIN_BY_NAME:
        return _BUILTIN_BY_NAME[name]
    layers = tuple(layers)
    known = {**_registered, **{class_name(cls): cls for cls in layers}}
    if name in known:
        return known[name]
    qualname = name.rpartition(":")[2]
    loose = [*layers, *(cls for cls in _registered.values() if cls.__module__ == "__main__")]
    same = {cls for cls in loose if cls.__qualname__ == qualname}
    if len(same) == 1:
        return same.pop()
    if len(same) > 1:
        choices = ", ".join(sorted(class_name(cls) for cls in same))
        raise UnknownLayerClass(f"layer class {name!r} is ambiguous among {choices}")
    raise UnknownLayerClass(f"layer class {name!r} is not one of labkit's: {HOW_TO_PASS}", name)
