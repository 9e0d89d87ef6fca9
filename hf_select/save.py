"""Write a selection folder: `data/` parquet shards, `selection.json`, and optionally the scored pool.

Example:
    >>> from hf_select import select
    >>> from hf_select.save import save_selection
    >>> sel = select.top_k(scored, "n_tokens", 1000)  # doctest: +SKIP
    >>> save_selection(sel.dataset, "out/longest-1000", sel.record)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from datasets import Dataset

from .record import SelectionRecord

MAX_SHARD_BYTES = 500 << 20


def write_parquet_shards(ds: Dataset, folder: Path, split: str = "train") -> list[Path]:
    """`{split}-00000-of-0000N.parquet` shards of at most ~500 MB each, the layout the Hub expects."""
    folder.mkdir(parents=True, exist_ok=True)
    n_shards = max(1, math.ceil(ds.data.nbytes * (len(ds) / max(1, len(ds.data))) / MAX_SHARD_BYTES))
    paths = []
    for i in range(n_shards):
        path = folder / f"{split}-{i:05d}-of-{n_shards:05d}.parquet"
        ds.shard(num_shards=n_shards, index=i, contiguous=True).to_parquet(str(path))
        paths.append(path)
    return paths


def save_selection(
    subset: Dataset,
    path: str | os.PathLike[str],
    record: SelectionRecord,
    scores: Dataset | None = None,
) -> Path:
    """Write `subset` and its record (and the whole scored pool under `scores/`, when given) to `path`."""
    folder = Path(path)
    write_parquet_shards(subset, folder / "data")
    if scores is not None:
        write_parquet_shards(scores, folder / "scores")
    record.save(folder / "selection.json")
    return folder


def load_selection_folder(path: str | os.PathLike[str], config: str = "data") -> Dataset:
    """The subset (`config="data"`) or the scored pool (`config="scores"`) of a selection folder."""
    from datasets import load_dataset

    files = sorted(str(p) for p in (Path(path) / config).glob("*.parquet"))
    if not files:
        from .errors import InputError

        raise InputError(f"{path} has no {config}/ parquet files")
    return load_dataset("parquet", data_files=files, split="train")
