"""Worker processes that die with their parent.

`ds.map(scorer, num_proc=N)` runs N workers, each holding a model (and GPU memory), plus, in `datasets`, a
manager process. If the main process is killed (`kill -9`, an OOM kill), nothing tells them, and they keep
running. `exit_with_parent()`, called in a worker (every scorer call does), makes it exit as soon as its
parent does: on Linux with `prctl(PR_SET_PDEATHSIG, SIGKILL)`, elsewhere with a daemon thread that polls
`os.getppid()`. `children_exit_with_me()` (around `Scorer.map`) does the same for every process forked
from this one meanwhile, such as datasets' manager, which runs none of our code.

Example:
    >>> exit_with_parent()  # in the main process: does nothing
    False
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 1.0
_bound = False
_guarding = 0
_fork_hook = False


def _is_worker() -> bool:
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        return True
    try:
        import multiprocess
    except ImportError:
        return False
    return multiprocess.parent_process() is not None


def _watch(parent: int) -> None:
    while True:
        time.sleep(POLL_SECONDS)
        if os.getppid() != parent:  # re-parented: the parent is gone
            os._exit(1)


def _die_with(parent: int) -> None:
    """Exit when `parent` (this process's parent now) dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # the polling thread below covers it
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="hf-select-lifeline", daemon=True).start()


def exit_with_parent() -> bool:
    """In a `multiprocess`/`multiprocessing` worker, exit when the parent dies (once per process). Returns
    whether this call set it up."""
    global _bound
    if _bound or not _is_worker():
        return False
    _bound = True
    _die_with(os.getppid())
    return True


def _after_fork_in_child() -> None:
    global _bound
    if _guarding:
        _bound = True
        _die_with(os.getppid())


@contextmanager
def children_exit_with_me() -> Iterator[None]:
    """Every process forked from this one inside the block exits when this process dies."""
    global _guarding, _fork_hook
    if not _fork_hook and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _fork_hook = True
    _guarding += 1
    try:
        yield
    finally:
        _guarding -= 1
