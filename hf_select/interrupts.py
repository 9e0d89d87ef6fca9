"""Ctrl-C in the `hf-select` command: one line and exit status 130, never a traceback, also from the
`datasets` worker processes that a terminal's Ctrl-C reaches as well (the whole process group gets it).

`ctrl_c_quiets_workers()` wraps the command: forked workers inherit its SIGINT handler, which exits them
quietly; spawned workers (model scorers) do not, but they import `hf_select` to unpickle the scorer, and
`hf_select/__init__` calls `quiet_if_cli_worker()`, which recognises them by `CLI_PID_VARIABLE`.

Example:
    >>> caused_by_ctrl_c(RuntimeError("queue closed"))
    False
    >>> try:
    ...     try:
    ...         raise KeyboardInterrupt
    ...     except KeyboardInterrupt:
    ...         raise TimeoutError("worker pool broke while stopping")
    ... except TimeoutError as err:
    ...     caused_by_ctrl_c(err)
    True
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

CLI_PID_VARIABLE = "HF_SELECT_CLI_PID"
"""Set by the `hf-select` command to its pid while it runs, so that its worker processes know they are."""

INTERRUPTED = "hf-select: interrupted (Ctrl-C); outputs are written only when complete"
EXIT_INTERRUPTED = 130  # the shell's status for a process stopped by SIGINT


def quiet_if_cli_worker() -> None:
    """In a worker process of the `hf-select` command, Ctrl-C exits quietly: the command reports it, once."""
    parent = os.environ.get(CLI_PID_VARIABLE)
    if parent and parent != str(os.getpid()) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda *_: sys.exit(EXIT_INTERRUPTED))


@contextmanager
def ctrl_c_quiets_workers() -> Iterator[None]:
    """While the block runs, Ctrl-C raises KeyboardInterrupt in this process and quietly exits its workers
    (SystemExit, which multiprocess's workers end on without a traceback). Restores the handler after."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return
    main_pid = os.getpid()

    def on_sigint(signum: int, frame: object) -> None:
        if os.getpid() != main_pid:  # a forked worker
            raise SystemExit(EXIT_INTERRUPTED)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    os.environ[CLI_PID_VARIABLE] = str(main_pid)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        os.environ.pop(CLI_PID_VARIABLE, None)


def caused_by_ctrl_c(err: BaseException | None) -> bool:
    """Whether `err` is, or was raised while handling, a KeyboardInterrupt (worker pools stopped by Ctrl-C
    fail in their own ways: a broken queue, a timeout)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False
