"""One check at a time per run across processes (gunicorn's workers, two dashboards): the
check slot is a flock in the run's gradchecks/ folder, refused at once while another
process holds it, and free again when that process ends, however it ends."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys

import pytest
from served import environment

from dashboards.gradchecks import BUSY, CHECK_LOCK, CheckRunning, one_check_at_a_time
from labkit.errors import LabkitError
from labkit.runs.format import GRADCHECKS

HOLDER = """
import sys
from dashboards.gradchecks import one_check_at_a_time
with one_check_at_a_time(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


@pytest.fixture
def run(tmp_path, trained):
    shutil.copytree(trained, tmp_path / "lenet")
    return tmp_path / "lenet"


@pytest.fixture
def holder(run):
    """Another process holding the run's check slot until told (a line on its stdin)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    assert process.stdout.readline() == "held\n"
    yield process
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=60)


def test_a_check_held_by_another_process_is_refused(run, holder):
    with pytest.raises(CheckRunning, match=BUSY), one_check_at_a_time(run):
        pass
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.stdout.readline() == "released\n"
    with one_check_at_a_time(run):  # free once the other process let go
        pass


def test_a_holder_killed_mid_check_leaves_no_stale_lock(run, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    with one_check_at_a_time(run):
        pass


def test_the_slot_is_free_again_after_a_refusal_and_after_an_error(run):
    with one_check_at_a_time(run):
        with pytest.raises(CheckRunning):  # a second thread of this process: the set
            with one_check_at_a_time(run):
                pass
    with pytest.raises(ValueError), one_check_at_a_time(run):
        raise ValueError("the check failed")
    with one_check_at_a_time(run):
        pass


def test_the_lock_lives_in_a_gradchecks_folder_made_if_missing(run):
    shutil.rmtree(run / GRADCHECKS, ignore_errors=True)
    with one_check_at_a_time(run):
        assert (run / GRADCHECKS / CHECK_LOCK).is_file()
    from labkit.recording import open_recording

    assert open_recording(run).gradchecks == []  # the lock is not a report


def test_a_run_that_cannot_hold_the_lock_is_one_line(run):
    shutil.rmtree(run / GRADCHECKS, ignore_errors=True)
    (run / GRADCHECKS).write_text("not a folder")
    with pytest.raises(LabkitError) as error, one_check_at_a_time(run):
        pass
    assert not isinstance(error.value, CheckRunning)
    assert str(error.value).startswith("cannot check 'lenet' here: ")
    assert "\n" not in str(error.value)
