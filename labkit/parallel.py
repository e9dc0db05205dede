"""Data parallelism: each batch split in slices, a replica of the layers per slice, the
slices run on threads here or on worker processes (:mod:`labkit.processes`).

BLAS spreads a GEMM over the cores, but the elementwise work (max-pool, ReLU, im2col
copies) and the many small GEMMs of a convolution's backward run on one. NumPy releases
the GIL inside its loops, so threads that each take a slice of the batch through their
own shallow replica of the layers (sharing the parameter arrays, with their own caches
and gradients) keep every core busy, with BLAS single-threaded inside them. The slices'
parameter gradients are summed in a fixed order afterwards: a run stays deterministic,
and equals the serial step up to floating-point rounding. A batch is split only when
every layer declares itself ``replicable`` (see :attr:`labkit.layers.Layer.replicable`).

How many threads BLAS gets in a step, split or serial, is decided by :func:`step_blas`
alone: one per Python thread that computes.

Hooks still see the whole batch: the replicas' layers record each slice's values, and
once the slices are done the network's own hooks are called with them joined. So a
hook observes a split step (recording never changes what is trained), but it runs after
the slices, not between two layers: a hook that changed arrays would change nothing.

Processes serve a step only where threads would wait on each other's GIL and nothing
needs the replicas in this process: a step with hooks (a record step), a step while a
core is lent, the first step of a new batch shape (it learns the output's shape) and a
platform without ``fork`` run on threads. Both paths give the same sums to the bit.

Background work that computes while training goes on (the recorder's writer thread,
for its record process) borrows a core with :func:`lend_core`; split steps then run the
same slices on fewer threads, so the numbers stay the same and no step waits for a
descheduled thread.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import ThreadpoolController

from labkit import hooks, memory
from labkit import processes as processes_module
from labkit.options import SPLITS

if TYPE_CHECKING:
    from labkit.network import Network

MIN_SLICE = 16  # samples per thread below which splitting a batch loses time (measured)

_pools: dict[int, ThreadPoolExecutor] = {}
_blas: ThreadpoolController | None = None  # built on first use: it scans loaded libraries
_held = threading.local()  # per thread: how many single_threaded_blas contexts it is in
_lent = 0  # cores lent to background work (see lend_core); split steps leave them be
_lent_lock = threading.Lock()


def available_cores() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def thread_count(threads: int | None) -> int:
    """``threads``, or every core this process may use when None (the default everywhere)."""
    return available_cores() if threads is None else max(1, int(threads))


def single_threaded_blas(active: bool = True) -> contextlib.AbstractContextManager:
    """A context in which BLAS runs on the calling thread only (a no-op when not ``active``).

    Re-entrant: inside it, entering it again costs nothing (threadpoolctl's limit costs
    ~20 µs, 1% of a small step) and leaving the inner one gives nothing back. BLAS's
    thread count is process-wide, and threadpoolctl lets one Python thread at a time set
    it: a thread entering while another holds a limit leaves that limit as it is.
    """
    return _single_threaded_blas() if active else contextlib.nullcontext()


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    global _blas
    depth = getattr(_held, "depth", 0)
    _held.depth = depth + 1
    try:
        if depth:
            yield
            return
        if _blas is None:
            _blas = ThreadpoolController()
        with _blas.limit(limits=1, user_api="blas"):  # a with: threadpoolctl then frees
            yield  # its hold on OpenBLAS for other threads when this one leaves
    finally:
        _held.depth = depth


def step_blas() -> contextlib.AbstractContextManager:
    """The BLAS threads of every training and inference step, split or serial: one per
    Python thread that computes, so BLAS is single-threaded inside each (decided here only).

    Measured on 2 cores (``benchmarks/bench_user_layer.py``, README "Speed"): a second
    BLAS thread makes a serial step at most ~1.2x faster when nothing else runs, while
    OpenBLAS's worker spin-waits on the other core all along; once anything else wants a
    core (another process, the recorder's writer thread) each GEMM waits for a descheduled
    thread, and the step is 1.8-7x slower.
    """
    return single_threaded_blas()


@contextlib.contextmanager
def lend_core() -> Iterator[None]:
    """Lend one core to the calling (background) thread while the context lasts: split
    steps meanwhile run their slices on fewer threads, in the same order.

    The recorder's writer thread computes and compresses a record while training goes
    on; as a third busy thread on two cores it would deschedule one of a split step's
    threads, and the other would wait for it at the join. Running the same slices one
    after the other costs less (the slices' threads mostly wait on each other for the
    GIL) and gives the same numbers: each slice is computed alike on any thread.
    """
    global _lent
    with _lent_lock:
        _lent += 1
    try:
        yield
    finally:
        with _lent_lock:
            _lent -= 1


def lent_cores() -> int:
    """How many cores background work has borrowed with :func:`lend_core` right now."""
    return _lent


def resolve_split(split: str | None) -> str:
    """What a split step runs its slices on: ``split``, or by default processes where the
    platform can fork them (:func:`labkit.processes.available`), else threads."""
    if split is None:
        return "processes" if processes_module.available() else "threads"
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "processes" and not processes_module.available():
        return "threads"  # a platform without fork: the same numbers, on threads
    return split


def _pool(workers: int) -> ThreadPoolExecutor:
    """One long-lived pool per size: starting threads every step would cost more than it saves."""
    if workers not in _pools:
        _pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="labkit")
    return _pools[workers]


class DataParallel:
    """Forward (and backward) of a batch on ``threads`` threads; gradients land in ``network``.

    Splits only where it is safe and pays: every layer is ``replicable`` (labkit's own
    are; a user's layer says so itself, since it may keep state the threads would share)
    and each thread gets at least ``MIN_SLICE`` samples. Otherwise the network runs
    serially. Either way through ``network.step_forward``/``step_backward``
    (:mod:`labkit.fused`), with BLAS as :func:`step_blas` says.
    """

    def __init__(
        self, network: Network, threads: int | None = None, *, split: str | None = None
    ) -> None:
        self.network = network
        self.threads = thread_count(threads)
        memory.keep_freed_memory()  # a step's big arrays: reused heap, not fresh pages
        # slices 1.. of a step without hooks on worker processes (labkit.processes)
        self.processes = resolve_split(split) == "processes"
        self._workers: processes_module.ProcessSlices | None = None
        self._replicas: list[Network] = []
        self._replicated: tuple[tuple[int, int], ...] = ()

    def worker_pids(self) -> list[int]:
        """The worker processes' ids ([] when none run: a split on threads, or closed)."""
        return [] if self._workers is None else self._workers.pids()

    def close(self) -> None:
        """Stop the worker processes, if any (the next process step starts them again)."""
        if self._workers is not None:
            self._workers.close()
            self._workers = None

    def slices(self, batch: int) -> int:
        """How many slices a batch of ``batch`` samples is cut into (1: run serially)."""
        count = min(self.threads, batch // MIN_SLICE)
        if count < 2:
            return 1
        if not all(getattr(layer, "replicable", False) for layer in self.network):
            return 1
        return count

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``network.forward(x)``, the batch split over the threads."""
        count = self.slices(len(x))
        with step_blas():
            if count == 1:
                return self.network.step_forward(x, backward=False)
            parts, replicas = self._split(len(x), count)
            return self._forward_slices(x, replicas, parts, backward=False)

    def forward_backward(
        self, x: np.ndarray, output_gradient: Callable[[np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """Forward ``x``, backpropagate ``output_gradient(outputs)``; returns the outputs.

        Fills ``layer.grads`` of every layer, as ``Network.backward`` does; the gradient
        with respect to ``x`` is skipped (training has no use for it).
        """
        count = self.slices(len(x))
        if count == 1:
            with step_blas():
                output = self.network.step_forward(x)
                self.network.step_backward(output_gradient(output), input_gradient=False)
            return output
        parts, replicas = self._split(len(x), count)
        if self._on_processes(x, parts):
            try:
                with step_blas():
                    output, grads = processes_module.run_step(
                        self._workers, replicas[0], x, parts, output_gradient
                    )
            except BaseException:
                self.close()  # a failed or dead worker: the next step starts afresh
                raise
            self._sum_gradients(replicas[:1], grads)
            return output
        with step_blas():
            output = self._forward_slices(x, replicas, parts)
            grad = output_gradient(output)  # the loss sees the whole batch, as serially
            with self._watching(replicas, "backward") as backward_seen:
                self._map(
                    lambda r, part: r.step_backward(grad[part], input_gradient=False),
                    replicas,
                    parts,
                )
        self._sum_gradients(replicas, [])
        self._replay("backward", backward_seen)  # with every layer's gradients in place
        if self.processes and not any(map(hooks.has_hooks, self.network)):
            self._start_workers(x, output, parts)
        return output

    def _sum_gradients(self, replicas: Sequence[Network], more: Sequence[dict]) -> None:
        """Each parameter's gradient: the replicas' then ``more``'s (worker processes',
        keyed (layer index, name)) added in slice order, into the first replica's array."""
        for index, layer in enumerate(self.network):
            for name in layer.params:
                total, *others = (r.layers[index].grads[name] for r in replicas)
                others += [grads[index, name] for grads in more]
                for grad_part in others:
                    total += grad_part  # the replica's own fresh array
                layer.grads[name] = total

    def _on_processes(self, x: np.ndarray, parts: Sequence[slice]) -> bool:
        """Whether this step's slices go to the worker processes: they were started for
        this network and input, and no layer has hooks (those steps run on threads)."""
        if not self.processes or any(map(hooks.has_hooks, self.network)):
            return False
        if _lent and available_cores() - _lent < len(parts):
            return False  # a core is lent: the threaded path runs the slices in turn
        rows = max(part.stop - part.start for part in parts)
        workers = self._workers
        if workers is not None and not workers.matches(self.network, len(parts), x, rows):
            self.close()
        return self._workers is not None

    def _start_workers(self, x: np.ndarray, output: np.ndarray, parts) -> None:
        """After a threaded step that learned the output's shape: fork the workers."""
        if self._workers is None:
            rows = max(part.stop - part.start for part in parts)
            self._workers = processes_module.ProcessSlices(
                self.network, len(parts), x, output, rows
            )

    def _forward_slices(self, x: np.ndarray, replicas, parts, backward: bool = True):
        """Each slice through its replica, then the forward hooks on the joined batch
        (``backward``: the replicas keep what their backward pass needs)."""
        with self._watching(replicas, "forward") as seen:
            outputs = self._map(
                lambda r, part: r.step_forward(x[part], backward=backward), replicas, parts
            )
        output = np.concatenate(outputs)
        self._replay("forward", seen)
        return output

    @contextlib.contextmanager
    def _watching(self, replicas: Sequence[Network], kind: str):
        """Record, per replica, the hook arguments of each layer whose original has ``kind``
        hooks; yields ``seen[replica][layer index] = (first, second)``."""
        seen: list[dict[int, tuple]] = [{} for _ in replicas]
        handles = []
        for index, layer in enumerate(self.network):
            if not hooks.has_hooks(layer, kind):
                continue
            for replica, store in zip(replicas, seen, strict=True):

                def keep(_, first, second, store=store, index=index) -> None:
                    store[index] = (first, second)

                handles.append(hooks.register(replica.layers[index], kind, keep))
        try:
            yield seen
        finally:
            for handle in handles:
                handle.remove()

    def _replay(self, kind: str, seen: list[dict[int, tuple]]) -> None:
        """Call the network's ``kind`` hooks with the slices' values joined into the batch,
        in the order a serial pass would (backward: last layer first)."""
        order = sorted(seen[0], reverse=kind == "backward")
        joined: dict[tuple[int, ...], np.ndarray | None] = {}  # one layer's output is the
        for index in order:  # next one's input: join each set of slices once
            firsts, seconds = zip(*(store[index] for store in seen), strict=True)
            first, second = (_join(parts, joined) for parts in (firsts, seconds))
            hooks.fire(self.network.layers[index], kind, first, second)

    def _split(self, batch: int, count: int) -> tuple[list[slice], list[Network]]:
        bounds = np.linspace(0, batch, count + 1).astype(int).tolist()
        parts = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return parts, self._replicas_of(count)

    def _replicas_of(self, count: int) -> list[Network]:
        """``count`` replicas, rebuilt whenever the network's layers (or their params) change."""
        layers = tuple((id(layer), id(layer.params)) for layer in self.network)
        if layers != self._replicated or len(self._replicas) < count:
            self._replicas = [replicate(self.network) for _ in range(count)]
            self._replicated = layers
        return self._replicas[:count]

    def _map(self, fn: Callable, replicas: Sequence[Network], parts: Sequence[slice]) -> list:
        """``fn(replica, part)`` for every slice, in order: the first group of slices on
        this thread, the others pooled; fewer threads than slices while cores are lent
        (:func:`lend_core`). Which thread computes a slice never changes its numbers."""
        jobs = list(zip(replicas, parts, strict=True))
        threads = len(jobs)
        if _lent:  # leave the lent cores free (a thread per slice otherwise, as asked)
            threads = max(1, min(threads, available_cores() - _lent))

        def run(group: Sequence[tuple[Network, slice]]) -> list:
            return [fn(replica, part) for replica, part in group]

        if threads == 1:
            return run(jobs)
        groups = [jobs[start::threads] for start in range(threads)]
        futures = [_pool(self.threads - 1).submit(run, group) for group in groups[1:]]
        try:
            done = [run(groups[0])]
        finally:  # every replica idle before anything is raised: the next step reuses them
            concurrent.futures.wait(futures)
        done += [future.result() for future in futures]
        results: list = [None] * len(jobs)
        for start, group_results in enumerate(done):
            results[start::threads] = group_results
        return results


def replicate(network: Network) -> Network:
    """Layers sharing ``network``'s parameter dicts (so their arrays) with their own grads,
    and without its hooks (a hook wrapper would call the original layer)."""
    replicas = []
    for layer in network:
        replica = copy.copy(layer)  # Layer.__copy__ leaves the hooks behind
        replica.grads = {}
        replicas.append(replica)
    return type(network)(replicas)


def _join(parts: Sequence[np.ndarray | None], joined: dict) -> np.ndarray | None:
    """The slices of one array back into the batch (None stays None: a skipped gradient)."""
    key = tuple(id(part) for part in parts)
    if key not in joined:
        joined[key] = None if parts[0] is None else np.concatenate(parts)
    return joined[key]
