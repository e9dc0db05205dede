"""A split step over processes: the slices of a batch computed by forked worker processes
that share memory with the trainer, so no slice waits for another's GIL.

Threads that each take a slice (:mod:`labkit.parallel`) mostly wait for each other,
because between NumPy calls each needs the GIL; processes have a GIL each (lenet at
batch 32: two threads train 1.23-1.28x as fast as one core, two processes 1.50-1.55x,
``benchmarks/bench_split.py``). The trainer
computes the first slice itself; each worker process holds a copy of the network forked
from it and computes one other slice, through one anonymous shared mapping per worker:

- the parameters, one copy for every worker: the trainer copies its own in before each
  step (the optimizer changes them in place), and each worker copies them into its own
  layers' arrays (a user's layer may hold its arrays under other names too);
- per worker, its slice of the batch, its output, the gradient of the loss with respect
  to that output, and its parameter gradients, which the trainer adds to its own slice's
  in slice order, as the threaded step does.

Per step the trainer's own cost grows with the worker count only in that sum (and in
one semaphore post and wait per worker): the parameters are copied once, whatever the
count, and each worker copies its own slice.

Every slice is computed by the same code on the same numbers as on a thread, and the
sums run in the same order: a step gives the threaded step's results to the bit. So a
step whose layers have hooks (a record step) runs on threads instead, and the recorded
run still trains the same weights.

The mappings are anonymous: they vanish with the last process that holds them, so no
shared memory can leak, however a process ends. A worker ignores SIGINT (Ctrl-C reaches
the whole process group; the trainer decides when to stop), is killed by the kernel when
the trainer's process dies (``PR_SET_PDEATHSIG``), and stops when told or when its
trainer's process is gone. Linux only: it needs ``fork`` (a notebook's own layer classes
need no pickling) and the death signal.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import mmap
import multiprocessing
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from labkit.network import Network

FORWARD, BACKWARD, STOP = 1, 2, 3  # what a worker is told to do (its command's first slot)
_PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.5  # how often a waiting side checks that the other is still alive


def available() -> bool:
    """Whether this platform can run a split step over processes (fork and Linux)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _param_specs(network: Network) -> dict[tuple[int, str], tuple[tuple[int, ...], np.dtype]]:
    """Every parameter's shape and dtype, keyed (layer index, name)."""
    return {
        (index, name): (value.shape, value.dtype)
        for index, layer in enumerate(network)
        for name, value in layer.params.items()
    }


class _Region:
    """Named arrays laid out one after the other in one anonymous shared mapping."""

    def __init__(self, specs: dict[object, tuple[tuple[int, ...], np.dtype]]) -> None:
        offsets, total = {}, 0
        for key, (shape, dtype) in specs.items():
            total = -(-total // 64) * 64  # each array cache-line aligned
            offsets[key] = total
            total += math.prod(shape) * np.dtype(dtype).itemsize
        self.memory = mmap.mmap(-1, max(total, 1))  # MAP_SHARED | MAP_ANONYMOUS
        self.arrays = {
            key: np.frombuffer(
                self.memory, dtype=dtype, count=math.prod(shape), offset=offsets[key]
            ).reshape(shape)
            for key, (shape, dtype) in specs.items()
        }


class _Worker:
    """One forked worker process: its region (its slice's arrays and its parameter
    gradients, keyed (layer index, name)), and the two semaphores of its steps."""

    def __init__(self, network: Network, params: _Region, region: _Region, context) -> None:
        self.region = region
        self.go = context.Semaphore(0)
        self.done = context.Semaphore(0)
        self.command = region.arrays["command"]  # [what, rows, failed]
        self.errors, errors_in = context.Pipe(duplex=False)
        watched = threading.current_thread() is threading.main_thread()
        self.process = context.Process(
            target=_serve,
            args=(network, params, region, self.go, self.done, errors_in, os.getpid(), watched),
            name="labkit-worker",
            daemon=True,
        )
        self.process.start()
        errors_in.close()

    def start(self, what: int, rows: int = 0) -> None:
        self.command[:2] = (what, rows)
        self.go.release()

    def wait(self) -> None:
        """Until the worker has done what it was given; its error, raised here."""
        while not self.done.acquire(timeout=POLL_SECONDS):
            if not self.process.is_alive():
                raise RuntimeError(
                    f"labkit worker process {self.process.pid} died "
                    f"(exit code {self.process.exitcode})"
                )
        if self.command[2]:
            self.command[2] = 0
            error = self.errors.recv()
            error.add_note(f"(raised in labkit worker process {self.process.pid})")
            raise error

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.start(STOP)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.errors.close()


def _shutdown(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.stop()
    workers.clear()


class ProcessSlices:
    """Slices 1.. of a split step on worker processes (slice 0 stays with the caller).

    Built for one network, slice count, slice size and input signature; ``matches`` says
    whether a step fits it. Stops its workers on :meth:`close`, when collected, and at exit.
    """

    def __init__(
        self, network: Network, count: int, x: np.ndarray, output: np.ndarray, rows: int
    ) -> None:
        self.network = network
        self.rows = rows
        self.signature = self.signature_of(network, count, x)
        context = multiprocessing.get_context("fork")
        specs = _param_specs(network)
        self.params = _Region(specs)
        slice_specs = {
            "command": ((3,), np.dtype(np.int64)),
            "x": ((rows, *x.shape[1:]), x.dtype),
            "output": ((rows, *output.shape[1:]), output.dtype),
            "gradient": ((rows, *output.shape[1:]), output.dtype),
            **specs,  # the worker's parameter gradients
        }
        self.workers: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _shutdown, self.workers)
        for _ in range(count - 1):
            self.workers.append(_Worker(network, self.params, _Region(slice_specs), context))

    @staticmethod
    def signature_of(network: Network, count: int, x: np.ndarray) -> tuple:
        """What the workers' copies were forked for: the layers, their parameters' names,
        shapes and dtypes, the slice count and the input's sample shape and dtype."""
        layers = tuple((id(layer), id(layer.params)) for layer in network)
        params = tuple(
            (key, shape, dtype.str) for key, (shape, dtype) in _param_specs(network).items()
        )
        return layers, params, count, x.shape[1:], x.dtype.str

    def matches(self, network: Network, count: int, x: np.ndarray, rows: int) -> bool:
        return rows <= self.rows and self.signature == self.signature_of(network, count, x)

    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self.workers]

    def close(self) -> None:
        self._finalizer()


def follow_parent(watched: bool) -> None:
    """In a forked child: leave Ctrl-C to the parent, die with it (``watched``: it was
    forked by the main thread; the death signal follows the forking thread, and only the
    main one lasts), and run BLAS on one thread. The parent-pid poll covers the rest."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if watched:
        with contextlib.suppress(Exception):  # best effort: the parent-pid check also serves
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    threadpool_limits(limits=1, user_api="blas")


def _serve(
    network: Network, params: _Region, region: _Region, go, done, errors, parent: int, watched: bool
) -> None:
    """A worker's loop: forward or backward its slice through its copy of the network."""
    follow_parent(watched)
    arrays = region.arrays
    command = arrays["command"]
    from labkit.parallel import replicate  # (parallel imports this module)

    network = replicate(network)  # without the trainer's hooks
    while True:
        while not go.acquire(timeout=POLL_SECONDS):
            if os.getppid() != parent:
                return
        what, rows = int(command[0]), int(command[1])
        if what == STOP:
            return
        try:
            if what == FORWARD:
                for index, layer in enumerate(network):
                    for name, value in layer.params.items():
                        np.copyto(value, params.arrays[index, name])
                arrays["output"][:rows] = network.step_forward(arrays["x"][:rows])
            else:
                network.step_backward(arrays["gradient"][:rows], input_gradient=False)
                for index, layer in enumerate(network):
                    for name, grad in layer.grads.items():
                        arrays[index, name][...] = grad
        except BaseException as exc:  # the trainer raises it
            command[2] = 1
            try:
                errors.send(exc)
            except Exception:
                errors.send(RuntimeError(f"{type(exc).__name__}: {exc}"))
        done.release()


def run_step(
    slices: ProcessSlices,
    first: Network,
    x: np.ndarray,
    parts: list[slice],
    output_gradient: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, list[dict[tuple[int, str], np.ndarray]]]:
    """Forward and backward every slice (``parts[0]`` through ``first``, the caller's
    replica); returns the whole batch's output and the workers' parameter gradients,
    slice by slice, keyed (layer index, name)."""
    workers = slices.workers
    for index, layer in enumerate(slices.network):
        for name, value in layer.params.items():
            np.copyto(slices.params.arrays[index, name], value)
    for worker, part in zip(workers, parts[1:], strict=True):
        rows = part.stop - part.start
        worker.region.arrays["x"][:rows] = x[part]
        worker.start(FORWARD, rows)
    try:
        outputs = [first.step_forward(x[parts[0]])]
    finally:
        _wait_all(workers)
    for worker, part in zip(workers, parts[1:], strict=True):
        outputs.append(worker.region.arrays["output"][: part.stop - part.start])
    output = np.concatenate(outputs)
    grad = output_gradient(output)
    for worker, part in zip(workers, parts[1:], strict=True):
        rows = part.stop - part.start
        worker.region.arrays["gradient"][:rows] = grad[part]
        worker.start(BACKWARD, rows)
    try:
        first.step_backward(grad[parts[0]], input_gradient=False)
    finally:
        _wait_all(workers)
    keys = list(slices.params.arrays)
    return output, [{key: worker.region.arrays[key] for key in keys} for worker in workers]


def _wait_all(workers: list[_Worker]) -> None:
    """Wait for every worker, then raise the first failure (all idle before anything
    is raised)."""
    failure = None
    for worker in workers:
        try:
            worker.wait()
        except BaseException as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
