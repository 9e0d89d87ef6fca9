"""The shared shape of sharded work: contiguous shards, a global row-index column, score sidecars.

A pool of `n` rows is cut into `N` contiguous shards (`shard_ranges`); shard `i` holds rows
`ranges[i]` and every shard file carries `INDEX_COLUMN`, the rows' positions in the whole pool, so that
results can be merged back in pool order whatever order the shards finish in. A *score sidecar* is a small
parquet file with `INDEX_COLUMN` plus a scorer's columns (scores and its error column), written atomically
(temporary name, then rename) with its provenance in the parquet metadata under `META_KEY`.

Example:
    >>> import pyarrow as pa, tempfile
    >>> from hf_select.distributed.layout import (
    ...     INDEX_COLUMN, ShardSpec, read_sidecar_meta, shard_ranges, sidecar_name, write_sidecar)
    >>> shard_ranges(10, 3)
    [range(0, 4), range(4, 7), range(7, 10)]
    >>> ShardSpec.parse("1/3")
    ShardSpec(index=1, count=3)
    >>> path = f"{tempfile.mkdtemp()}/{sidecar_name(1, 3)}"
    >>> table = pa.table({INDEX_COLUMN: [4, 5, 6], "n_tokens": [3.0, 1.0, 2.0]})
    >>> _ = write_sidecar(table, path, {"fingerprint": "abc", "shard": 1, "n_shards": 3})
    >>> read_sidecar_meta(path)["fingerprint"]
    'abc'
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

INDEX_COLUMN = "__row_index__"
META_KEY = b"hf_select"
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def shard_ranges(n_rows: int, n_shards: int) -> list[range]:
    """Contiguous, near-equal shards: the first `n_rows % n_shards` shards get one row more."""
    if n_shards < 1:
        raise InputError(f"the number of shards must be at least 1 (got {n_shards})")
    base, extra = divmod(n_rows, n_shards)
    ranges, start = [], 0
    for i in range(n_shards):
        stop = start + base + (1 if i < extra else 0)
        ranges.append(range(start, stop))
        start = stop
    return ranges


@dataclass(frozen=True)
class ShardSpec:
    """Shard `index` (0-based) of `count`, as given on the command line: `--shard 0/4` ... `--shard 3/4`."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        match = _SPEC.match(str(text))
        if not match:
            raise InputError(f"--shard takes i/N with 0 <= i < N (e.g. 0/4), got {text!r}")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or not 0 <= index < count:
            raise InputError(f"--shard {text}: the shard index must be in 0..{max(count - 1, 0)} (0-based)")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def pool_shard_name(index: int, count: int) -> str:
    return f"pool-{index:05d}-of-{count:05d}.parquet"


def sidecar_name(index: int, count: int) -> str:
    return f"scores-{index:05d}-of-{count:05d}.parquet"


def write_sidecar(table: Any, path: str | os.PathLike[str], meta: Mapping[str, Any]) -> Path:
    """Write a pyarrow table with `meta` (JSON) in its parquet metadata, atomically: a reader (or a re-run
    checking what is done) never sees a half-written sidecar."""
    import pyarrow.parquet as pq

    path = Path(path)
    if INDEX_COLUMN not in table.column_names:
        raise ValueError(f"a sidecar needs the {INDEX_COLUMN!r} column")
    path.parent.mkdir(parents=True, exist_ok=True)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[META_KEY] = json.dumps(dict(meta), sort_keys=True).encode()
    table = table.replace_schema_metadata(schema_meta)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def read_sidecar_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `meta` a sidecar was written with ({} for a parquet file written otherwise)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(META_KEY)
    return json.loads(raw) if raw else {}


__all__ = [
    "INDEX_COLUMN",
    "META_KEY",
    "ShardSpec",
    "pool_shard_name",
    "read_sidecar_meta",
    "shard_ranges",
    "sidecar_name",
    "write_sidecar",
]
