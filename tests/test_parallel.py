"""DataParallel: a batch split over threads gives the serial step's outputs and gradients."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from labkit import hooks, parallel
from labkit.data import MNIST, load_mnist, one_hot
from labkit.layers import Dense, Flatten, ReLU
from labkit.losses import softmax_cross_entropy_prime
from labkit.models import lenet, tutorial
from labkit.network import Network
from labkit.optim import Adam
from labkit.parallel import (
    MIN_SLICE,
    DataParallel,
    lend_core,
    single_threaded_blas,
    step_blas,
)
from labkit.train import Trainer


def batch(n: int, seed: int = 0, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1, 28, 28)).astype(dtype)
    return x, one_hot(rng.integers(0, 10, n)).astype(dtype)


def serial_step(network, x, y) -> tuple[np.ndarray, dict]:
    output = network.forward(x)
    network.backward(softmax_cross_entropy_prime(y, output), input_gradient=False)
    return output, {
        (i, k): g.copy() for i, layer in enumerate(network) for k, g in layer.grads.items()
    }


@pytest.mark.parametrize("preset", [lenet, tutorial], ids=["lenet", "tutorial"])
@pytest.mark.parametrize("threads, n, slices", [(2, 32, 2), (2, 77, 2), (3, 96, 3), (4, 40, 2)])
def test_split_step_equals_the_serial_step(preset, threads, n, slices):
    network = preset(seed=1, dtype=np.float64)
    x, y = batch(n)
    expected_output, expected_grads = serial_step(network, x, y)

    runner = DataParallel(network, threads)
    assert runner.slices(n) == slices
    for layer in network:
        layer.grads = {}
    output = runner.forward_backward(x, lambda out: softmax_cross_entropy_prime(y, out))

    np.testing.assert_allclose(output, expected_output, rtol=1e-12, atol=1e-13)
    got = {(i, k): g for i, layer in enumerate(network) for k, g in layer.grads.items()}
    assert got.keys() == expected_grads.keys()
    for key, grad in expected_grads.items():
        assert got[key].shape == grad.shape
        np.testing.assert_allclose(got[key], grad, rtol=1e-10, atol=1e-14, err_msg=str(key))


def test_split_forward_equals_predict_serially():
    network = lenet(seed=2)
    x, _ = batch(100, dtype=np.float32)
    serial = network.predict(x, batch_size=64, threads=1)
    split = network.predict(x, batch_size=64, threads=2)
    assert split.shape == serial.shape == (100, 10)
    np.testing.assert_allclose(split, serial, rtol=1e-5, atol=1e-6)


def test_runs_serially_when_splitting_is_unsafe_or_too_small():
    network = lenet(seed=0)
    runner = DataParallel(network, 2)
    assert runner.slices(2 * MIN_SLICE) == 2
    assert runner.slices(2 * MIN_SLICE - 1) == 1  # a thread would get too few samples
    assert DataParallel(network, 1).slices(1000) == 1

    class MyReLU(ReLU):  # a user's layer may keep state the threads would share
        pass

    network.layers[2] = MyReLU()
    assert runner.slices(1000) == 1


def test_hooks_of_a_split_step_see_what_a_serial_pass_shows():
    x, y = batch(70)

    def observe(threads: int) -> list[tuple]:
        network = lenet(seed=3, dtype=np.float64)
        calls = []
        network.register_hook(
            forward=lambda layer, i, o: calls.append(("forward", layer.name, i, o)),
            backward=lambda layer, gi, go: calls.append(
                ("backward", layer.name, gi, go, {k: g.copy() for k, g in layer.grads.items()})
            ),
        )
        runner = DataParallel(network, threads)
        runner.forward_backward(x, lambda out: softmax_cross_entropy_prime(y, out))
        assert all(not hooks.has_hooks(r_layer) for r in runner._replicas for r_layer in r)
        return calls

    serial, split = observe(1), observe(2)
    assert [c[:2] for c in split] == [c[:2] for c in serial]  # same layers, same order
    for ours, theirs in zip(split, serial, strict=True):
        for a, b in zip(ours[2:4], theirs[2:4], strict=True):
            if b is None:
                assert a is None
            else:
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
        if ours[0] == "backward":  # the layer's own gradients are in place when it is called
            for name, grad in theirs[4].items():
                np.testing.assert_allclose(ours[4][name], grad, rtol=1e-10, atol=1e-14)


def test_a_hook_that_fails_reaches_the_caller_and_leaves_no_replica_hook():
    network = lenet(seed=0)
    runner = DataParallel(network, 2)
    x, _ = batch(64, dtype=np.float32)

    def broken(layer, i, o):
        raise RuntimeError("hook failed")

    with network.layers[1].register_forward_hook(broken):
        with pytest.raises(RuntimeError, match="hook failed"):
            runner.forward(x)
    assert all(not hooks.has_hooks(layer) for r in runner._replicas for layer in r)
    assert runner.forward(x).shape == (64, 10)


def test_hooks_see_the_whole_batch_during_training():
    network = lenet(seed=0)
    seen = []
    network.layers[0].register_forward_hook(lambda layer, i, o: seen.append(len(i)))
    trainer = Trainer(network, Adam(network), threads=2, progress=False)
    x, y = batch(64, dtype=np.float32)
    trainer.train_step(x, y)
    assert seen == [64]


def test_replicas_follow_replaced_layers_and_weights():
    network = lenet(seed=0)
    runner = DataParallel(network, 2)
    x, _ = batch(64, dtype=np.float32)
    before = runner.forward(x)
    network.layers[-1].params["bias"][...] += 1.0  # the replicas share the arrays
    np.testing.assert_allclose(runner.forward(x), before + 1.0, rtol=1e-5, atol=1e-5)

    other = lenet(seed=5)
    network.layers[0] = other.layers[0]  # a new layer: the replicas are rebuilt
    np.testing.assert_allclose(
        runner.forward(x), network.predict(x, threads=1), rtol=1e-5, atol=1e-6
    )


def test_errors_in_a_split_step_reach_the_caller():
    network = lenet(seed=0)
    runner = DataParallel(network, 2)
    x, _ = batch(64, dtype=np.float32)

    def bad_gradient(output):
        raise RuntimeError("loss failed")

    with pytest.raises(RuntimeError, match="loss failed"):
        runner.forward_backward(x, bad_gradient)
    wrong = x[:, :, :20]  # wrong image size: the layer's own one-line error, from both threads
    with pytest.raises(ValueError, match="Convolutional"):
        runner.forward(wrong)
    assert runner.forward(x).shape == (64, 10)  # and the runner still works


def test_training_with_threads_is_deterministic_and_tracks_serial_training():
    sample = load_mnist("sample")
    data = MNIST(
        sample.x_train[:256], sample.y_train[:256], sample.x_test[:64], sample.y_test[:64], ""
    )

    def train(threads: int) -> np.ndarray:
        network = lenet(seed=0)
        trainer = Trainer(
            network, Adam(network), batch_size=64, seed=0, progress=False, threads=threads
        )
        trainer.fit(data, epochs=2)
        return network.forward(data.x_test[:8])

    first, second, serial = train(2), train(2), train(1)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, serial, rtol=1e-3, atol=1e-3)


def test_a_failing_slice_waits_for_the_others_before_raising():
    """The next step reuses the replicas: none may still be busy with the failed one."""
    runner = DataParallel(lenet(seed=0), 2)
    parts, replicas = runner._split(64, 2)
    finished = []

    def work(replica, part):
        if replica is replicas[0]:
            raise RuntimeError("slice 0 failed")
        time.sleep(0.2)
        finished.append(part)

    with pytest.raises(RuntimeError, match="slice 0 failed"):
        runner._map(work, replicas, parts)
    assert finished == [parts[1]]


def test_a_failing_middle_slice_waits_for_the_later_ones():
    runner = DataParallel(lenet(seed=0), 3)
    parts, replicas = runner._split(96, 3)
    finished = []

    def work(replica, part):
        if replica is replicas[1]:
            raise RuntimeError("slice 1 failed")
        if replica is replicas[2]:
            time.sleep(0.2)
        finished.append(part)

    with pytest.raises(RuntimeError, match="slice 1 failed"):
        runner._map(work, replicas, parts)
    assert sorted(p.start for p in finished) == [parts[0].start, parts[2].start]


class ThreadNotingDense(Dense):
    """A user's replicable dense layer that notes which thread ran each slice's forward."""

    replicable = True
    seen: list[tuple[str, int]] = []

    def forward(self, input):
        ThreadNotingDense.seen.append((threading.current_thread().name, len(input)))
        return super().forward(input)


@pytest.mark.parametrize("cores, slices, threads_while_lent", [(2, 2, 1), (3, 3, 2), (2, 3, 1)])
def test_a_lent_core_runs_the_same_slices_on_fewer_threads_with_the_same_numbers(
    monkeypatch, cores, slices, threads_while_lent
):
    """While background work borrows a core, the slices run on the cores left, the
    results come back in slice order, and every number is the same to the bit."""
    monkeypatch.setattr(parallel, "available_cores", lambda: cores)
    network = Network([Flatten(), ThreadNotingDense(784, 10, rng=0)])
    runner = DataParallel(network, slices, split="threads")
    x, y = batch(slices * MIN_SLICE + 5, dtype=np.float32)

    def step() -> tuple[np.ndarray, dict, set[str]]:
        ThreadNotingDense.seen.clear()
        output = runner.forward_backward(x, lambda out: softmax_cross_entropy_prime(y, out))
        grads = {name: grad.copy() for name, grad in network.layers[1].grads.items()}
        assert sorted(rows for _, rows in ThreadNotingDense.seen) == sorted(
            part.stop - part.start for part in runner._split(len(x), slices)[0]
        )
        return output, grads, {thread for thread, _ in ThreadNotingDense.seen}

    output, grads, threads = step()
    assert len(threads) >= 2  # (a pool thread may take two slices in turn)
    with lend_core():
        lent_output, lent_grads, lent_threads = step()
    assert threading.current_thread().name in lent_threads
    assert len(lent_threads) <= threads_while_lent
    np.testing.assert_array_equal(lent_output, output)
    for name, grad in grads.items():
        np.testing.assert_array_equal(lent_grads[name], grad, err_msg=name)
    assert len(step()[2]) >= 2  # the core is back once the context ends


def test_lent_cores_are_given_back_when_the_borrower_fails(monkeypatch):
    monkeypatch.setattr(parallel, "available_cores", lambda: 2)
    with pytest.raises(RuntimeError, match="writer failed"), lend_core(), lend_core():
        raise RuntimeError("writer failed")
    network = Network([Flatten(), ThreadNotingDense(784, 10, rng=0)])
    ThreadNotingDense.seen.clear()
    DataParallel(network, 2, split="threads").forward(batch(2 * MIN_SLICE)[0].astype(np.float32))
    assert len({thread for thread, _ in ThreadNotingDense.seen}) == 2


def blas_threads_now() -> set[int]:
    return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


def test_single_threaded_blas_nests_and_gives_back_the_count_when_the_outermost_leaves():
    def in_a_thread(fn) -> None:
        failures = []

        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # reported to the test's thread
                failures.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(10)
        assert not thread.is_alive() and not failures, failures

    seen = []
    with threadpool_limits(limits=2, user_api="blas"):
        with single_threaded_blas(active=False):
            assert blas_threads_now() == {2}
        with single_threaded_blas():
            assert blas_threads_now() == {1}
            with step_blas():  # what every step enters: the same limit, nested
                assert blas_threads_now() == {1}
            assert blas_threads_now() == {1}  # the inner exit gives nothing back

            def another_step() -> None:
                with step_blas():
                    seen.append(blas_threads_now())

            in_a_thread(another_step)  # another thread's step leaves this one's limit alone
            assert seen == [{1}] and blas_threads_now() == {1}
        assert blas_threads_now() == {2}

    # Once this thread's outermost context is left, another thread's step can limit BLAS
    # itself (threadpoolctl lets only the thread holding a limit set it).
    with step_blas():
        pass
    in_a_thread(another_step)
    assert seen == [{1}, {1}]
