"""ZIP: the compression-ratio greedy (METHODS.md, "ZIP"), exact, with zlib's state copied per candidate.

**What is compressed.** Every row becomes one byte string (its *sample*); a set of samples
`[s1, ..., sm]` becomes `OPEN + s1 + SEP + s2 + ... + SEP + sm + CLOSE`, and
`CR(S) = len(bytes) / len(zlib.compress(bytes, level))`.

- `text="rendered"` (default): a sample is the row's conversation rendered in the study's template,
  every turn followed by a newline (`[system\\n]Human: q\\nAssistant: a\\n...`), UTF-8;
  `OPEN = CLOSE = b""`, `SEP = b"\\n"` (a blank line between conversations).
- `text="repr"` (the reference's bytes): a sample is `repr(record)`, the record being the row as a dict
  over `columns` (default: every column of the pool, in its order); `OPEN = b"["`, `SEP = b", "`,
  `CLOSE = b"]"`. That is `str(list_of_records).encode("utf-8")`, exactly what the reference compresses
  for `anchor + selected + [candidate]`. Score columns change the bytes: pass the raw pool, or `columns=`.
  (A pool whose rows have different keys differs: `datasets` fills a missing key with None.)

Rows whose conversation fails normalisation or the scored-unit rules (`split_last`: no assistant turn,
last turn not an assistant turn, empty response) are never selected, in both modes.

**The greedy.** `G[z] = CR([z])`. Until the budget is met: stage 1 takes the `k1` unselected rows with
the lowest `G`; stage 2 computes `CR(selected + [c])` for each (in selection order), stores it in `G`,
keeps the `k2` lowest and sets their `G` to `+inf`; stage 3 picks, one at a time, the one minimising
`CR(stage3_picks + [c])` until `k3` (or the rest of the budget) are picked, and appends them to the
selection. Ties go to the lower pool index everywhere. Stage-2 rows that stage 3 did not pick keep
`G = +inf`: they come back only once fewer than `k1` rows have a finite `G` (as in the reference).
CRs are Python floats (the reference rounds them to float32 in a torch tensor; its tie order is
unspecified); a selected row is never a candidate again (the reference can re-pick one once fewer than
`k1` rows have a finite `G`).

**The fast path.** zlib's output does not depend on how its input is split across `compress()` calls, and
`zlib.compress(b, level)` uses the same stream parameters as `zlib.compressobj(level)` (deflate, wbits 15,
memLevel 8, default strategy). So the compressor that has consumed the selection's bytes is kept, and a
candidate costs `base.copy()`, `compress(SEP + sample + CLOSE)` and `flush()`:
`len(compress(prefix + suffix)) == emitted_by_base + len(copy.compress(suffix)) + len(copy.flush())`.
The samples live in one contiguous buffer with offsets (`zip_samples.SampleBuffer`), rendered by forked
workers, so that the workers share it instead of copying a million small objects page by page.
Stage 2 runs in a process pool (fork; every worker keeps its own copy of the selection's compressor and
feeds it only the rows added since its last task); stage 3 too, one pick at a time.

Example:
    >>> from datasets import Dataset
    >>> rows = [[{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    ...         for q, a in [("hi", "hello"), ("hi", "hello"), ("sum 2+2", "4"), ("capital of France?", "Paris")]]
    >>> sel = zip_select(Dataset.from_dict({"conversations": rows}), 2, k1=4, k2=2, k3=1, workers=1)
    >>> sel.order.tolist()
    [2, 0]
"""

from __future__ import annotations

import multiprocessing
import os
import zlib
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasets import Dataset

from ..conversation import FormatName
from ..errors import BudgetError, InputError
from .base import BudgetedSelector, Picked, unrecorded
from .budget import Budget, BudgetSpec
from .selection import TOKEN_COLUMN, Selection
from .zip_samples import LAYOUTS, TextMode, _can_fork, as_buffer, sample_buffer
from .zip_samples import SampleBuffer as SampleBuffer  # re-exported: part of this module's API
from .zip_samples import sample_bytes as sample_bytes
from .zip_samples import set_bytes as set_bytes

_MIN_PARALLEL_ROWS = 1_000
_EVAL_OVERHEAD = 1_500  # a compressor copy + flush costs about as much as compressing this many bytes
_MIN_PARALLEL_WORK = 40_000  # a call with less work (in bytes, about 4 ms) runs in-process: IPC would cost more
_DIRECT_BYTES = 2_048  # below this prefix size, compressing prefix + candidate beats copying the compressor


def compression_ratio(data: bytes, level: int = 9) -> float:
    """`len(data) / len(zlib.compress(data, level))`."""
    return len(data) / len(zlib.compress(data, level))


# ---------------------------------------------------------------------------------------------------
# Compressed lengths of prefix + [candidate], by copying the prefix's compressor
# ---------------------------------------------------------------------------------------------------


@dataclass
class _Base:
    obj: Any  # zlib.Compress
    emitted: int
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


class _Compressor:
    """Compressed lengths of `set(prefix + [c])` for many `c`, keeping one compressor per key (the
    selection, stage 3) that is fed only the rows appended to its prefix since the last call."""

    def __init__(self, samples: Sequence[bytes | None], layout: tuple[bytes, bytes, bytes], level: int) -> None:
        self.samples = samples
        self.open, self.sep, self.close = layout
        self.level = level
        self.bases: dict[str, _Base] = {}

    def base(self, key: str, prefix: np.ndarray) -> _Base:
        b = self.bases.get(key)
        known = 0 if b is None else len(b.ids)
        if b is None or known > len(prefix) or not np.array_equal(prefix[:known], b.ids):
            obj = zlib.compressobj(self.level)
            b = _Base(obj, len(obj.compress(self.open)))
            known = 0
        if len(prefix) > known:
            parts: list[bytes] = []
            for j, idx in enumerate(prefix[known:].tolist()):
                if known + j:
                    parts.append(self.sep)
                parts.append(self.samples[idx])  # type: ignore[arg-type]
            b.emitted += len(b.obj.compress(b"".join(parts)))
            b.ids = np.array(prefix, dtype=np.int64)
        self.bases[key] = b
        return b

    def lengths(self, key: str, prefix: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        samples = self.samples
        if len(prefix) < 64:  # a short prefix: compressing it again is cheaper than copying a compressor
            parts = [samples[i] for i in prefix.tolist()]
            if sum(len(p) for p in parts) < _DIRECT_BYTES:  # type: ignore[arg-type]
                head = self.open + self.sep.join(parts) + (self.sep if parts else b"")  # type: ignore[arg-type]
                level, close = self.level, self.close
                return np.array(
                    [len(zlib.compress(head + samples[i] + close, level)) for i in candidates.tolist()],  # type: ignore[operator]
                    dtype=np.int64,
                )
        b = self.base(key, prefix)
        lead = self.sep if len(prefix) else b""
        close = self.close
        out = np.empty(len(candidates), dtype=np.int64)
        for k, idx in enumerate(candidates.tolist()):
            c = b.obj.copy()
            n = len(c.compress(lead)) if lead else 0
            n += len(c.compress(samples[idx]))  # type: ignore[arg-type]
            if close:
                n += len(c.compress(close))
            out[k] = b.emitted + n + len(c.flush())
        return out


_WORKER: _Compressor | None = None


def _init_worker(compressor: _Compressor) -> None:
    global _WORKER
    compressor.bases = {}
    _WORKER = compressor


def _worker_lengths(key: str, prefix: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    assert _WORKER is not None
    return _WORKER.lengths(key, prefix, candidates)


class _Evaluator:
    """CRs of `prefix + [c]`, in-process or split over a fork process pool by estimated work."""

    def __init__(self, samples: Sequence[bytes | None], text: TextMode, level: int, workers: int) -> None:
        self.layout = LAYOUTS[text]
        samples = as_buffer(samples)
        self.local = _Compressor(samples, self.layout, level)
        self.sizes = samples.sizes
        self.workers = workers
        self.executor: Executor | None = None
        if workers > 1:
            if not _can_fork():
                raise InputError("workers > 1 needs the 'fork' start method, which this platform lacks; use workers=1")
            context = multiprocessing.get_context("fork")
            self.executor = ProcessPoolExecutor(
                max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(self.local,)
            )

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None

    def raw_lengths(self, prefix_bytes: int, n_prefix: int, candidates: np.ndarray) -> np.ndarray:
        open_, sep, close = self.layout
        return len(open_) + prefix_bytes + len(sep) * n_prefix + self.sizes[candidates] + len(close)

    def ratios(self, key: str, prefix: np.ndarray, prefix_bytes: int, candidates: np.ndarray) -> np.ndarray:
        work = self.sizes[candidates] + _EVAL_OVERHEAD  # cost of each evaluation, in bytes compressed
        total = int(work.sum())
        if self.executor is None or len(candidates) < 2 * self.workers or total < _MIN_PARALLEL_WORK:
            compressed = self.local.lengths(key, prefix, candidates)
        else:
            cuts = np.searchsorted(np.cumsum(work), np.linspace(0, total, self.workers + 1))
            cuts[0], cuts[-1] = 0, len(candidates)
            futures = [
                self.executor.submit(_worker_lengths, key, prefix, candidates[a:b])
                for a, b in zip(cuts[:-1], cuts[1:], strict=True)
                if b > a
            ]
            compressed = np.concatenate([f.result() for f in futures])
        return self.raw_lengths(prefix_bytes, len(prefix), candidates) / compressed


# ---------------------------------------------------------------------------------------------------
# The greedy
# ---------------------------------------------------------------------------------------------------


def _lowest(values: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """The k entries of `idx` with the lowest `values` (aligned with idx), ties by index, in that order."""
    return idx[np.lexsort((idx, values))[:k]]


def default_workers(n_rows: int) -> int:
    """All usable cores for a pool of at least 1,000 selectable rows (where processes can fork), else 1."""
    if n_rows < _MIN_PARALLEL_ROWS or not _can_fork():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores)


_CHECKED_LEVELS: set[int] = set()


def check_zlib(level: int) -> None:
    """Check, once per level, that this zlib build gives `compress(a + b)` byte for byte from a compressor
    fed `a` in pieces and copied (the fast path's premise; zlib-ng builds could differ)."""
    if level in _CHECKED_LEVELS:
        return
    rng = np.random.default_rng(12345)
    words = [bytes(w) for w in rng.integers(97, 123, size=(300, 7), dtype=np.uint8)]
    text = b" ".join(words[i] for i in rng.integers(0, 300, size=30_000))
    for cut, pieces in ((0, 1), (1, 2), (33_333, 3), (70_001, 5), (len(text), 2)):
        base = zlib.compressobj(level)
        out = b"".join(base.compress(p) for p in np.array_split(np.frombuffer(text[:cut], np.uint8), pieces))
        copy = base.copy()
        out += copy.compress(text[cut:]) + copy.flush()
        if out != zlib.compress(text, level):
            raise RuntimeError(
                f"this zlib ({zlib.ZLIB_RUNTIME_VERSION}) does not give zlib.compress's output from a copied "
                "compressor fed in pieces: ZIP's fast path would not be exact here"
            )
    _CHECKED_LEVELS.add(level)


def _check_k(k1: int, k2: int, k3: int, level: int) -> None:
    for name, k in (("k1", k1), ("k2", k2), ("k3", k3)):
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise InputError(f"{name} must be a positive integer, got {k!r}")
    if not k1 >= k2 >= k3:
        raise InputError(f"ZIP needs k1 >= k2 >= k3, got k1={k1}, k2={k2}, k3={k3}")
    if isinstance(level, bool) or level not in (-1, *range(1, 10)):
        raise InputError(f"zlib level must be 1..9 or -1 (level 0 stores, it does not compress), got {level!r}")


def zip_indices(
    samples: Sequence[bytes | None],
    n_select: int | None,
    *,
    k1: int = 10_000,
    k2: int = 200,
    k3: int = 100,
    text: TextMode = "rendered",
    level: int = 9,
    workers: int | None = None,
    tokens: np.ndarray | None = None,
    max_tokens: float | None = None,
) -> np.ndarray:
    """ZIP's picks (pool indices, in pick order) over per-row sample bytes (`None`: never selected).

    Picks `n_select` rows; with `max_tokens` (and `tokens`, one count per row), picks until the picks'
    token sum exceeds `max_tokens` (the pick that crosses it is included: cut it with `Budget.cut`),
    or until no row is left. The order is budget-independent: a smaller budget gives a prefix.
    """
    _check_k(k1, k2, k3, level)
    check_zlib(level)
    if text not in LAYOUTS:
        raise InputError(f"unknown text mode {text!r}: expected one of {sorted(LAYOUTS)}")
    samples = as_buffer(samples)  # one shared buffer for the forked workers
    n = len(samples)
    available = samples.valid.copy()
    if tokens is not None:
        available &= ~np.isnan(tokens)
    n_available = int(available.sum())
    target = n_available if n_select is None else n_select
    if target > n_available:
        raise BudgetError(f"ZIP asked for {target:,} rows but only {n_available:,} can be selected")
    if workers is None:
        workers = default_workers(n_available)
    if isinstance(workers, bool) or not isinstance(workers, int | np.integer) or workers < 1:
        raise InputError(f"workers must be a positive integer or None, got {workers!r}")

    evaluator = _Evaluator(samples, text, level, int(workers))
    try:
        eligible = np.flatnonzero(available)
        single = np.full(n, np.inf)
        single[eligible] = evaluator.ratios("empty", np.empty(0, dtype=np.int64), 0, eligible)
        g = single.copy()
        order: list[int] = []
        selected_bytes = 0
        used_tokens = 0.0

        def done() -> bool:
            if len(order) >= target:
                return True
            return max_tokens is not None and used_tokens > max_tokens

        while not done():
            candidates = np.flatnonzero(available)
            if len(candidates) == 0:
                break
            stage1 = _lowest(g[candidates], candidates, k1)
            prefix = np.array(order, dtype=np.int64)
            cr = evaluator.ratios("selection", prefix, selected_bytes, stage1)
            g[stage1] = cr
            stage2 = _lowest(cr, stage1, k2)
            g[stage2] = np.inf
            picks: list[int] = []
            picks_bytes = 0
            remaining = np.sort(stage2)
            for step in range(min(k3, len(stage2))):
                if step == 0:
                    values = single[remaining]  # CR([c]) is G's initial value
                else:
                    values = evaluator.ratios("stage3", np.array(picks, dtype=np.int64), picks_bytes, remaining)
                best = int(_lowest(values, remaining, 1)[0])
                picks.append(best)
                picks_bytes += int(evaluator.sizes[best])
                remaining = remaining[remaining != best]
                order.append(best)
                available[best] = False
                selected_bytes += int(evaluator.sizes[best])
                if tokens is not None:
                    used_tokens += float(tokens[best])
                if done():
                    break
        return np.array(order, dtype=np.int64)
    finally:
        evaluator.close()


@dataclass(kw_only=True)
class ZIP(BudgetedSelector):
    """ZIP (compression-ratio greedy) selection; see the module docstring for the exact definition.

    A token budget takes picks in order until the next would exceed it. The selection carries `order`:
    pool indices in pick order; the picks do not depend on `workers`.

    Example:
        >>> from datasets import Dataset
        >>> texts = ["the cat sat", "the cat sat", "a dog ran far", "zebras graze"]
        >>> ds = Dataset.from_dict({"prompt": texts, "response": ["ok"] * 4})
        >>> len(ZIP(budget=2, k1=4, k2=3, k3=1, workers=1).fit(ds))
        2
    """

    method = "zip"
    ordered = True

    k1: int = 10_000
    """Stage-1 candidates per round: the rows with the lowest stored compression ratio."""
    k2: int = 200
    """Stage-2 survivors per round."""
    k3: int = 100
    """Stage-3 greedy picks per round."""
    text: TextMode = "rendered"
    """What is compressed: the `rendered` conversation text, or the reference's `repr` of the raw records."""
    level: int = 9
    """zlib compression level."""
    workers: int | None = unrecorded(None)
    """Worker processes (default: every core for a pool of 1,000+ selectable rows; 1: in-process)."""
    columns: list[str] | None = None
    """`repr` mode: the columns whose values are compressed (default: all)."""
    format: FormatName | None = None
    """Conversation format of the rows (default: detected)."""
    format_columns: list[str] | None = None
    """Columns for `format` (e.g. question,answer for prompt_response)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_k(self.k1, self.k2, self.k3, self.level)

    def pick(self, pool: Dataset, budget: Budget, tokens: np.ndarray | None) -> Picked:
        render_workers = default_workers(len(pool)) if self.workers is None else int(self.workers)
        samples = sample_buffer(
            pool, self.text, columns=self.columns, format=self.format, format_columns=self.format_columns,
            workers=render_workers,
        )  # fmt: skip
        what = "rows ZIP can select"
        n_select: int | None = None
        if budget.kind == "tokens":
            usable = samples.valid & ~np.isnan(tokens)  # type: ignore[operator]
            budget.check(int(usable.sum()), n_pool=len(pool), tokens=float(np.sum(tokens[usable])), what=what)  # type: ignore[index]
        else:
            n_select = budget.rows(len(pool))
        order = zip_indices(
            samples, n_select, k1=self.k1, k2=self.k2, k3=self.k3, text=self.text, level=self.level,
            workers=self.workers, tokens=tokens if budget.kind == "tokens" else None,
            max_tokens=float(budget.value) if budget.kind == "tokens" else None,
        )  # fmt: skip
        details: dict[str, Any] = {"zlib": zlib.ZLIB_RUNTIME_VERSION}
        if self.text == "repr":
            details["columns"] = list(pool.column_names) if self.columns is None else list(self.columns)
        if self.format is not None:
            details["format"] = self.format
        if self.format_columns is not None:
            details["format_columns"] = list(self.format_columns)
        return Picked(budget.cut(order, n_pool=len(pool), tokens=tokens, what=what), details)

    def parameters(self, details: dict[str, Any]) -> dict[str, Any]:
        return {"k1": self.k1, "k2": self.k2, "k3": self.k3, "text": self.text, "level": self.level, **details}


def zip_select(
    pool: Dataset,
    budget: BudgetSpec,
    *,
    k1: int = 10_000,
    k2: int = 200,
    k3: int = 100,
    text: TextMode = "rendered",
    level: int = 9,
    workers: int | None = None,
    columns: Sequence[str] | None = None,
    format: FormatName | None = None,
    format_columns: Sequence[str] | None = None,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Any = None,
) -> Selection:
    """`ZIP(...).fit(pool)`: the compression-ratio greedy. `k1`/`k2`/`k3`: stage sizes (study:
    10,000/200/100); `text`: `"rendered"` conversations or the reference's `"repr"` of the raw records."""
    selector = ZIP(
        budget=budget, k1=k1, k2=k2, k3=k3, text=text, level=level, workers=workers,
        columns=None if columns is None else list(columns), format=format,
        format_columns=None if format_columns is None else list(format_columns), token_column=token_column,
    )  # fmt: skip
    return selector.fit(pool, source=source, scorers=scorers)
