"""Every way a training stops keeps what it trained: Ctrl-C and SIGTERM (real signals) at
any moment, a full disk or unwritable file at the start, in the middle and while saving
(injected OSErrors), --no-record into a folder it must not mix into, and a plan of a
billion steps that costs what a short one does."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from labkit.cli import main
from labkit.fit import HISTORY, WEIGHTS, fit
from labkit.models import lenet
from labkit.network import Network
from labkit.recorder import RecordSchedule
from labkit.runs import RunWriter, open_run
from labkit.runs.chunks import ShardAppender
from labkit.runs.files import acquire_lock
from labkit.train import Callback

TRAIN = ["train", "--epochs", "1", "--record-every", "20", "--no-progress"]


class SignalAt(Callback):
    """Sends this process ``signum`` at a moment of the training (a real signal)."""

    def __init__(self, signum: int, *, step: int | None = None, at_end: bool = False) -> None:
        self.signum, self.step, self.at_end = signum, step, at_end

    def on_step_end(self, trainer, step, logs) -> None:
        if step == self.step:
            os.kill(os.getpid(), self.signum)

    def on_train_end(self, trainer, result) -> None:
        if self.at_end:  # while the run closes: the last epoch line is already printed
            os.kill(os.getpid(), self.signum)


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*.tmp")]


def assert_saved_and_interrupted(run: Path) -> None:
    assert (run / WEIGHTS).is_file() and Network.load(run / WEIGHTS).layers
    assert json.loads((run / HISTORY).read_text())["interrupted"] is True
    assert open_run(run).status == "interrupted"
    assert no_temporary_files(run)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_training_saves_and_marks_the_run_interrupted(tmp_path, signum):
    result = fit(lenet(seed=0), run=tmp_path / "r", epochs=2, callbacks=[SignalAt(signum, step=5)])
    assert result.interrupted and result.signal == signum and result.result.steps == 5
    assert_saved_and_interrupted(tmp_path / "r")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers put back


def test_ctrl_c_while_the_run_closes_is_no_traceback_and_loses_nothing(tmp_path):
    result = fit(
        lenet(seed=0),
        run=tmp_path / "r",
        epochs=1,
        callbacks=[SignalAt(signal.SIGINT, at_end=True)],
    )
    assert result.interrupted and result.signal == signal.SIGINT
    assert_saved_and_interrupted(tmp_path / "r")


def test_signals_while_saving_the_weights_only_mark_the_stop(tmp_path, monkeypatch):
    save = Network.save

    def save_under_fire(self, path, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C, impatient: still saved
        os.kill(os.getpid(), signal.SIGTERM)
        save(self, path, **kwargs)

    monkeypatch.setattr(Network, "save", save_under_fire)
    result = fit(lenet(seed=0), run=tmp_path / "r", epochs=1)
    assert result.signal == signal.SIGINT
    assert_saved_and_interrupted(tmp_path / "r")


def test_sigterm_to_labkit_train_exits_143_with_the_weights_saved(tmp_path):
    run = tmp_path / "r"
    command = [sys.executable, "-m", "labkit.cli", *TRAIN[:1], "--epochs", "200", "--out", str(run)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # each line as it is printed
    process = subprocess.Popen(
        [*command, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        process.stdout.readline()  # "training ..."
        assert process.stdout.readline().startswith("epoch 1/200"), process.stderr.read()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, err
    assert "interrupted (SIGTERM)" in out and "Traceback" not in err
    assert_saved_and_interrupted(run)


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_at_the_start_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("labkit.runs.writer.atomic_write", full_disk)
    assert main([*TRAIN, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and str(tmp_path / "r") in err
    assert no_temporary_files(tmp_path)


def test_a_full_disk_in_the_middle_keeps_every_committed_record(tmp_path, monkeypatch, capsys):
    append = ShardAppender.append  # called by write_rows, in the record process if any

    def fill_up(self, slot, chunk):
        if slot == 3:  # record 3 (a shard holds the first 64)
            raise OSError(errno.ENOSPC, "No space left on device")
        return append(self, slot, chunk)

    monkeypatch.setattr(ShardAppender, "append", fill_up)
    assert main([*TRAIN, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err
    run = open_run(tmp_path / "r")
    assert len(run) == 3 and run.status in ("failed", "crashed")
    assert all(run.array(name, 2).size for name in run.arrays())  # the last one reads whole
    assert not (tmp_path / "r" / WEIGHTS).exists() and no_temporary_files(tmp_path)


@pytest.mark.parametrize("record", [True, False])
def test_a_full_disk_while_saving_never_leaves_a_completed_run_or_half_a_file(
    tmp_path, monkeypatch, capsys, record
):
    monkeypatch.setattr(np, "savez", lambda *args, **kwargs: full_disk())
    args = [*TRAIN, "--out", str(tmp_path / "r"), *([] if record else ["--no-record"])]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'r' / WEIGHTS}: cannot save it" in err
    assert not (tmp_path / "r" / WEIGHTS).exists() and no_temporary_files(tmp_path)
    if record:
        assert open_run(tmp_path / "r").status == "failed"


def test_no_record_into_a_run_being_written_is_refused(tmp_path, capsys):
    writer = RunWriter.create(tmp_path / "r", capacity=2, record_arrays={"x": ((2,), "float32")})
    try:  # a live writer holds the run's lock
        for extra in ([], ["--overwrite"]):
            assert main([*TRAIN, "--no-record", *extra, "--out", str(tmp_path / "r")]) == 2
            assert "is being written by another process" in capsys.readouterr().err
    finally:
        writer.close()
    assert not (tmp_path / "r" / WEIGHTS).exists()


def test_two_trainings_without_recording_into_one_folder_one_is_refused(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    lock = acquire_lock(tmp_path / "r")  # the first one, still training
    try:
        assert main([*TRAIN, "--no-record", "--out", str(tmp_path / "r")]) == 2
        assert "is being written by another process" in capsys.readouterr().err
    finally:
        os.close(lock)


def test_no_record_into_a_crashed_run_is_refused_and_overwrite_clears_it(tmp_path, capsys):
    run = tmp_path / "r"
    writer = RunWriter.create(run, capacity=2, record_arrays={"x": ((2,), "float32")})
    writer.write_record(1, 1, {"x": np.ones(2, np.float32)})
    os.close(writer._lock_fd)  # the writer died: the run reads as crashed
    assert open_run(run).status == "crashed"
    assert main([*TRAIN, "--no-record", "--out", str(run)]) == 2
    assert "a run already exists there" in capsys.readouterr().err
    assert main([*TRAIN, "--no-record", "--overwrite", "--out", str(run)]) == 0
    assert sorted(p.name for p in run.iterdir() if p.name != ".lock") == [HISTORY, WEIGHTS]


def test_planning_a_billion_steps_walks_none_of_them(monkeypatch):
    schedule = RecordSchedule(every=100)

    def walked(*args):
        raise AssertionError("the count walked the steps")

    monkeypatch.setattr(RecordSchedule, "records", walked)
    # steps 1-10, 15-100 by 5 (18), then every 100th after 100 (10**12 is one of them)
    assert schedule.count(10**12) == 10 + 18 + (10**12 // 100 - 1)


def test_a_plan_beyond_what_a_run_holds_is_refused_before_training(tmp_path, capsys):
    assert main([*TRAIN[:1], "--epochs", "10000000000", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "more than a run holds" in err and "--record-every" in err


@pytest.mark.parametrize("every", [1, 3, 5, 7, 20, 100, 150])
@pytest.mark.parametrize("dense_until", [0, 7, 10, 100, 103])
def test_the_count_is_the_number_of_recorded_steps(every, dense_until):
    schedule = RecordSchedule(every=every, dense_until=dense_until)
    for total in [*range(0, 60), 99, 100, 101, 999, 1000]:
        walk = sum(schedule.records(step, total) for step in range(1, total + 1))
        assert schedule.count(total) == walk, total


def test_ctrl_c_outside_a_training_is_one_line_and_130(monkeypatch, capsys):
    from labkit.commands import runs

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "run", interrupted)  # the parser is built at each main()
    assert main(["runs", "list"]) == 130
    assert capsys.readouterr().err == "labkit runs: interrupted\n"
