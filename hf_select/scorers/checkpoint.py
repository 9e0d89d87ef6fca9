"""`Scorer.map`: a scorer over a dataset, with progress per micro-batch and optional checkpoints.

A multi-process `map` resumes by itself (each finished shard is a cache file), but a single-process run
writes its one cache file at the end: a crash after hours loses everything. With `checkpoint_every=N` the
rows are scored N at a time, each chunk into its own sidecar Arrow file, written under a temporary name and
renamed when complete; a re-run with the same scorer, dataset, N and batch size loads the finished chunks
and scores only the others. The folder is named by a hash of those, so other settings never reuse them.

Example:
    >>> from datasets import Dataset
    >>> from hf_select import TokenLengthScorer
    >>> ds = Dataset.from_dict({"prompt": ["Hi", "Yo", "Hey"], "response": ["Hello!", "Hey", "Hi!"]})
    >>> scorer = TokenLengthScorer(tokenizer="embedded:smollm2", template="paper")
    >>> scored = scorer.map(ds, checkpoint_every=2, progress=False)  # two sidecar files, then one dataset
    >>> list(scored["n_tokens_response"])
    [2.0, 1.0, 2.0]
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import lifeline, progress
from ..errors import InputError

if TYPE_CHECKING:
    from .base import Scorer


@contextlib.contextmanager
def _progress_settings(show: bool, rows_per_process: int | None) -> Iterator[None]:
    """Environment for this run's bars, inherited by worker processes; restored afterwards."""
    saved = {k: os.environ.get(k) for k in (progress.SWITCH_ENV, progress.TOTAL_ENV)}
    if not show:
        os.environ[progress.SWITCH_ENV] = "0"
    if rows_per_process is not None:
        os.environ[progress.TOTAL_ENV] = str(rows_per_process)
    progress.finish()  # a new run starts a new bar
    try:
        yield
    finally:
        progress.finish()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def checkpoint_folder(scorer: Scorer, dataset: Any, every: int, batch_size: int, root: str | None) -> Path:
    """Where the chunks of this (scorer, dataset, chunk size, batch size) go."""
    from datasets import config
    from datasets.fingerprint import Hasher

    key = hashlib.sha256(f"{Hasher.hash(scorer)}|{dataset._fingerprint}|{every}|{batch_size}".encode()).hexdigest()[:16]
    base = Path(root) if root else Path(config.HF_DATASETS_CACHE) / "hf-select-checkpoints"
    return base / f"{scorer.method}-{key}"


def map_scorer(
    scorer: Scorer,
    dataset: Any,
    *,
    num_proc: int | None = None,
    batch_size: int = 1000,
    checkpoint_every: int | None = None,
    checkpoint_dir: str | None = None,
    show_progress: bool = True,
    **kwargs: Any,
) -> Any:
    """See `Scorer.map`. An `IterableDataset` (streaming) is mapped lazily, without checkpoints."""
    from datasets import IterableDataset, concatenate_datasets

    if isinstance(dataset, IterableDataset):
        if checkpoint_every or (num_proc or 1) > 1:
            raise InputError("checkpoint_every and num_proc need a Dataset, not a streaming IterableDataset")
        return dataset.map(scorer, batched=True, with_indices=True, batch_size=batch_size, **kwargs)
    if checkpoint_every is not None and checkpoint_every < 1:
        raise InputError(f"checkpoint_every must be at least 1 row, got {checkpoint_every}")
    kwargs.setdefault("desc", f"hf-select {scorer.method}")
    if num_proc is not None and num_proc > 1:
        scorer.preload()
    workers = max(1, num_proc or 1)
    options = dict(batched=True, with_indices=True, with_rank=True, num_proc=num_proc, batch_size=batch_size)
    with _progress_settings(show_progress, math.ceil(len(dataset) / workers)), lifeline.children_exit_with_me():
        if not checkpoint_every or len(dataset) <= checkpoint_every:
            return dataset.map(scorer, **options, **kwargs)
        folder = checkpoint_folder(scorer, dataset, checkpoint_every, batch_size, checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        parts = []
        for start in range(0, len(dataset), checkpoint_every):
            end = min(start + checkpoint_every, len(dataset))
            chunk = dataset.select(range(start, end))
            # datasets writes the file under a temporary name and renames it once complete, and loads an
            # existing one instead of scoring again; indices are shifted back to the dataset's rows
            parts.append(
                chunk.map(
                    _Offset(scorer, start), **options, **kwargs,
                    cache_file_name=str(folder / f"rows-{start:012d}-{end:012d}.arrow"),
                )
            )  # fmt: skip
        return concatenate_datasets(parts)


class _Offset:
    """The scorer with the chunk's first row added to the indices `map` passes, so that `strict=True` errors
    name the dataset's row. Pickles (and hashes) as the scorer and the offset."""

    def __init__(self, scorer: Scorer, offset: int) -> None:
        self.scorer, self.offset = scorer, offset

    def __call__(self, batch: Any, indices: Any, rank: Any) -> Any:
        return self.scorer(batch, [i + self.offset for i in indices], rank)
