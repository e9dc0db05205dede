"""A user's layer and the data-parallel split: opting in, subclasses, and BLAS in a serial step.

Functional only: which path a step takes and what it computes, never how long it takes
(benchmarks/bench_user_layer.py measures that).
"""

from __future__ import annotations

import threading

import mutants
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from labkit import Network
from labkit.data import MNIST, one_hot
from labkit.layers import (
    BUILTIN_LAYERS,
    Activation,
    Convolutional,
    Dense,
    Flatten,
    Layer,
    MaxPool,
    ReLU,
)
from labkit.losses import softmax_cross_entropy_prime
from labkit.models import lenet
from labkit.optim import Adam
from labkit.parallel import DataParallel
from labkit.train import Trainer


class LeakyReLU(Layer):
    """examples/leaky_net.py's layer, as a user writes it: not opted in."""

    def __init__(self, slope: float = 0.01) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, input):
        self.input = input
        return np.where(input > 0, input, self.slope * input)

    def backward(self, output_gradient, learning_rate=None):
        return np.where(self.input > 0, output_gradient, self.slope * output_gradient)

    def config(self) -> dict:
        return {"slope": self.slope}


class OptedInLeakyReLU(LeakyReLU):
    """The same layer, opted in: it keeps per-call state only by rebinding ``self.input``."""

    replicable = True


class SeenBatches:
    """Which batch sizes, on which threads, a layer's forward was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []  # list.append is atomic: safe from threads

    def record(self, input: np.ndarray) -> None:
        self.calls.append((len(input), threading.get_ident()))


def leaky_net(activation: Layer, dtype=np.float64) -> Network:
    """Conv 3x3x8 -> activation -> MaxPool 2 -> Flatten -> Dense, as examples/leaky_net.py."""
    rng = np.random.default_rng(0)
    return Network(
        [
            Convolutional((1, 28, 28), 3, 8, bias="tied", rng=rng, dtype=dtype),
            activation,
            MaxPool(2),
            Flatten(),
            Dense(8 * 13 * 13, 10, rng=rng, dtype=dtype),
        ]
    )


def batch(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28)), one_hot(rng.integers(0, 10, n)).astype(np.float64)


def watched(cls: type) -> tuple[Layer, SeenBatches]:
    """An instance of a subclass of ``cls`` whose forward records the batches it sees;
    the subclass declares ``replicable`` as ``cls`` does (so it is not what is tested)."""
    seen = SeenBatches()

    class Watched(cls):
        replicable = cls.replicable

        def forward(self, input):
            seen.record(input)
            return super().forward(input)

    return Watched(), seen


def step(network: Network, threads: int, x, y) -> tuple[np.ndarray, dict]:
    for layer in network:
        layer.grads = {}
    runner = DataParallel(network, threads)
    output = runner.forward_backward(x, lambda out: softmax_cross_entropy_prime(y, out))
    grads = {(i, k): g.copy() for i, layer in enumerate(network) for k, g in layer.grads.items()}
    return output, grads


def test_the_attribute_is_read_from_the_class_itself():
    assert Layer.replicable is False
    assert all(cls.replicable is True for cls in BUILTIN_LAYERS)
    assert Activation.replicable is False  # its functions are the user's

    class MyReLU(ReLU):  # overrides nothing, declares nothing: not inherited all the same
        pass

    class MyDense(Dense):
        def backward(self, output_gradient, learning_rate=None):
            return super().backward(output_gradient, learning_rate)

    class MyOwnDense(Dense):
        replicable = True

        def backward(self, output_gradient, learning_rate=None):
            return super().backward(output_gradient, learning_rate)

    assert (MyReLU.replicable, MyDense.replicable, MyOwnDense.replicable) == (False, False, True)
    assert LeakyReLU.replicable is False and OptedInLeakyReLU.replicable is True


def test_no_mutant_is_replicable():
    zoo = [cls for cls in vars(mutants).values() if isinstance(cls, type)]
    zoo = [cls for cls in zoo if issubclass(cls, Layer) and cls.__module__ == mutants.__name__]
    assert len(zoo) >= 19
    assert not [cls.__name__ for cls in zoo if cls.replicable]


def test_a_user_layer_without_the_attribute_runs_serially():
    layer, seen = watched(LeakyReLU)
    network = leaky_net(layer)
    assert DataParallel(network, 2).slices(64) == 1
    x, y = batch(64)
    step(network, 2, x, y)
    assert [size for size, _ in seen.calls] == [64]  # the whole batch, once
    assert seen.calls[0][1] == threading.get_ident()  # on the caller's thread


def test_an_opted_in_user_layer_is_split_and_gives_the_serial_gradients():
    x, y = batch(64)
    serial_output, serial_grads = step(leaky_net(LeakyReLU(0.1)), 1, x, y)

    layer, seen = watched(OptedInLeakyReLU)
    layer.slope = 0.1
    network = leaky_net(layer)
    assert DataParallel(network, 2).slices(64) == 2
    output, grads = step(network, 2, x, y)

    assert sorted(size for size, _ in seen.calls) == [32, 32]  # one slice each...
    assert len({thread for _, thread in seen.calls}) == 2  # ...on two threads
    np.testing.assert_allclose(output, serial_output, rtol=1e-12, atol=1e-13)
    assert grads.keys() == serial_grads.keys()
    for key, grad in serial_grads.items():
        np.testing.assert_allclose(grads[key], grad, rtol=1e-10, atol=1e-14, err_msg=str(key))


def test_a_subclass_that_overrides_backward_is_not_split_unless_it_opts_in():
    class MyDense(Dense):  # the README's example: a user's Dense with its own backward
        def backward(self, output_gradient, learning_rate=None):
            self.grads["weights"] = output_gradient.T @ self.input
            self.grads["bias"] = output_gradient.sum(axis=0)
            return output_gradient @ self.weights

    class MyOptedInDense(MyDense):
        replicable = True

    x, y = batch(64)
    for cls, slices in ((MyDense, 1), (MyOptedInDense, 2)):
        network = leaky_net(ReLU())
        old = network.layers[-1]
        network.layers[-1] = cls(old.input_size, old.output_size, rng=0, dtype=np.float64)
        assert DataParallel(network, 2).slices(64) == slices, cls.__name__
    serial = leaky_net(ReLU())
    serial.layers[-1] = MyOptedInDense(1352, 10, rng=0, dtype=np.float64)
    expected_output, expected = step(serial, 1, x, y)
    output, got = step(network, 2, x, y)  # network: the opted-in one, split
    np.testing.assert_allclose(output, expected_output, rtol=1e-12, atol=1e-13)
    for key, grad in expected.items():
        np.testing.assert_allclose(got[key], grad, rtol=1e-10, atol=1e-14, err_msg=str(key))


class BlasProbe(Layer):
    """Identity that notes, in each forward, how many threads every BLAS library has."""

    replicable = True  # it appends to a list: atomic under the GIL, so safe from threads

    def __init__(self, seen: list) -> None:
        super().__init__()
        self.seen = seen

    def forward(self, input):
        self.seen.append(
            tuple(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")
        )
        return input

    def backward(self, output_gradient, learning_rate=None):
        return output_gradient


class SerialBlasProbe(BlasProbe):
    """The same probe, not replicable (a subclass does not inherit the declaration)."""


def probed(network: Network, index: int, replicable: bool) -> tuple[Network, list]:
    seen: list = []
    network.layers.insert(index, (BlasProbe if replicable else SerialBlasProbe)(seen))
    return Network(network.layers), seen


def blas_threads_now() -> set[int]:
    return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


@pytest.mark.parametrize(
    "threads, replicable, slices",
    [(1, True, 1), (2, False, 1), (2, True, 2)],
    ids=["threads=1", "user layer not replicable", "split"],
)
def test_every_step_runs_blas_single_threaded(threads, replicable, slices):
    network, seen = probed(lenet(seed=0), 1, replicable)
    x, y = (array.astype(np.float32) for array in batch(64))
    data = MNIST(x, y.argmax(axis=1), x[:40], y[:40].argmax(axis=1), "")
    with threadpool_limits(limits=2, user_api="blas"):  # so that a step left alone has 2
        assert blas_threads_now() == {2}
        # threads: the probe counts its calls in this process (tests/test_processes.py
        # checks the worker processes' BLAS)
        trainer = Trainer(network, Adam(network), threads=threads, split="threads", progress=False)
        assert trainer.parallel.slices(32) == slices
        trainer.train_step(x[:32], y[:32])
        assert blas_threads_now() == {2}  # given back after the step
        trainer.fit(data, epochs=1)  # two steps and the test-accuracy pass
        network.predict(x[:40], batch_size=40, threads=threads)
        assert blas_threads_now() == {2}
    calls = 1 + 2 + 1 + 1  # the step, fit's two steps and one test batch, predict
    assert len(seen) == calls * slices
    assert set(seen) == {(1,) * len(seen[0])}, seen
