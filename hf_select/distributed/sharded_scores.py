"""Score sidecars read as one pool: which shards there are, their columns, and per-shard steps run here or on Ray.

`ShardedScores.open(folder)` finds the sidecars (`scores-*-of-*.parquet`, see `layout`), checks that they
tile the pool (every row index 0..n-1 exactly once, each shard a contiguous ascending range, none missing)
and reads nothing else. `gather(columns)` reads only those columns (parquet column projection) of every
shard into one in-memory `Dataset` in pool order; `map(fn, args)` runs `fn(path, *args)` for each shard,
in this process or, with `ray=True`, as Ray tasks (`ray.remote`), results in shard order.

Example:
    >>> import pyarrow as pa, tempfile
    >>> from hf_select.distributed.layout import INDEX_COLUMN, shard_ranges, sidecar_name, write_sidecar
    >>> folder = tempfile.mkdtemp()
    >>> for i, rows in enumerate(shard_ranges(5, 2)):
    ...     table = pa.table({INDEX_COLUMN: list(rows), "n_tokens": [float(r * 10) for r in rows]})
    ...     _ = write_sidecar(table, f"{folder}/{sidecar_name(i, 2)}", {"fingerprint": f"fp{i}", "n_shards": 2})
    >>> scores = ShardedScores.open(folder)
    >>> scores.n_rows, scores.fingerprints
    (5, ['fp0', 'fp1'])
    >>> list(scores.gather(["n_tokens"])["n_tokens"])
    [0.0, 10.0, 20.0, 30.0, 40.0]
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .layout import INDEX_COLUMN, read_sidecar_meta

SIDECAR_GLOB = "scores-*-of-*.parquet"


@dataclass(frozen=True)
class ShardedScores:
    """Score sidecars covering a pool, in pool order: `paths[i]` holds rows `ranges[i]`."""

    paths: tuple[Path, ...]
    ranges: tuple[range, ...]
    metas: tuple[dict[str, Any], ...]
    columns: tuple[str, ...]
    """The score columns every shard has (the row-index column left out)."""

    @classmethod
    def open(cls, source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | ShardedScores) -> ShardedScores:
        """The sidecars in a folder (`scores-*-of-*.parquet`, else every `*.parquet`), or the given files."""
        import pyarrow.parquet as pq

        if isinstance(source, ShardedScores):
            return source
        if isinstance(source, str | os.PathLike):
            folder = Path(source)
            if not folder.is_dir():
                raise InputError(f"sharded scores: {folder} is not a folder of score sidecars")
            paths = sorted(folder.glob(SIDECAR_GLOB)) or sorted(folder.glob("*.parquet"))
            if not paths:
                raise InputError(f"sharded scores: {folder} holds no {SIDECAR_GLOB} (or .parquet) files")
        else:
            paths = [Path(p) for p in source]
            if not paths:
                raise InputError("sharded scores: no sidecar files given")
        shards = []
        for path in paths:
            if not path.is_file():
                raise InputError(f"sharded scores: no such sidecar {path}")
            names = pq.read_schema(path).names
            if INDEX_COLUMN not in names:
                raise InputError(f"{path} is not a score sidecar: it has no {INDEX_COLUMN!r} column ({names})")
            index = pq.read_table(path, columns=[INDEX_COLUMN]).column(0).to_numpy()
            if len(index) and (index[0] + len(index) - 1 != index[-1] or (np.diff(index) <= 0).any()):
                raise InputError(f"{path}: its {INDEX_COLUMN!r} is not a contiguous ascending range of rows")
            start = int(index[0]) if len(index) else 0  # an empty shard covers no row
            shards.append((start, path, range(start, start + len(index)), read_sidecar_meta(path), names))
        if all(isinstance(s[3].get("shard"), int) for s in shards):  # shard order, empty shards in place
            shards.sort(key=lambda s: (s[3]["shard"], s[0], str(s[1])))
        else:
            shards.sort(key=lambda s: (s[0], len(s[2]) > 0, str(s[1])))
        _check_tiling(shards)
        common = [c for c in shards[0][4] if c != INDEX_COLUMN and all(c in s[4] for s in shards)]
        return cls(
            paths=tuple(s[1] for s in shards),
            ranges=tuple(s[2] for s in shards),
            metas=tuple(s[3] for s in shards),
            columns=tuple(common),
        )

    @property
    def n_rows(self) -> int:
        return self.ranges[-1].stop if self.ranges else 0

    @property
    def fingerprints(self) -> list[str | None]:
        return [meta.get("fingerprint") for meta in self.metas]

    def describe(self) -> dict[str, Any]:
        """The record's `shards` entry: each sidecar's path, rows and fingerprint."""
        return {
            "n_shards": len(self.paths),
            "paths": [str(p) for p in self.paths],
            "rows": [[r.start, r.stop] for r in self.ranges],
            "fingerprints": self.fingerprints,
        }

    def scorers(self) -> list[dict[str, Any]]:
        """The distinct scorer entries the sidecars' metadata name (`scorer`), in shard order."""
        seen, out = set(), []
        for meta in self.metas:
            entry = meta.get("scorer")
            entry = {"method": entry} if isinstance(entry, str) else entry
            if isinstance(entry, dict) and (key := json.dumps(entry, sort_keys=True, default=str)) not in seen:
                seen.add(key)
                out.append(entry)
        return out

    def check_columns(self, columns: Sequence[str], *, what: str = "column") -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise InputError(f"{what} {missing[0]!r} is not in every score sidecar; they have {list(self.columns)}")

    def gather(self, columns: Sequence[str]) -> Any:
        """Those columns of every shard, after `INDEX_COLUMN` (each row's pool index), in pool order, as one
        in-memory `datasets.Dataset` (only these columns are read)."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        from datasets import Dataset

        columns = list(dict.fromkeys(columns))
        self.check_columns(columns)
        tables = [pq.read_table(path, columns=[INDEX_COLUMN, *columns]) for path in self.paths]
        table = pa.concat_tables(tables).combine_chunks()  # one chunk, as a single-machine pool read whole
        return Dataset(table.replace_schema_metadata(None))

    def take(self, indices: Sequence[int] | np.ndarray, columns: Sequence[str]) -> Any:
        """Those columns of the rows at ascending pool `indices`, as a pyarrow table (read shard by shard)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.check_columns(columns)
        indices = np.asarray(indices, dtype=np.int64)
        parts = []
        for path, rows in zip(self.paths, self.ranges, strict=True):
            inside = indices[(indices >= rows.start) & (indices < rows.stop)] - rows.start
            if len(inside):
                parts.append(pq.read_table(path, columns=list(columns)).take(pa.array(inside)))
        if not parts:
            return pq.read_schema(self.paths[0]).empty_table().select(list(columns))
        return pa.concat_tables(parts).combine_chunks().replace_schema_metadata(None)

    def map(
        self, fn: Callable[..., Any], args: Sequence[tuple[Any, ...]] | None = None, *, ray: bool = False
    ) -> list[Any]:
        """`fn(path, *args[i])` for each shard `i` (no args: `fn(path)`), results in shard order: in this
        process, or as Ray tasks (`fn` must be a module-level function; Ray starts locally, or joins the
        cluster `RAY_ADDRESS` names, when not yet initialised)."""
        args = list(args) if args is not None else [() for _ in self.paths]
        if len(args) != len(self.paths):
            raise ValueError(f"{len(args)} argument tuples for {len(self.paths)} shards")
        if not ray:
            return [fn(str(path), *a) for path, a in zip(self.paths, args, strict=True)]
        remote = ray_remote(fn)
        import ray as ray_module

        return ray_module.get([remote.remote(str(path), *a) for path, a in zip(self.paths, args, strict=True)])


_REMOTE: dict[Callable[..., Any], Any] = {}


def ray_remote(fn: Callable[..., Any]) -> Any:
    """`ray.remote(fn)`, made once per function, Ray initialised first when it is not."""
    try:
        import ray
    except ImportError as err:
        raise InputError("sharded selection on Ray needs ray: pip install 'hf-select[ray]'") from err
    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    if fn not in _REMOTE:
        _REMOTE[fn] = ray.remote(fn)
    return _REMOTE[fn]


def _check_tiling(shards: list[tuple[int, Path, range, dict[str, Any], list[str]]]) -> None:
    """As many shards as their metadata says, and every row index 0..n-1 in exactly one of them."""
    seen: dict[int, Path] = {}
    for _, path, _, meta, _ in shards:
        if (i := meta.get("shard")) is not None and seen.setdefault(i, path) != path:
            raise InputError(f"sharded scores: shard {i} is given twice ({seen[i]} and {path})")
    counts = {s[3].get("n_shards") for s in shards} - {None}
    if len(counts) > 1:
        raise InputError(f"sharded scores: the sidecars come from different shardings (n_shards {sorted(counts)})")
    if counts and (n := counts.pop()) != len(shards):
        have = sorted(s[3].get("shard") for s in shards if s[3].get("shard") is not None)
        missing = sorted(set(range(n)) - set(have))
        raise InputError(f"sharded scores: {len(shards)} sidecars of {n} shards (missing shards {missing[:10]})")
    expected = 0
    for _, path, rows, _, _ in shards:
        if not rows:
            continue
        if rows.start != expected:
            if rows.start < expected:
                raise InputError(f"sharded scores: {path} repeats rows {rows.start}..{min(rows.stop, expected) - 1}")
            gap = f"rows {expected}..{rows.start - 1}"
            raise InputError(f"sharded scores: {gap} are in no sidecar (a shard is missing)")
        expected = rows.stop
    for _, path, rows, meta, _ in shards:
        said = meta.get("rows")  # [start, stop) as `score_shard` writes it, or a count
        if isinstance(said, list) and len(said) == 2 and range(*said) != rows:
            raise InputError(
                f"sharded scores: {path} holds rows {rows.start}..{rows.stop - 1} but its metadata says {said}"
            )
        if isinstance(said, int) and said != len(rows):
            raise InputError(f"sharded scores: {path} holds {len(rows)} rows but its metadata says {said}")


__all__ = ["SIDECAR_GLOB", "ShardedScores", "ray_remote"]
