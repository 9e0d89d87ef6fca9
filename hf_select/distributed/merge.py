"""Join score sidecars back into pool order, checking that every row was scored exactly once.

`read_scores(folder)` reads every `scores-i-of-N.parquet` in a folder, checks that they come from one
scoring run (same scorer fingerprint, shard count, batch size and pool), that no shard is missing, and that
their row indices are exactly `0..n-1`, each once; it returns the scores in pool order. `merge_scores`
adds them to the pool: the result equals `pool.map(scorer, batched=True)`, row for row and bit for bit.

Example:
    >>> import tempfile
    >>> from datasets import Dataset
    >>> from hf_select import TokenLengthScorer
    >>> from hf_select.distributed.local import score_locally
    >>> pool = Dataset.from_dict({"prompt": ["Hi", "Yo", "Hey"], "response": ["Hello!", "Hey", "Hi!"]})
    >>> scorer = TokenLengthScorer(tokenizer="embedded:smollm2", template="paper")
    >>> folder = tempfile.mkdtemp()
    >>> _ = score_locally(scorer, pool, folder, n_shards=2, batch_size=1)
    >>> merged = merge_scores(pool, folder)
    >>> list(merged["n_tokens_response"]) == list(pool.map(scorer, batched=True)["n_tokens_response"])
    True
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import InputError
from .layout import INDEX_COLUMN, read_sidecar_meta
from .shard_scoring import same_pool

if TYPE_CHECKING:
    import pyarrow as pa

SIDECAR_PATTERN = re.compile(r"scores-(\d{5})-of-(\d{5})\.parquet")
_SAME = ("fingerprint", "n_shards", "batch_size", "columns")


class Scores(NamedTuple):
    table: pa.Table
    """`INDEX_COLUMN` (0..n-1, in order) and the scorer's columns."""
    meta: dict[str, Any]
    """The metadata of shard 0's sidecar (`scorer`, `fingerprint`, `pool`, ...)."""


def sidecar_files(folder: str | os.PathLike[str]) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"no such folder of score sidecars: {folder}")
    return sorted(p for p in folder.iterdir() if SIDECAR_PATTERN.fullmatch(p.name))


def _ranges(numbers: list[int]) -> str:
    """`0, 2-4, 7`: a list of shard numbers, short."""
    parts, start = [], None
    for k, n in enumerate(numbers):
        if start is None:
            start = n
        if k + 1 == len(numbers) or numbers[k + 1] != n + 1:
            parts.append(str(start) if start == n else f"{start}-{n}")
            start = None
    return ", ".join(parts)


def read_scores(folder: str | os.PathLike[str]) -> Scores:
    """Every sidecar of one scoring run in `folder`, checked and joined in pool order (see the module doc)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sidecar_files(folder)
    if not files:
        raise InputError(f"{folder} holds no score sidecars (scores-iiiii-of-NNNNN.parquet)")
    metas = {path: read_sidecar_meta(path) for path in files}
    first_path, first = files[0], metas[files[0]]
    for path, meta in metas.items():
        for key in (*_SAME, "pool"):
            if (not same_pool(meta["pool"], first["pool"])) if key == "pool" else meta.get(key) != first.get(key):
                raise InputError(
                    f"{path.name} and {first_path.name} come from different scoring runs ({key}: "
                    f"{meta.get(key)!r} vs {first.get(key)!r}); keep one run's sidecars per folder"
                )
    count = first["n_shards"]
    shards = Counter(meta["shard"] for meta in metas.values())
    missing = sorted(set(range(count)) - set(shards))
    if missing:
        raise InputError(
            f"{folder}: shards {_ranges(missing)} of {count} are missing (0-based): score them with "
            f"`hf-select score ... --shard i/{count}` (or re-run the same command), then merge"
        )
    tables = sorted(((metas[path]["rows"][0], pq.read_table(path)) for path in files), key=lambda item: item[0])
    table = pa.concat_tables([t.replace_schema_metadata(None) for _, t in tables])
    index = table.column(INDEX_COLUMN).to_numpy()
    n_rows = first["pool"].get("num_rows", len(index))
    if len(index) != n_rows or not np.array_equal(index, np.arange(n_rows)):
        seen = Counter(index.tolist())
        twice = sorted(i for i, c in seen.items() if c > 1)[:5]
        absent = sorted(set(range(n_rows)) - set(seen))[:5]
        raise InputError(
            f"{folder}: the sidecars do not hold rows 0..{n_rows - 1} once each ({len(index)} rows; "
            f"first rows scored twice: {twice}; first rows missing: {absent})"
        )
    return Scores(table, first)


def merge_scores(pool: Any, folder: str | os.PathLike[str]) -> Any:
    """`pool` (a `datasets.Dataset`) with the sidecars' columns added (replacing columns of the same name),
    in pool order; its provenance (`hf_select.provenance`) gains the sidecars' scorer."""
    from datasets import Dataset, concatenate_datasets

    from ..provenance import derived

    scores = read_scores(folder)
    if len(pool) != scores.table.num_rows:
        raise InputError(
            f"the pool has {len(pool):,} rows but the sidecars in {folder} cover {scores.table.num_rows:,} "
            f"(scored from {scores.meta['pool'].get('dataset', 'another pool')}): merge them with the pool they scored"
        )
    added = scores.table.drop_columns([INDEX_COLUMN])
    kept = pool.remove_columns([c for c in added.column_names if c in pool.column_names])
    merged = concatenate_datasets([kept.flatten_indices() if kept._indices else kept, Dataset(added)], axis=1)
    return derived(merged, pool, scores.meta["scorer"])


__all__ = ["SIDECAR_PATTERN", "Scores", "merge_scores", "read_scores", "sidecar_files"]
