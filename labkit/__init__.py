"""labkit: a gradient-checking and training-replay lab for a NumPy CNN on MNIST."""

from labkit.network import Network

__version__ = "0.1.0"
__all__ = ["Network", "__version__"]
