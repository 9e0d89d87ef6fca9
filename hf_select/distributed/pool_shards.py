"""A pool as parquet shard files with the global row index, for workers that read their shard by path.

The driver of a Ray run writes each shard's rows (only the columns the scorer reads, plus `INDEX_COLUMN`)
to `pool-i-of-N.parquet` in a folder every node can read; each actor then reads its own shard, so the
pool never travels through the driver or Ray's object store. A shard file carries the shard's rows and
the pool's identity in its metadata, so a re-run reuses it only when both match.

Example:
    >>> import tempfile
    >>> from datasets import Dataset
    >>> from hf_select.distributed.shard_scoring import ShardJob
    >>> pool = Dataset.from_dict({"prompt": ["a", "b", "c"], "response": ["x", "y", "z"], "id": [7, 8, 9]})
    >>> jobs = ShardJob.plan(3, 2, batch_size=1, pool={"dataset": "demo"})
    >>> paths = write_pool_shards(pool, jobs, tempfile.mkdtemp(), columns=["prompt", "response"])
    >>> read_pool_shard(paths[1]).to_pydict()
    {'__row_index__': [2], 'prompt': ['c'], 'response': ['z']}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .layout import INDEX_COLUMN, pool_shard_name, read_sidecar_meta, write_sidecar

if TYPE_CHECKING:
    import pyarrow as pa

    from .shard_scoring import ShardJob


def pool_shard_path(folder: str | os.PathLike[str], job: ShardJob) -> Path:
    return Path(folder) / pool_shard_name(job.spec.index, job.spec.count)


def _meta(job: ShardJob) -> dict[str, Any]:
    return {"kind": "pool-shard", "shard": job.spec.index, "n_shards": job.spec.count,
            "rows": [job.rows.start, job.rows.stop], "pool": job.pool}  # fmt: skip


def write_pool_shards(
    pool: Any, jobs: Sequence[ShardJob], folder: str | os.PathLike[str], *, columns: Sequence[str] | None = None
) -> list[Path]:
    """Write each job's rows of `pool` (a `datasets.Dataset`) as a parquet shard in `folder` (atomically),
    keeping a file already there for the same rows of the same pool. Returns the paths, in job order."""
    import numpy as np
    import pyarrow as pa

    paths = []
    for job in jobs:
        path = pool_shard_path(folder, job)
        paths.append(path)
        if path.exists() and read_sidecar_meta(path) == json.loads(json.dumps(_meta(job))):
            continue
        table = pool.with_format("arrow")[job.rows.start : job.rows.stop]
        if columns is not None:
            table = table.select(list(columns))
        index = pa.array(np.arange(job.rows.start, job.rows.stop, dtype=np.int64))
        write_sidecar(table.add_column(0, INDEX_COLUMN, index), path, _meta(job))
    return paths


def read_pool_shard(path: str | os.PathLike[str]) -> pa.Table:
    """A pool shard file's rows, with `INDEX_COLUMN` (`score_shard` checks it against its job)."""
    import pyarrow.parquet as pq

    return pq.read_table(path)


__all__ = ["pool_shard_path", "read_pool_shard", "write_pool_shards"]
