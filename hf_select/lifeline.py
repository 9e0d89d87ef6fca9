"""Worker processes that die with their parent.

`ds.map(scorer, num_proc=N)` runs N workers, each holding a model (and GPU memory). If the main process is
killed (`kill -9`, an OOM kill), nothing tells them, and they keep running. `exit_with_parent()`, called in
a worker, makes it exit as soon as its parent does: on Linux with `prctl(PR_SET_PDEATHSIG, SIGKILL)`,
elsewhere (and as a second guard) with a daemon thread that polls `os.getppid()`.

Example:
    >>> exit_with_parent()  # in the main process: does nothing
    False
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 1.0
_bound = False


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


def exit_with_parent() -> bool:
    """In a `multiprocess`/`multiprocessing` worker, exit when the parent dies (once per process). Returns
    whether this call set it up."""
    global _bound
    if _bound or not _is_worker():
        return False
    _bound = True
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the polling thread still covers it
    if os.getppid() != parent or parent == 1:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="hf-select-lifeline", daemon=True).start()
    return True
