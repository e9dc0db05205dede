"""The record process: records computed and written in a forked process equal the writer
thread's to the bit; its error or death fails the fit in one line with every committed
record kept; and it never outlives the fit."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from process_checks import gone

from labkit import record_process
from labkit.data import MNIST, load_mnist
from labkit.models import lenet
from labkit.optim import Adam
from labkit.recorder import Recorder, RecordSchedule
from labkit.runs import open_run
from labkit.train import Callback, Trainer

pytestmark = pytest.mark.skipif(not record_process.available(), reason="needs fork (Linux)")


def record(path, callbacks=(), train: int = 192) -> Recorder:
    """A recorded lenet fit on sample digits, every step recorded; returns the recorder."""
    sample = load_mnist("sample")
    data = MNIST(
        sample.x_train[:train], sample.y_train[:train], sample.x_test[:20], sample.y_test[:20], ""
    )
    recorder = Recorder(path, sample.x_test[:16], sample.y_test[:16], schedule=RecordSchedule(1))
    network = lenet(seed=0)
    trainer = Trainer(
        network, Adam(network), batch_size=32, progress=False, callbacks=[recorder, *callbacks]
    )
    trainer.fit(data, epochs=1)
    return recorder


class NotePid(Callback):
    """Notes the record process's id at the first step; kills it at ``kill_at``."""

    def __init__(self, recorder_of, kill_at: int | None = None) -> None:
        self.recorder_of, self.kill_at, self.pid = recorder_of, kill_at, None

    def on_step_end(self, trainer, step, logs):
        recorder = self.recorder_of(trainer)
        self.pid = self.pid or recorder.process_pid
        if step == self.kill_at:
            recorder.flush()
            os.kill(self.pid, signal.SIGKILL)


def the_recorder(trainer) -> Recorder:
    return next(c for c in trainer.callbacks if isinstance(c, Recorder))


def test_the_record_process_writes_the_writer_threads_records_to_the_bit(tmp_path, monkeypatch):
    noted = NotePid(the_recorder)
    record(tmp_path / "process", [noted])
    assert noted.pid is not None and noted.pid != os.getpid() and gone(noted.pid)
    monkeypatch.setattr("labkit.recorder.record_process_available", lambda: False)
    on_thread = NotePid(the_recorder)
    record(tmp_path / "thread", [on_thread])
    assert on_thread.pid is None
    a, b = open_run(tmp_path / "process"), open_run(tmp_path / "thread")
    assert list(a.steps) == list(b.steps) == [1, 2, 3, 4, 5, 6]
    assert a.arrays() == b.arrays() and len(a.arrays()) > 20
    for name in a.arrays():
        for index in range(len(a.steps)):
            np.testing.assert_array_equal(a.array(name, index), b.array(name, index), name)


def test_an_error_in_the_record_process_fails_the_fit_in_one_line_keeping_the_records(
    tmp_path, monkeypatch
):
    compute, calls = Recorder._record, []

    def third_fails(self, snapshot):
        calls.append(1)  # in the record process: its own list, counting its records
        if len(calls) == 3:
            raise ValueError("the third record went wrong")
        return compute(self, snapshot)

    monkeypatch.setattr(Recorder, "_record", third_fails)
    noted = NotePid(the_recorder)
    with pytest.raises(ValueError, match="the third record went wrong") as raised:
        record(tmp_path / "run", [noted])
    assert any("record process" in note for note in raised.value.__notes__)
    assert calls == []  # nothing of it ran here
    run = open_run(tmp_path / "run")
    assert run.status == "failed" and list(run.steps) == [1, 2]
    assert all(run.array(name, 1).size for name in run.arrays())
    assert gone(noted.pid)


def test_a_record_process_that_dies_fails_the_fit_in_one_line_keeping_the_records(tmp_path):
    noted = NotePid(the_recorder, kill_at=2)
    with pytest.raises(RuntimeError, match=r"record process \d+ died \(exit code -9\)"):
        record(tmp_path / "run", [noted])
    run = open_run(tmp_path / "run")
    assert run.status == "failed" and list(run.steps) == [1, 2]
    assert all(run.array(name, 1).size for name in run.arrays())


def test_a_fork_that_fails_leaves_the_records_to_the_writer_thread(tmp_path, monkeypatch):
    def no_fork(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr("labkit.recorder.RecordProcess", no_fork)
    noted = NotePid(the_recorder)
    record(tmp_path / "run", [noted])
    run = open_run(tmp_path / "run")
    assert noted.pid is None and run.status == "completed" and list(run.steps) == [1, 2, 3, 4, 5, 6]
