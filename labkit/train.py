"""Trainer: epochs of shuffled minibatches, callbacks, a progress bar, a clean Ctrl-C."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm import tqdm

from labkit.data import MNIST, one_hot
from labkit.losses import Loss, resolve_loss
from labkit.network import Network
from labkit.optim import Optimizer
from labkit.parallel import DataParallel, step_blas


@dataclass
class EpochResult:
    """What one epoch did: mean training loss/accuracy, test accuracy, time and speed."""

    epoch: int
    steps: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float | None
    seconds: float
    images_per_second: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """The history of a fit, and whether it was cut short by Ctrl-C or by an error."""

    epochs: list[EpochResult] = field(default_factory=list)
    interrupted: bool = False
    failed: bool = False
    steps: int = 0


class Callback:
    """Hooks into the training loop; override what you need (all default to no-ops)."""

    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_step_begin(self, trainer: Trainer, step: int) -> None: ...

    def on_step_end(self, trainer: Trainer, step: int, logs: dict) -> None: ...

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None: ...

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None: ...


def accuracy(
    network: Network,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 500,
    *,
    threads: int | None = None,
) -> float:
    """Fraction of ``x`` whose highest output is the label ``y`` (batches split as predict's)."""
    outputs = network.predict(x, batch_size=batch_size, threads=threads)
    return float(np.mean(outputs.reshape(len(x), -1).argmax(axis=1) == y))


class StopSignals:
    """Ctrl-C (SIGINT) and SIGTERM (``kill``, ``timeout``, a scheduler, Docker) become a
    request to stop at the next step boundary, so no update is half-done and whatever
    trained is saved; ``received`` is the first signal's number.

    A second signal while training interrupts at once (``KeyboardInterrupt``), as usual;
    once :meth:`defer` is called (the run is being saved), signals only mark the stop.
    Entering it again while it is active changes nothing, so :func:`labkit.fit.fit` can
    hold it across training and saving while the trainer holds it across its steps.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self.deferred = False
        self._previous: dict = {}
        self._depth = 0

    @property
    def requested(self) -> bool:
        return self.received is not None

    def request(self) -> None:
        """Ask for a stop as a first Ctrl-C does (what a ``KeyboardInterrupt`` meant)."""
        self.received = self.received or signal.SIGINT

    def defer(self) -> None:
        """From now on a signal only marks the stop: the run is being saved."""
        self.deferred = True

    def _handle(self, signum, frame) -> None:
        if self.requested and not self.deferred:
            raise KeyboardInterrupt
        self.received = self.received or signum

    def __enter__(self) -> StopSignals:
        self._depth += 1
        if self._depth == 1 and threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            for number, previous in self._previous.items():
                signal.signal(number, previous)
            self._previous = {}


class Trainer:
    """Minibatch training of a Network on MNIST-shaped data, deterministic for a seed."""

    def __init__(
        self,
        network: Network,
        optimizer: Optimizer,
        *,
        loss: str | Loss = "softmax_cross_entropy",
        batch_size: int = 32,
        seed: int = 0,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
        threads: int | None = None,
        split: str | None = None,
        stop: StopSignals | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.network = network
        self.optimizer = optimizer
        self.loss = resolve_loss(loss)
        self.batch_size = int(batch_size)
        self.rng = np.random.default_rng(seed)
        self.callbacks = list(callbacks)
        self.progress = progress
        self.step = 0
        self.epoch = 0
        self.total_steps = 0  # known once fit() starts: callbacks size their storage by it
        self.stop = stop or StopSignals()  # SIGINT and SIGTERM stop at a step boundary
        # Each step's batch is split in this many slices where that is safe and pays, run
        # on worker processes or threads (``split``: labkit.parallel.resolve_split).
        self.parallel = DataParallel(network, threads, split=split)

    def train_step(self, x: np.ndarray, targets: np.ndarray) -> tuple[float, int]:
        """One forward/backward/update on a batch; returns (loss, number correct)."""
        with step_blas():  # the whole step, the loss and the update too (free inside fit)
            output = self.parallel.forward_backward(
                x, lambda output: self.loss.prime(targets, output)
            )
            loss = self.loss.value(targets, output)
            self.optimizer.step()
        self.step += 1
        correct = int(np.sum(output.reshape(len(x), -1).argmax(axis=1) == targets.argmax(axis=1)))
        return loss, correct

    def fit(self, data: MNIST, epochs: int) -> TrainResult:
        """Train for ``epochs`` passes over ``data.x_train``; test accuracy after each one."""
        if epochs < 1:
            raise ValueError(f"epochs must be positive, got {epochs}")
        result = TrainResult()
        self.total_steps = self.step + epochs * math.ceil(len(data.x_train) / self.batch_size)
        # on_train_end runs however training ends, for every callback that began (such as
        # the Recorder, which closes its run there, even when a later one fails to begin),
        # with result.failed set when an exception is on its way out.
        started: list[Callback] = []
        # BLAS runs as step_blas decides for the whole fit, split or serial, callbacks
        # included: OpenBLAS threads busy-wait for a while after each call, and one left
        # spinning by a call between steps (a short last batch, the recorder's probe pass)
        # would take a core from the steps and from the recorder's writer thread.
        try:
            for callback in self.callbacks:
                callback.on_train_begin(self)
                started.append(callback)
            with self.stop as stop, step_blas():
                try:
                    for _ in range(epochs):
                        if stop.requested:
                            break
                        self.epoch += 1
                        epoch_result = self._run_epoch(data, epochs, stop)
                        if epoch_result is None:
                            break
                        result.epochs.append(epoch_result)
                        for callback in self.callbacks:
                            callback.on_epoch_end(self, epoch_result)
                except KeyboardInterrupt:
                    stop.request()
            result.interrupted = stop.requested
        except BaseException:
            result.failed = True
            raise
        finally:
            result.steps = self.step
            self.parallel.close()  # no worker process outlives the fit
            for callback in started:
                callback.on_train_end(self, result)
        return result

    def _run_epoch(self, data: MNIST, epochs: int, stop: StopSignals) -> EpochResult | None:
        n = len(data.x_train)
        order = self.rng.permutation(n)
        total_loss, total_correct, seen, steps = 0.0, 0, 0, 0
        start = time.perf_counter()
        bar = tqdm(
            total=n,
            desc=f"epoch {self.epoch}/{epochs}",
            unit="img",
            file=sys.stderr,
            disable=None if self.progress else True,  # None: off when not a terminal
            dynamic_ncols=True,
            mininterval=0.25,
            leave=False,
        )
        with bar:
            for begin in range(0, n, self.batch_size):
                index = order[begin : begin + self.batch_size]
                x, targets = data.x_train[index], one_hot(data.y_train[index])
                for callback in self.callbacks:
                    callback.on_step_begin(self, self.step + 1)
                loss, correct = self.train_step(x, targets)
                total_loss += loss * len(index)
                total_correct += correct
                seen += len(index)
                steps += 1
                logs = {"loss": loss, "accuracy": correct / len(index), "epoch": self.epoch}
                for callback in self.callbacks:
                    callback.on_step_end(self, self.step, logs)
                bar.update(len(index))
                if steps % 10 == 0:
                    mean_loss, mean_accuracy = total_loss / seen, total_correct / seen
                    bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{mean_accuracy:.3f}")
                if stop.requested:
                    return None
        seconds = time.perf_counter() - start
        test_accuracy = None
        if len(data.x_test):
            test_accuracy = accuracy(
                self.network, data.x_test, data.y_test, threads=self.parallel.threads
            )
        return EpochResult(
            epoch=self.epoch,
            steps=steps,
            train_loss=total_loss / seen,
            train_accuracy=total_correct / seen,
            test_accuracy=test_accuracy,
            seconds=seconds,
            images_per_second=seen / seconds,
        )
