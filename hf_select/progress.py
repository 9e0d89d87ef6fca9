"""Progress of model scoring per micro-batch: rows, tokens/s and an ETA, in the CLI and under `ds.map`.

`datasets` moves its bar once per `map` batch (1,000 rows by default): minutes apart for a model scorer.
The engines (`hf_select.engine.LocalEngine`) report every micro-batch here; each process then shows one
tqdm bar of its rows (fractions of a batch as its micro-batches finish) with the tokens per second, and an
ETA when the total is known (`Scorer.map` and `hf-select score` tell it). Quiet it like datasets' own bars
(`datasets.disable_progress_bars()`) or with `HF_SELECT_PROGRESS=0`; `Scorer.map(..., progress=False)` and
`hf-select score --quiet` do that for one run. `listen(fn)` receives every micro-batch as a `Step`.

Example:
    >>> steps = []
    >>> stop = listen(steps.append)
    >>> with batch(rows=4, show=False):
    ...     advance(sequences=2, call_sequences=4, tokens=100)
    ...     advance(sequences=2, call_sequences=4, tokens=60)
    >>> stop()
    >>> [(s.rows, s.tokens) for s in steps]
    [(2.0, 100), (2.0, 60)]
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

TOTAL_ENV = "HF_SELECT_PROGRESS_TOTAL"  # rows this process will score (set by Scorer.map for its workers)
SWITCH_ENV = "HF_SELECT_PROGRESS"  # "0": no bars


@dataclass
class Step:
    """One micro-batch: the sequences it ran, the tokens in them, and the rows of the dataset they stand for."""

    sequences: int
    tokens: int
    rows: float


@dataclass
class _Batch:
    rows: int
    passes: int
    show: bool


_listeners: list[Callable[[Step], None]] = []
_current: _Batch | None = None
_bar: Any = None
_tokens = 0
_started = 0.0


def enabled() -> bool:
    """Whether bars are shown: not when `HF_SELECT_PROGRESS=0`, nor when datasets' bars are disabled."""
    if os.environ.get(SWITCH_ENV, "1") == "0":
        return False
    from datasets.utils.logging import is_progress_bar_enabled

    return is_progress_bar_enabled()


def listen(fn: Callable[[Step], None]) -> Callable[[], None]:
    """Call `fn(step)` after every micro-batch in this process; returns the function that stops it."""
    _listeners.append(fn)
    return lambda: _listeners.remove(fn)


def _open_bar(desc: str, position: int | None) -> Any:
    global _bar, _tokens, _started
    if _bar is not None and _bar.desc != desc:  # another scorer's bar
        finish()
    if _bar is None:
        from tqdm.auto import tqdm

        total = os.environ.get(TOTAL_ENV)
        _bar = tqdm(
            total=int(total) if total else None, desc=desc, unit="row", dynamic_ncols=True, leave=False,
            position=position, bar_format="{l_bar}{bar}| {n:,.0f}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
            if total else "{desc}: {n:,.0f} rows [{elapsed}{postfix}]",
        )  # fmt: skip
        _tokens, _started = 0, time.perf_counter()
    return _bar


@contextmanager
def batch(
    rows: int, *, passes: int = 1, desc: str = "hf-select", show: bool | None = None, rank: int | None = None
) -> Iterator[None]:
    """Scoring of one `map` batch of `rows` rows, whose sequences go through the engine in `passes` calls
    (e.g. one per model); the bar ends the batch at exactly `rows` more rows. Worker `rank` gets its own line."""
    global _current
    show = enabled() if show is None else show
    bar = _open_bar(f"{desc} [{rank}]" if rank is not None else desc, rank) if show else None
    start = bar.n if bar is not None else 0
    _current = _Batch(rows, max(1, passes), show)
    try:
        yield
    finally:
        _current = None
        if bar is not None:
            bar.n = start + rows
            bar.refresh()


def advance(sequences: int, call_sequences: int, tokens: int) -> None:
    """An engine finished a micro-batch of `sequences` of the `call_sequences` it was given in one call."""
    global _tokens
    ctx = _current
    rows = ctx.rows * sequences / max(1, call_sequences) / ctx.passes if ctx is not None else 0.0
    step = Step(sequences, tokens, rows)
    for fn in list(_listeners):
        fn(step)
    if ctx is not None and ctx.show and _bar is not None:
        _tokens += tokens
        _bar.update(rows)
        elapsed = time.perf_counter() - _started
        if elapsed > 0:
            _bar.set_postfix_str(f"{_tokens / elapsed:,.0f} tokens/s", refresh=False)


def finish() -> None:
    """Close this process's bar (the next batch opens a new one)."""
    global _bar
    if _bar is not None:
        _bar.close()
        _bar = None
