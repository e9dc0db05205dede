"""File primitives of the run store: the writer's lock, folder sizes (atomic writes and
fsync come from :mod:`labkit.atomic`, re-exported here)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from datetime import datetime
from pathlib import Path

from labkit.atomic import atomic_write, fsync_dir
from labkit.errors import LabkitError
from labkit.runs.format import LOCK

__all__ = [
    "acquire_lock",
    "release_lock",
    "atomic_write",
    "dir_size",
    "fsync_dir",
    "lock_pid",
    "now_iso",
    "write_all",
    "writer_alive",
]


def now_iso() -> str:
    """The local time, ISO 8601 with its UTC offset, to the second."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may be partial)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def lock_pid(run_path: Path) -> str:
    """``"pid N"`` of the process that wrote the run's lock, for messages."""
    try:
        text = (run_path / LOCK).read_text().strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"


def writer_alive(run_path: str | os.PathLike) -> bool:
    """Whether a live process holds the run's writer lock (a quick, read-only probe)."""
    try:
        fd = os.open(Path(run_path) / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


_held_locks: set[int] = set()  # this process's writer-lock fds (see _not_in_a_forked_child)


def _not_in_a_forked_child() -> None:
    """A forked child (a split step's worker process) closes its copies of the writer
    locks: a lock held by a child outliving its trainer would keep a killed run from
    reading as crashed."""
    for fd in _held_locks:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held_locks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_not_in_a_forked_child)


def release_lock(fd: int) -> None:
    """Give back a lock :func:`acquire_lock` took (closing its fd)."""
    _held_locks.discard(fd)
    os.close(fd)


def acquire_lock(run_path: Path) -> int:
    """Take the writer lock, writing our pid into it; LabkitError if a live process has it."""
    lock_path = run_path / LOCK
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + 0.25  # a reader's probe holds it for microseconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            os.close(fd)
            raise LabkitError(
                f"{run_path} is being written by another process ({lock_pid(run_path)})"
            ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held_locks.add(fd)
    return fd


def dir_size(path: Path) -> int:
    """Total size of the files under ``path`` (unreadable entries count 0; no symlinks)."""
    total = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total
