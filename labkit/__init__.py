"""labkit: a gradient-checking and training-replay lab for a NumPy CNN on MNIST.

``labkit.Network`` is imported when first asked for, so that ``labkit --help`` (which
imports this package) needs no NumPy.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Network", "__version__"]


def __getattr__(name: str):
    if name == "Network":
        from labkit.network import Network

        return Network
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")
