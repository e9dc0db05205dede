"""Record activations, gradients, weights and feature maps while training, into a run.

The :class:`Recorder` is a training callback. On a record step it attaches forward and
backward hooks to every layer for that one step (so other steps pay nothing), copies
what the hooks saw and the weights, and hands them to a writer thread of its own, which
gives them to the record process (:mod:`labkit.record_process`; without fork, computes
itself). There the record is computed (the statistics, the probes' passes through the
recorder's own copy of the network) and its rows written to the run store
(:mod:`labkit.runs`) in the layout that :mod:`labkit.recording` defines, while training
goes on; the writer thread then commits it. Meanwhile it borrows a core
(:func:`labkit.parallel.lend_core`): split steps run their slices on the cores left, the
same numbers, and none waits for a process the record's work displaced.
What a record holds:

- per layer, statistics of its output (activation) and of the gradient arriving at its
  output: ``STATS_FIELDS``, over the whole batch, and a histogram over fixed sign-log
  bins (``HIST_EDGES``) of at most ``HIST_SAMPLES`` evenly strided elements, in the
  arrays ``stats`` (layers x 2 x 7) and ``hist`` (layers x 2 x bins);
- every parameter (float32) and its update-to-weight ratio ``|p_after - p_before| / |p|``;
- every layer's output for a fixed probe set of 16 test digits (float16), and the
  network's probabilities for them;
- the probes' backward pass: the gradient of each probe's own loss arriving at every
  layer's output and at the input (saliency), scaled float16 (:func:`probe_backward`);
- scalar metrics (loss, batch accuracy, learning rate) for every step, and test accuracy
  at epoch ends, in ``metrics.jsonl``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labkit.layers import softmax
from labkit.network import Network, layer_key
from labkit.options import RECORD_EVERY
from labkit.parallel import lend_core
from labkit.record_process import RecordProcess
from labkit.record_process import available as record_process_available
from labkit.record_values import histogram, probe_backward, saturation_band, tensor_stats
from labkit.recording import (
    BACKWARD_SCALE,
    HIST,
    HIST_EDGES,
    KINDS,
    PROBE_IMAGES,
    PROBE_LABELS,
    PROBES,
    PROBS,
    SALIENCY,
    STATS,
    STATS_FIELDS,
    UPDATE_RATIO,
    encode_gradients,
    feature_array,
    gradient_array,
    param_array,
    run_layout,
)
from labkit.runs import RunWriter
from labkit.train import Callback, EpochResult, Trainer, TrainResult

# Snapshots waiting for the writer, at most (beyond one): lenet's at batch 32 are 5.2 MB,
# so ~18 of the first 28 records (in 100 steps) wait in memory, not the training steps.
PENDING_BYTES = 96 * 2**20


@dataclass(frozen=True)
class RecordSchedule:
    """Which steps are recorded: every step up to 10, every 5th up to ``dense_until``,
    then every ``every``-th, and always the last one."""

    every: int = RECORD_EVERY
    dense_until: int = 100

    def records(self, step: int, total_steps: int) -> bool:
        return self.regular(step) or step == total_steps

    def regular(self, step: int) -> bool:
        """Whether ``step`` is recorded by the rules alone (not for being the last step)."""
        return step <= 10 or (step <= self.dense_until and step % 5 == 0) or step % self.every == 0

    def count(self, total_steps: int) -> int:
        """How many of steps 1..total_steps are recorded, counted without walking them (a
        billion-step plan costs what a short one does): the first 10, the multiples of 5
        after them up to ``dense_until``, the multiples of ``every`` not already counted,
        and the last step if none of those is it."""
        if total_steps < 1:
            return 0
        dense = min(self.dense_until, total_steps)
        first = min(10, total_steps)
        fives = max(0, dense // 5 - 2)  # 15, 20, ..., up to dense (10 is among the first)
        common = math.lcm(5, self.every)
        # multiples of every: minus those <= 10 and those in (10, dense] that are fives
        everys = total_steps // self.every - min(10, total_steps) // self.every
        everys -= max(0, dense // common - 10 // common)
        return first + fives + everys + (0 if self.regular(total_steps) else 1)


def choose_probes(labels: np.ndarray, count: int = PROBES, seed: int = 0) -> np.ndarray:
    """Indices of ``count`` digits with every class present, fixed for a seed."""
    order = np.random.default_rng(seed).permutation(len(labels))
    first = [order[np.flatnonzero(labels[order] == c)[0]] for c in np.unique(labels)]
    rest = [i for i in order if i not in set(first)]
    return np.sort(np.array(first + rest[: count - len(first)], dtype=np.int64))


class Recorder(Callback):
    """Write a run while a :class:`~labkit.train.Trainer` trains (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        probe_images: np.ndarray,
        probe_labels: np.ndarray,
        *,
        schedule: RecordSchedule = RecordSchedule(),
        manifest: dict | None = None,
        overwrite: bool = False,
        finish: bool = True,
    ) -> None:
        self.path = Path(path)
        # False: a run that trained to its end is left open for the caller to close once
        # it has saved what it must (labkit.fit saves the weights first); a failed one
        # is always closed as failed here.
        self.finish = finish
        self.probe_images = np.asarray(probe_images, dtype=np.float32)
        self.probe_labels = np.asarray(probe_labels, dtype=np.int64)
        self.schedule = schedule
        self.extra_manifest = dict(manifest or {})
        self.overwrite = overwrite
        self.writer: RunWriter | None = None
        self._jobs: queue.Queue | None = None
        self._worker: threading.Thread | None = None
        self._process: RecordProcess | None = None
        self._pending = 0  # bytes of snapshots handed to the writer thread, not yet written
        self._room = threading.Condition()
        self._failure: BaseException | None = None
        self._pending_metrics: list[dict] = []
        self._captured: dict[str, np.ndarray] = {}
        self._handles: list = []
        self._before: dict[str, np.ndarray] = {}

    # -- callback -----------------------------------------------------------------------

    def on_train_begin(self, trainer: Trainer) -> None:
        network = trainer.network
        self.loss = trainer.loss
        arrays, described = run_layout(network, self.probe_images.shape)
        self.keys = [layer_key(i, layer) for i, layer in enumerate(network.layers)]
        architecture = network.architecture(partial=True)  # None configs: --model rebuilds
        manifest = {
            **self.extra_manifest,
            "architecture": architecture,
            **described,
            "schedule": {"every": self.schedule.every, "dense_until": self.schedule.dense_until},
            "total_steps": trainer.total_steps,
            "probe_loss": trainer.loss.name,
            "started": time.time(),
        }
        # The probes' passes run on the writer thread, through a copy of the network that
        # is given each record's weights: the training network is never touched, and the
        # training thread is not held up by them.
        self._replica = type(network)([copy.deepcopy(layer) for layer in network.layers])
        self.writer = RunWriter.create(
            self.path,
            capacity=self.schedule.count(trainer.total_steps),
            record_arrays=arrays,
            static_arrays={PROBE_IMAGES: self.probe_images, PROBE_LABELS: self.probe_labels},
            manifest=manifest,
            overwrite=self.overwrite,
        )
        # Writing a record runs on a thread of its own, so the next training steps overlap
        # with it; one thread keeps the records in order. Where it can, that thread hands
        # the record's computing and its files to a forked process (labkit.record_process),
        # which needs no share of this process's GIL, and commits what it wrote.
        if record_process_available():
            try:
                self._process = RecordProcess(self._record, self.writer.write_rows)
            except OSError:  # no process to be had (a process or memory limit): the thread
                self._process = None  # computes the records, the same numbers
        self._jobs = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="labkit-recorder", daemon=True)
        self._worker.start()

    @property
    def writing(self) -> bool:
        """Whether the writer thread holds snapshots it has not written yet."""
        return self._pending > 0

    @property
    def process_pid(self) -> int | None:
        """The record process's id while training (None: no process, or none yet)."""
        return None if self._process is None else self._process.process.pid

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, size = item
            try:
                if self._failure is None:
                    with lend_core():
                        job()
            except BaseException as exc:  # reported to the training thread
                self._failure = exc
            finally:
                with self._room:
                    self._pending -= size
                    self._room.notify_all()

    def _submit(self, job, size: int = 0) -> None:
        """Hand ``job`` to the writer thread; first wait while the snapshots it holds
        (``size`` bytes this one) would pass PENDING_BYTES. The dense first records come
        faster than they are written: they wait in memory, not the training steps."""
        with self._room:
            self._room.wait_for(
                lambda: (
                    self._pending == 0
                    or self._pending + size <= PENDING_BYTES
                    or self._failure is not None
                )
            )
            self._pending += size
        if self._failure is not None:
            with self._room:
                self._pending -= size
            failure, self._failure = self._failure, None
            raise failure
        self._jobs.put((job, size))

    def on_step_begin(self, trainer: Trainer, step: int) -> None:
        if not self.schedule.records(step, trainer.total_steps):
            return
        self._captured = {}
        for key, layer in zip(self.keys, trainer.network.layers, strict=True):
            self._handles.append(layer.register_forward_hook(self._capture(key, "activation")))
            self._handles.append(layer.register_backward_hook(self._capture(key, "gradient")))
        self._before = {
            name: param.copy() for name, param in self._parameters(trainer.network).items()
        }

    def _capture(self, key: str, kind: str):
        def hook(layer, _, values) -> None:  # values: the output, or the gradient at it
            # a copy: the statistics are taken later, after the layer has moved on. They
            # read the values in memory order (a channels-last map is not copied to C
            # order for them), so the copy is the flat memory order itself: one layout
            # whether it stays in this process or is pickled to the record process.
            band = saturation_band(layer) if kind == "activation" else None
            flat = np.ravel(values, order="K")
            if np.may_share_memory(flat, values):
                flat = flat.copy()
            self._captured[f"{key}/{kind}"] = (flat, band)

        return hook

    def _parameters(self, network: Network) -> dict[tuple[str, str], np.ndarray]:
        return {
            (key, name): value
            for key, layer in zip(self.keys, network.layers, strict=True)
            for name, value in layer.params.items()
        }

    def on_step_end(self, trainer: Trainer, step: int, logs: dict) -> None:
        self._pending_metrics.append(
            {
                "step": step,
                "epoch": logs["epoch"],
                "loss": float(logs["loss"]),
                "accuracy": float(logs["accuracy"]),
                "lr": trainer.optimizer.lr,
            }
        )
        if not self._handles:
            return
        for handle in self._handles:
            handle.remove()
        self._handles = []
        snapshot, epoch, writer = self._snapshot(trainer.network), logs["epoch"], self.writer
        size = sum(value.nbytes for value, _ in snapshot["captured"].values()) + sum(
            value.nbytes for group in ("before", "after") for value in snapshot[group].values()
        )
        self._submit(lambda: self._write(writer, step, epoch, snapshot), size)
        self._flush_metrics()

    def _write(self, writer: RunWriter, step: int, epoch: int, snapshot: dict) -> None:
        """On the writer thread: the record of a step's :meth:`_snapshot`, computed and
        written by the record process where there is one, then committed."""
        if self._process is None:
            writer.write_record(step, epoch, self._record(snapshot))
            return
        index = writer.next_record(step)
        self._process.write(index, snapshot)
        writer.commit_record(index, step, epoch)

    def _snapshot(self, network: Network) -> dict:
        """What a record needs from this step, copied (the training thread's only share of
        a record's work): the hooks' captures and the parameters before and after."""
        return {
            "captured": self._captured,
            "before": self._before,
            "after": {name: param.copy() for name, param in self._parameters(network).items()},
        }

    def _record(self, snapshot: dict) -> dict[str, np.ndarray]:
        """A record's arrays from a step's :meth:`_snapshot`, on the writer thread: the
        statistics, the parameters and their update ratios, and the probes' forward and
        backward pass through the recorder's own copy of the network at those weights."""
        arrays: dict[str, np.ndarray] = {}
        captured = {
            name: (tensor_stats(values, band), histogram(values))
            for name, (values, band) in snapshot["captured"].items()
        }
        empty = (
            np.full(len(STATS_FIELDS), np.nan, dtype=np.float32),
            np.zeros(len(HIST_EDGES) - 1, dtype=np.int32),
        )
        for field, name in enumerate((STATS, HIST)):  # the fields of each captured pair
            arrays[name] = np.array(
                [[captured.get(f"{key}/{k}", empty)[field] for k in KINDS] for key in self.keys]
            )
        ratios = []
        for (key, name), param in snapshot["after"].items():
            before = snapshot["before"][key, name]
            arrays[param_array(key, name)] = param
            norm = np.linalg.norm(before)  # a zero start (biases) has no meaningful ratio
            ratios.append(np.linalg.norm(param - before) / norm if norm > 0 else np.nan)
        arrays[UPDATE_RATIO] = np.array(ratios, dtype=np.float32)
        for (key, name), value in self._parameters(self._replica).items():
            np.copyto(value, snapshot["after"][key, name])  # in place: layers alias them
        h = self.probe_images
        for key, layer in zip(self.keys, self._replica.layers, strict=True):
            h = layer.forward(h)
            arrays[feature_array(key)] = h
        arrays[PROBS] = softmax(h.reshape(len(h), -1))
        gradients = probe_backward(self._replica, h, self.probe_labels, self.loss)
        scales = []
        for name, gradient in zip(
            [SALIENCY, *map(gradient_array, self.keys)], gradients, strict=True
        ):
            arrays[name], scale = encode_gradients(gradient)
            scales.append(scale)
        arrays[BACKWARD_SCALE] = np.stack(scales, axis=1)
        return arrays

    def _flush_metrics(self) -> None:
        if self._pending_metrics and self.writer is not None:
            rows, writer, self._pending_metrics = self._pending_metrics, self.writer, []
            self._submit(lambda: writer.append_metrics(rows))

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        self._flush_metrics()
        row, writer = {"kind": "epoch", "step": trainer.step, **result.as_dict()}, self.writer
        self._submit(lambda: writer.append_metrics([row]))

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        if result.failed:
            # an error is on its way out (a full disk, say): it, not a second failure to
            # write the final status, is what the user must see; the lock goes either way
            with contextlib.suppress(Exception):
                self.close("failed")
        elif self.finish:
            self.close("interrupted" if result.interrupted else "completed")

    def flush(self) -> None:
        """Wait until the writer thread has written every record handed to it so far."""
        if self.writer is not None:
            written = threading.Event()
            self._submit(written.set)  # the writer runs its jobs in order
            written.wait()

    def close(self, status: str) -> None:
        """Detach hooks, flush metrics and close the run with ``status`` (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self.writer is None:
            return
        try:
            self._flush_metrics()
        finally:
            self._jobs.put(None)
            self._worker.join()
            if self._process is not None:
                self._process.close()
                self._process = None
            # a record that failed to be written fails the run, however training ended
            self.writer.close("failed" if self._failure is not None else status)
            self.writer = None
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
