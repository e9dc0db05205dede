"""A recorder's heavy work in a forked process of its own: each record's statistics, the
probes' passes, the compression and the chunk files, away from the training thread.

On a thread of the trainer's process that work took the GIL from the training thread
between every two NumPy calls: a record that costs ~30 ms of CPU held the steps around
it back for ~80 ms (lenet, batch 32; ``benchmarks/bench_recording.py``). A process has a
GIL of its own. The trainer's writer thread hands it a record step's snapshot (the hooks'
captures and the weights, through a pipe as raw buffers), waits while it computes the record's
arrays and writes their rows (:meth:`labkit.runs.RunWriter.write_rows` on the forked
copy of the writer), then commits the record itself: the commit log, the lock and the
manifest stay with the one writer in the trainer's process, and records stay in order.

The process is forked when training begins, so it holds the recorder's copy of the
network (a notebook's own layers need no pickling) and nothing of later steps but the
snapshots. It follows :func:`labkit.processes.follow_parent` (Ctrl-C is the trainer's;
it dies with it), stops when told or when its parent is gone, and raises nothing of its
own: an error in it (a full disk) is sent back and raised in the trainer. Linux only
(:func:`labkit.processes.available`); elsewhere the recorder's thread does the work.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from labkit import processes

POLL_SECONDS = processes.POLL_SECONDS  # how often a waiting side checks the other lives


def available() -> bool:
    """Whether records can be computed in a forked process here (Linux with fork)."""
    return processes.available()


class RecordProcess:
    """A forked process that turns a snapshot into a record's written rows:
    ``write_rows(index, build(snapshot))``, both run there (see the module docstring)."""

    def __init__(
        self,
        build: Callable[[dict], dict],
        write_rows: Callable[[int, dict], None],
    ) -> None:
        context = multiprocessing.get_context("fork")
        self._conn, theirs = context.Pipe(duplex=True)
        watched = threading.current_thread() is threading.main_thread()
        self.process = context.Process(
            target=_serve,
            args=(build, write_rows, theirs, os.getpid(), watched),
            name="labkit-record",
            daemon=True,
        )
        self.process.start()
        theirs.close()

    def write(self, index: int, snapshot: dict) -> None:
        """Compute and write record ``index`` from ``snapshot``; its error, raised here."""
        try:
            _send(self._conn, (index, snapshot))
            while not self._conn.poll(POLL_SECONDS):
                if not self.process.is_alive():
                    raise self._died()
            error = self._conn.recv()
        except (OSError, EOFError):  # its end of the pipe closed: it is gone
            raise self._died() from None
        if error is not None:
            error.add_note(f"(raised in labkit record process {self.process.pid})")
            raise error

    def _died(self) -> RuntimeError:
        self.process.join(timeout=1)  # its exit code
        return RuntimeError(
            f"labkit record process {self.process.pid} died (exit code {self.process.exitcode})"
        )

    def close(self) -> None:
        """Stop the process (idempotent); kill it if it does not stop within 5 s."""
        if self.process.pid is None or self._conn.closed:
            return
        try:
            _send(self._conn, None)
        except OSError:
            pass  # already gone
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._conn.close()


def _serve(build, write_rows, conn, parent: int, watched: bool) -> None:
    """The process's loop: a snapshot in, its record written, None (or the error) out."""
    processes.follow_parent(watched)
    while True:
        try:
            while not conn.poll(POLL_SECONDS):
                if os.getppid() != parent:
                    return
            job = _receive(conn)
        except (EOFError, OSError):  # the trainer's end is gone
            return
        if job is None:
            return
        index, snapshot = job
        try:
            write_rows(index, build(snapshot))
            answer = None
        except BaseException as exc:  # the trainer raises it
            answer = exc
        try:
            conn.send(answer)
        except Exception:  # an error that does not pickle: its type and message
            conn.send(RuntimeError(f"{type(answer).__name__}: {answer}"))


@dataclass(frozen=True)
class _Slot:
    """An array of a message, sent as a buffer after it (in the order of the slots)."""

    dtype: str
    shape: tuple[int, ...]


def _send(conn, message) -> None:
    """``message`` through ``conn``, its arrays as raw buffers after the rest (pickled):
    pickled, a record step's snapshot (5.2 MB for lenet at batch 32) took 3.6-4.1 ms to
    send, 2.1 ms of it pickling under the GIL; as buffers 1.9-2.3 ms, mostly in syscalls
    that release it."""
    arrays: list[np.ndarray] = []
    conn.send(_hollow(message, arrays))
    for array in arrays:
        conn.send_bytes(array)


def _receive(conn):
    """A message sent by :func:`_send` (its arrays read-only, over the received bytes)."""
    hollow = conn.recv()
    return _filled(hollow, lambda slot: np.frombuffer(conn.recv_bytes(), slot.dtype))


def _hollow(value, arrays: list[np.ndarray]):
    """``value`` with each array replaced by a :class:`_Slot` (the array put in ``arrays``)."""
    if isinstance(value, np.ndarray):
        arrays.append(np.ascontiguousarray(value).reshape(-1))
        return _Slot(value.dtype.str, value.shape)
    if isinstance(value, dict):
        return {key: _hollow(item, arrays) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_hollow(item, arrays) for item in value)
    return value


def _filled(value, read: Callable[[_Slot], np.ndarray]):
    """The inverse of :func:`_hollow`: each slot read, in the order they were sent."""
    if isinstance(value, _Slot):
        return read(value).reshape(value.shape)
    if isinstance(value, dict):
        return {key: _filled(item, read) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_filled(item, read) for item in value)
    return value
