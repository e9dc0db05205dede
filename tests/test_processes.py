"""The split step on worker processes: the threaded step's numbers to the bit, a worker's
error or death reported in the trainer, and no worker process outliving its trainer,
however that ends (a return, an error, Ctrl-C, SIGTERM, SIGKILL)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from process_checks import gone, wait_until_gone
from threadpoolctl import threadpool_info, threadpool_limits

from labkit import hooks, processes
from labkit.data import MNIST, load_mnist, one_hot
from labkit.layers import Dense, Flatten
from labkit.losses import softmax_cross_entropy_prime
from labkit.models import lenet, tutorial
from labkit.network import Network
from labkit.optim import Adam
from labkit.parallel import MIN_SLICE, DataParallel
from labkit.runs.files import acquire_lock, release_lock, writer_alive
from labkit.train import Trainer

pytestmark = pytest.mark.skipif(not processes.available(), reason="needs fork (Linux)")
ROOT = Path(__file__).resolve().parents[1]


def sample_data(train: int) -> MNIST:
    sample = load_mnist("sample")
    return MNIST(
        sample.x_train[:train], sample.y_train[:train], sample.x_test[:32], sample.y_test[:32], ""
    )


@pytest.mark.parametrize("preset", [lenet, tutorial], ids=["lenet", "tutorial"])
@pytest.mark.parametrize("batch_size", [64, 77])  # 77: slices of 38 and 39 rows
def test_processes_train_the_weights_threads_do_to_the_bit(preset, batch_size):
    data = sample_data(5 * batch_size + 9)  # and a last batch too small to split

    def train(split: str) -> dict[str, np.ndarray]:
        network = preset(seed=0)
        trainer = Trainer(
            network,
            Adam(network),
            batch_size=batch_size,
            progress=False,
            threads=2,
            split=split,
        )
        trainer.fit(data, epochs=2)
        return network.state_dict()

    on_threads, on_processes = train("threads"), train("processes")
    for key, value in on_threads.items():
        np.testing.assert_array_equal(on_processes[key], value, err_msg=key)


class PidNotingDense(Dense):
    """A user's replicable dense layer that notes which process ran each forward, and an
    error it raises only in a worker process when ``fail_in_workers`` is set."""

    replicable = True
    trainer_pid = os.getpid()
    fail_in_workers = False

    def forward(self, input):
        if PidNotingDense.fail_in_workers and os.getpid() != PidNotingDense.trainer_pid:
            raise ValueError(f"{self.describe()}: a worker's slice went wrong")
        self.seen_by = os.getpid()
        return super().forward(input)


def user_network() -> Network:
    return Network([Flatten(), PidNotingDense(784, 10, rng=0)])


def step(runner: DataParallel, rows: int = 2 * MIN_SLICE) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.random((rows, 1, 28, 28), dtype=np.float32)
    y = one_hot(rng.integers(0, 10, rows)).astype(np.float32)
    return runner.forward_backward(x, lambda out: softmax_cross_entropy_prime(y, out))


def test_a_users_layer_runs_its_slices_in_a_worker_and_hooked_steps_on_threads():
    network = user_network()
    runner = DataParallel(network, 2, split="processes")
    try:
        step(runner)  # the first step runs on threads and learns the output's shape
        assert len(runner.worker_pids()) == 1
        outputs = step(runner)
        np.testing.assert_allclose(
            outputs, step(DataParallel(user_network(), 2, split="threads")), rtol=0, atol=0
        )
        (pid,) = runner.worker_pids()
        assert pid != os.getpid() and not gone(pid)
        seen: list[int] = []
        with hooks.register(network.layers[1], "forward", lambda *_: seen.append(1)):
            step(runner)  # hooked: threads, in this process, the whole batch to the hook
        assert seen == [1]
    finally:
        runner.close()
    assert runner.worker_pids() == [] and wait_until_gone([pid]) == []


class BlasCheckingLayer(Flatten):
    """A replicable layer whose forward fails where BLAS may use more than one thread."""

    replicable = True

    def forward(self, input):
        threads = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
        if threads != {1}:
            raise ValueError(f"BLAS runs {threads} threads in process {os.getpid()}")
        return super().forward(input)


def test_a_worker_process_runs_blas_on_one_thread():
    """Forked while the trainer's BLAS has two threads, each worker limits its own to one
    (two processes' BLAS threads would fight over two cores)."""
    network = Network([BlasCheckingLayer(), PidNotingDense(784, 10, rng=0)])
    runner = DataParallel(network, 2, split="processes")
    try:
        with threadpool_limits(limits=2, user_api="blas"):
            step(runner)  # on threads; the workers are forked after it, with BLAS at 2
            step(runner)
            assert len(runner.worker_pids()) == 1
    finally:
        runner.close()


def test_a_worker_holds_no_run_lock_so_a_killed_trainer_reads_as_crashed(tmp_path):
    """A worker forked while the trainer holds a run's writer lock closes its copy of it:
    once the trainer lets go (or dies), the run has no writer, though the worker lives."""
    lock = acquire_lock(tmp_path)
    runner = DataParallel(user_network(), 2, split="processes")
    try:
        step(runner)
        step(runner)  # served by the worker: it is past its start, where it closes the lock
        (pid,) = runner.worker_pids()
        assert writer_alive(tmp_path)
        release_lock(lock)
        assert not gone(pid) and not writer_alive(tmp_path)
    finally:
        runner.close()


def test_an_error_in_a_worker_reaches_the_trainer_and_the_next_step_works(monkeypatch):
    runner = DataParallel(user_network(), 2, split="processes")
    try:
        step(runner)
        first_workers = runner.worker_pids()
        monkeypatch.setattr(PidNotingDense, "fail_in_workers", True)
        step(runner)  # the flag is set after the fork: the worker has its own copy
        runner.close()
        step(runner)  # forks workers that see the flag
        with pytest.raises(ValueError, match="a worker's slice went wrong"):
            step(runner)
        monkeypatch.setattr(PidNotingDense, "fail_in_workers", False)
        assert wait_until_gone(first_workers) == []
        step(runner)  # threads, then workers forked anew: both work
        step(runner)
        assert len(runner.worker_pids()) == 1
    finally:
        runner.close()


def test_a_worker_that_dies_is_reported_in_one_line_and_replaced():
    runner = DataParallel(user_network(), 2, split="processes")
    try:
        step(runner)
        (pid,) = runner.worker_pids()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match=rf"worker process {pid} died"):
            step(runner)
        assert runner.worker_pids() == []
        step(runner)
        step(runner)
        assert len(runner.worker_pids()) == 1 and runner.worker_pids() != [pid]
    finally:
        runner.close()


def test_no_worker_outlives_a_fit_whether_it_returns_or_fails():
    network = lenet(seed=0)
    pids: list[int] = []

    class NotePids:
        def on_train_begin(self, trainer): ...
        def on_step_begin(self, trainer, step): ...
        def on_epoch_end(self, trainer, result): ...
        def on_train_end(self, trainer, result): ...

        def on_step_end(self, trainer, step, logs):
            pids.extend(trainer.parallel.worker_pids())
            if step == 4 and fail:
                raise RuntimeError("a callback failed")

    fail = False
    Trainer(
        network, Adam(network), batch_size=64, progress=False, threads=2, callbacks=[NotePids()]
    ).fit(sample_data(320), epochs=1)
    fail = True
    with pytest.raises(RuntimeError, match="a callback failed"):
        Trainer(
            network, Adam(network), batch_size=64, progress=False, threads=2, callbacks=[NotePids()]
        ).fit(sample_data(320), epochs=1)
    assert len(set(pids)) == 2  # one worker per fit
    assert wait_until_gone(sorted(set(pids))) == []
    assert multiprocessing.active_children() == []


TRAINER = textwrap.dedent(
    """
    import sys, time
    from labkit.data import load_mnist
    from labkit.fit import fit
    from labkit.models import lenet
    from labkit.recorder import Recorder
    from labkit.train import Callback

    class Report(Callback):
        def on_step_end(self, trainer, step, logs):
            if step == 13:  # steps 1-10 are recorded, on threads; workers are forked at 11
                recorder = next(c for c in trainer.callbacks if isinstance(c, Recorder))
                print(*trainer.parallel.worker_pids(), recorder.process_pid, flush=True)
            time.sleep(0.05)

    result = fit(lenet(seed=0), run=sys.argv[1], epochs=50, batch_size=64,
                 threads=2, progress=False, callbacks=[Report()])
    print("interrupted" if result.interrupted else "completed", flush=True)
    """
)


@pytest.mark.parametrize("how", ["SIGINT to the group", "SIGTERM", "SIGKILL"])
def test_no_worker_outlives_its_trainer_stopped_by_a_signal(tmp_path, how):
    """Ctrl-C reaches the whole process group: the workers (and the recorder's record
    process) ignore it and the trainer stops them; SIGTERM stops the trainer at a step,
    which stops them; SIGKILL gives the trainer no say: the parent-death signal ends them."""
    process = subprocess.Popen(
        [sys.executable, "-c", TRAINER, str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # its own process group, as a terminal's job
    )
    try:
        line = process.stdout.readline()
        pids = [int(pid) for pid in line.split()]
        assert len(pids) == 2, line + process.stderr.read()
        if how == "SIGINT to the group":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(getattr(signal, how))
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    if how != "SIGKILL":
        assert out.strip() == "interrupted" and "Traceback" not in err, err
    assert wait_until_gone(pids) == []
