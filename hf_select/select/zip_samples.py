"""ZIP's samples: every row's bytes (see `hf_select.select.zip`, "What is compressed"), held in one contiguous
buffer with offsets (`SampleBuffer`) and rendered by forked workers, so that the greedy's forked workers
share one buffer instead of copying a million small objects page by page.

Example:
    >>> from datasets import Dataset
    >>> pool = Dataset.from_dict({"prompt": ["hi", "sum 2+2"], "response": ["hello", ""]})
    >>> sample_bytes(pool)  # the second row's empty response is never selected
    [b'Human: hi\\nAssistant: hello\\n', None]
    >>> buf = sample_buffer(pool)
    >>> bytes(buf[0]), buf[1], buf.valid.tolist()
    (b'Human: hi\\nAssistant: hello\\n', None, [True, False])
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import tempfile
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Literal

import numpy as np
from datasets import Dataset

from ..conversation import PAPER_HEADERS, FormatName, RowError, batch_turns, detect_format, split_last
from ..errors import InputError

TextMode = Literal["rendered", "repr"]

LAYOUTS: dict[str, tuple[bytes, bytes, bytes]] = {
    "rendered": (b"", b"\n", b""),
    "repr": (b"[", b", ", b"]"),
}
"""(OPEN, SEP, CLOSE) of a set of samples, per text mode."""


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


class SampleBuffer(Sequence):
    """Every row's sample bytes in one contiguous buffer, with offsets: `buf[i]` is a zero-copy memoryview
    (`None` for a row that is never selected). A list of a million `bytes` objects would be copied page by
    page into every forked worker (reference counts are written next to the data); one buffer stays shared.

    Example:
        >>> buf = SampleBuffer.from_list([b"ab", None, b"c"])
        >>> bytes(buf[0]), buf[1], buf.sizes.tolist()
        (b'ab', None, [2, 0, 1])
    """

    def __init__(self, data: bytearray, sizes: np.ndarray, valid: np.ndarray) -> None:
        self.data = data
        self.sizes = np.asarray(sizes, dtype=np.int64)  # 0 for an invalid row
        self.valid = np.asarray(valid, dtype=bool)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self._view = memoryview(data)

    @classmethod
    def from_list(cls, samples: Sequence[bytes | None]) -> SampleBuffer:
        data = bytearray()
        for sample in samples:
            if sample is not None:
                data += sample
        sizes = [len(x) if x is not None else 0 for x in samples]
        return cls(data, np.array(sizes, dtype=np.int64), np.array([x is not None for x in samples], dtype=bool))

    def __len__(self) -> int:
        return len(self.valid)

    def __getitem__(self, i: int) -> memoryview | None:  # type: ignore[override]
        if not self.valid[i]:
            return None
        start = int(self.starts[i])
        return self._view[start : start + int(self.sizes[i])]


def as_buffer(samples: Sequence[bytes | None]) -> SampleBuffer:
    return samples if isinstance(samples, SampleBuffer) else SampleBuffer.from_list(samples)


def _render(batch: dict[str, list], spec: Any, text: TextMode, record_columns: list[str]) -> list[bytes | None]:
    out: list[bytes | None] = []
    for i, turns in enumerate(batch_turns(batch, spec)):
        if isinstance(turns, RowError):
            out.append(None)
            continue
        try:
            split_last(turns)
        except RowError:
            out.append(None)
            continue
        if text == "rendered":
            out.append(_encode("".join(f"{PAPER_HEADERS[t.role]}{t.text}\n" for t in turns)))
        else:
            out.append(_encode(repr({c: batch[c][i] for c in record_columns})))
    return out


def _sample_plan(
    pool: Dataset,
    text: TextMode,
    columns: Sequence[str] | None,
    format: FormatName | None,
    format_columns: Sequence[str] | None,
) -> tuple[Dataset, Any, list[str]]:
    """(the pool's columns to read, the format spec, the record columns), after checking the arguments."""
    if text not in LAYOUTS:
        raise InputError(f"unknown text mode {text!r}: expected one of {sorted(LAYOUTS)}")
    spec = detect_format(pool.column_names, format, format_columns)
    record_columns = list(pool.column_names) if columns is None else list(columns)
    missing = [c for c in record_columns if c not in pool.column_names]
    if missing:
        raise InputError(f"columns {missing} are not in the dataset; it has {pool.column_names}")
    read = list(dict.fromkeys([*spec.read_columns, *(record_columns if text == "repr" else [])]))
    return pool.select_columns(read), spec, record_columns


def sample_bytes(
    pool: Dataset,
    text: TextMode = "rendered",
    *,
    columns: Sequence[str] | None = None,
    format: FormatName | None = None,
    format_columns: Sequence[str] | None = None,
    batch_size: int = 1_000,
) -> list[bytes | None]:
    """Each row's sample bytes (see the module docstring); `None` for a row that is never selected."""
    table, spec, record_columns = _sample_plan(pool, text, columns, format, format_columns)
    out: list[bytes | None] = []
    for batch in table.iter(batch_size=batch_size):
        out.extend(_render(batch, spec, text, record_columns))
    return out


_RENDER: tuple[Dataset, Any, TextMode, list[str]] | None = None
_RENDER_ROWS = 2_000  # rows per task: a few MB of samples in flight per worker


def _init_render(table: Dataset, spec: Any, text: TextMode, record_columns: list[str]) -> None:
    global _RENDER
    _RENDER = (table, spec, text, record_columns)


def _render_range(start: int, stop: int) -> tuple[bytes, np.ndarray]:
    """Rows [start, stop) rendered into one blob and their sizes (-1: never selected)."""
    assert _RENDER is not None
    table, spec, text, record_columns = _RENDER
    samples = _render(table[start:stop], spec, text, record_columns)
    sizes = np.array([len(x) if x is not None else -1 for x in samples], dtype=np.int64)
    return b"".join(x for x in samples if x is not None), sizes


def _render_to_file(start: int, stop: int, folder: str) -> tuple[str, np.ndarray]:
    """`_render_range` written to a file in `folder` (a memory file system where there is one): the parent
    reads it back faster than a pickled blob comes through a pipe."""
    blob, sizes = _render_range(start, stop)
    path = os.path.join(folder, f"zip-samples-{os.getpid()}-{start}")
    with open(path, "wb") as f:
        f.write(blob)
    return path, sizes


def sample_buffer(
    pool: Dataset,
    text: TextMode = "rendered",
    *,
    columns: Sequence[str] | None = None,
    format: FormatName | None = None,
    format_columns: Sequence[str] | None = None,
    workers: int = 1,
) -> SampleBuffer:
    """`sample_bytes` into one `SampleBuffer`, rendered by `workers` forked processes (in order, a bounded
    number of blocks in flight, so that memory stays about the samples' size)."""
    table, spec, record_columns = _sample_plan(pool, text, columns, format, format_columns)
    n = len(table)
    ranges = [(a, min(a + _RENDER_ROWS, n)) for a in range(0, n, _RENDER_ROWS)]
    data = bytearray()  # grows in place (large reallocations are remapped, not copied)
    sizes: list[np.ndarray] = []
    if workers <= 1 or len(ranges) < 2 or not _can_fork():
        global _RENDER
        _init_render(table, spec, text, record_columns)
        try:
            for a, b in ranges:
                blob, block = _render_range(a, b)
                data += blob
                sizes.append(block)
        finally:
            _RENDER = None
    else:
        context = multiprocessing.get_context("fork")
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        with tempfile.TemporaryDirectory(dir=shm) as folder, ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_init_render,
            initargs=(table, spec, text, record_columns),
        ) as executor:  # fmt: skip
            pending = deque()
            todo = iter(ranges)
            for a, b in itertools.islice(todo, 2 * workers):
                pending.append(executor.submit(_render_to_file, a, b, folder))
            while pending:
                path, block = pending.popleft().result()
                with open(path, "rb") as f:
                    data += f.read()
                os.unlink(path)
                sizes.append(block)
                for a, b in itertools.islice(todo, 1):
                    pending.append(executor.submit(_render_to_file, a, b, folder))
    every = np.concatenate(sizes) if sizes else np.empty(0, dtype=np.int64)
    return SampleBuffer(data, np.maximum(every, 0), every >= 0)


def set_bytes(samples: Sequence[bytes], text: TextMode = "rendered") -> bytes:
    """The bytes of a set of samples, in the given order: `OPEN + SEP.join(samples) + CLOSE`."""
    open_, sep, close = LAYOUTS[text]
    return open_ + sep.join(samples) + close
