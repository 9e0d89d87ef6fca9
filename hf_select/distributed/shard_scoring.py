"""Score one shard of a pool into a score sidecar: the one scoring code path of every sharded run.

`hf-select score --engine ray` (an actor per worker), `hf-select score --shard i/N` (one process, e.g. a
Slurm array task) and `hf-select score --scores-only` (this machine) all call `score_shard`. It applies
the scorer exactly as `ds.map(scorer, batched=True, with_indices=True, batch_size=B)` does over the whole
pool: shards are cut on multiples of the batch size (`batch_ranges`), so every batch holds the same rows
as in the single-process run and batch-dependent work (the micro-batches and padding of a model scorer)
is identical, bit for bit. The sidecar (`layout.write_sidecar`: temporary name, then rename) holds
`INDEX_COLUMN`, the score columns and the error column; its metadata (`sidecar_meta`) says which scorer,
shard, rows and pool made it, so that a re-run skips it (`existing_sidecar`) and `merge` can check it.

Example:
    >>> import tempfile
    >>> from datasets import Dataset
    >>> from hf_select import TokenLengthScorer
    >>> from hf_select.distributed.layout import ShardSpec, sidecar_name
    >>> pool = Dataset.from_dict({"prompt": ["Hi", "Yo", "Hey"], "response": ["Hello!", "Hey", "Hi!"]})
    >>> scorer = TokenLengthScorer(tokenizer="embedded:smollm2", template="paper")
    >>> batch_ranges(3, 2, batch_size=2)
    [range(0, 2), range(2, 3)]
    >>> out = tempfile.mkdtemp()
    >>> job = ShardJob(ShardSpec(1, 2), range(2, 3), batch_size=2, pool={"num_rows": 3})
    >>> report = score_shard(scorer, pool, job, out)
    >>> report["skipped"], report["rows"]
    (False, [2, 3])
    >>> import pyarrow.parquet as pq
    >>> pq.read_table(f"{out}/{sidecar_name(1, 2)}").column("n_tokens_response").to_pylist()
    [2.0]
    >>> score_shard(scorer, pool, job, out)["skipped"]  # a re-run finds it done
    True
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__, progress
from ..errors import InputError
from .layout import INDEX_COLUMN, ShardSpec, read_sidecar_meta, shard_ranges, sidecar_name, write_sidecar

if TYPE_CHECKING:
    import pyarrow as pa

    from ..scorers import Scorer

FORMAT_VERSION = 1
"""`format` in a sidecar's metadata: bumped if the sidecar layout changes."""


def batch_ranges(n_rows: int, n_shards: int, batch_size: int) -> list[range]:
    """`n_shards` contiguous shards made of whole `batch_size` batches (the last batch may be short): the
    batches of `ds.map(batch_size=...)` over the whole pool, shared out as `layout.shard_ranges` shares
    rows. A shard is empty when there are fewer batches than shards."""
    if batch_size < 1:
        raise InputError(f"the batch size must be at least 1, got {batch_size}")
    n_batches = math.ceil(n_rows / batch_size)
    return [
        range(min(r.start * batch_size, n_rows), min(r.stop * batch_size, n_rows))
        for r in shard_ranges(n_batches, n_shards)
    ]


def pool_key(source: Mapping[str, Any]) -> dict[str, Any]:
    """The pool's source record as sidecars keep it: without the per-machine fields (`datasets`'
    fingerprint of a file pool depends on the cache path)."""
    return {k: v for k, v in source.items() if k not in ("fingerprint", "scored_copy")}


def same_pool(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two sidecars' `pool` records name the same rows: same row count, split, config, revision and
    `--limit`, and the same file digest; the path as typed only when there is no digest (a Hub id or a
    `save_to_disk` folder), so machines that mount the pool at different paths agree."""
    keys = ["num_rows", "split", "config", "revision", "limit", "sha256"]
    if not (a.get("sha256") and b.get("sha256")):
        keys.append("dataset")
    return all(a.get(k) == b.get(k) for k in keys)


@dataclass(frozen=True)
class ShardJob:
    """Shard `spec` of a pool: its `rows`, the `map` batch size, and the pool's identity (`pool_key`)."""

    spec: ShardSpec
    rows: range
    batch_size: int
    pool: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def plan(cls, n_rows: int, n_shards: int, batch_size: int, pool: Mapping[str, Any]) -> list[ShardJob]:
        """Every shard of a pool of `n_rows`."""
        ranges = batch_ranges(n_rows, n_shards, batch_size)
        return [cls(ShardSpec(i, n_shards), r, batch_size, dict(pool)) for i, r in enumerate(ranges)]

    @property
    def name(self) -> str:
        return sidecar_name(self.spec.index, self.spec.count)


def sidecar_meta(scorer: Scorer, job: ShardJob) -> dict[str, Any]:
    """The metadata of a sidecar (see README, "More than one machine", for every key)."""
    return {
        "format": FORMAT_VERSION,
        "hf_select": __version__,
        "scorer": scorer.describe(),
        "fingerprint": scorer.fingerprint(),
        "columns": list(scorer.columns_added),
        "error_column": scorer.error_column,
        "shard": job.spec.index,
        "n_shards": job.spec.count,
        "rows": [job.rows.start, job.rows.stop],
        "batch_size": job.batch_size,
        "pool": job.pool,
    }


def existing_sidecar(scorer: Scorer, job: ShardJob, folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The metadata of this shard's finished sidecar in `folder`, None when there is none. A sidecar made by
    another scorer configuration, from other rows or another pool is an `InputError`, never silently reused
    or replaced: the folder belongs to one scoring run."""
    path = Path(folder) / job.name
    if not path.exists():
        return None
    meta = read_sidecar_meta(path)
    fingerprint = scorer.fingerprint()
    if meta.get("fingerprint") != fingerprint:
        raise InputError(
            f"{path} was scored with another scorer configuration (fingerprint {meta.get('fingerprint')}, "
            f"this run {fingerprint}): use another output folder, or --overwrite to score again"
        )
    wanted = {"rows": [job.rows.start, job.rows.stop], "batch_size": job.batch_size, "pool": job.pool}
    for key, value in wanted.items():
        if (not same_pool(meta.get(key) or {}, value)) if key == "pool" else meta.get(key) != value:
            raise InputError(
                f"{path} has {key}={meta.get(key)!r} but this run's shard {job.spec} has {key}={value!r}: "
                "another pool, --shards or --batch-size wrote this folder; use another output folder or --overwrite"
            )
    return meta


def plan_shards(
    scorer: Scorer,
    pool: Any,
    folder: str | os.PathLike[str],
    *,
    source: Mapping[str, Any] | None,
    n_shards: int,
    batch_size: int,
    shards: Sequence[int] | None = None,
) -> tuple[list[ShardJob], dict[int, dict[str, Any]]]:
    """(the jobs of `shards` (default: all) still to score, {shard: report} of those already in `folder`).
    `source` is the pool's record (`load_pool`); None: what `hf_select.provenance` remembers of `pool`."""
    from ..provenance import provenance_of

    identity = pool_key(source if source is not None else provenance_of(pool)[0])
    jobs = ShardJob.plan(len(pool), n_shards, batch_size, identity)
    wanted = list(range(n_shards)) if shards is None else list(shards)
    for i in wanted:
        if not 0 <= i < n_shards:
            raise InputError(f"shard {i} does not exist: there are {n_shards} (0..{n_shards - 1})")
    done, todo = {}, []
    for job in (jobs[i] for i in wanted):
        if existing_sidecar(scorer, job, folder) is not None:
            done[job.spec.index] = {"shard": job.spec.index, "rows": [job.rows.start, job.rows.stop],
                                    "skipped": True, "seconds": 0.0}  # fmt: skip
        else:
            todo.append(job)
    if todo:
        scorer.prepare_pool(pool)  # once, on the driver: workers and actors receive what it prepared
    return todo, done


def batches(table: pa.Table, start: int, batch_size: int) -> Iterator[tuple[int, pa.Table]]:
    """(global position of the first row, rows) of each `map` batch in a shard that starts at row `start`."""
    offset = 0
    while offset < table.num_rows:
        length = min(batch_size - (start + offset) % batch_size, table.num_rows - offset)
        yield start + offset, table.slice(offset, length)
        offset += length


def score_table(scorer: Scorer, table: pa.Table, start: int, batch_size: int, rank: int | None = None) -> pa.Table:
    """Score the rows of `table`, which are rows `start...` of the pool, batch by batch as `ds.map` would:
    a table of `INDEX_COLUMN` and the scorer's columns, typed as `ds.map` types them."""
    import numpy as np
    import pyarrow as pa

    parts: dict[str, list[Any]] = {name: [] for name in scorer.columns_added}
    for first, batch in batches(table, start, batch_size):
        indices = list(range(first, first + batch.num_rows))
        out = scorer(batch.to_pydict(), indices, rank)
        for name in parts:
            parts[name].append(out[name])
    n = table.num_rows
    columns: dict[str, Any] = {INDEX_COLUMN: pa.array(np.arange(start, start + n, dtype=np.int64))}
    for name in scorer.score_columns:
        columns[name] = pa.array(np.concatenate(parts[name]) if n else np.empty(0), type=pa.float64())
    for name in scorer.vector_columns:
        vectors = [row for part in parts[name] for row in part]
        columns[name] = pa.array([np.asarray(v, dtype=np.float32) for v in vectors], type=pa.list_(pa.float32()))
    errors = [str(e) for part in parts[scorer.error_column] for e in part]
    columns[scorer.error_column] = pa.array(errors, type=pa.string())
    return pa.table(columns)


def score_shard(
    scorer: Scorer,
    source: Any,
    job: ShardJob,
    folder: str | os.PathLike[str],
    *,
    rank: int | None = None,
) -> dict[str, Any]:
    """Score shard `job` of a pool into `folder/scores-i-of-N.parquet`, unless that sidecar is already there
    (then nothing runs). `source` is the whole pool (a `datasets.Dataset`, read at `job.rows`) or the
    shard's own rows (a `pyarrow.Table`, e.g. a pool shard file read by a Ray actor). Returns a report:
    shard, rows, whether it was skipped, seconds, and the process that scored it."""
    report = {"shard": job.spec.index, "rows": [job.rows.start, job.rows.stop], "pid": os.getpid()}
    if existing_sidecar(scorer, job, folder) is not None:
        return {**report, "skipped": True, "seconds": 0.0}
    t0 = time.perf_counter()
    table = shard_rows(source, job)
    scores = score_table(scorer, table, job.rows.start, job.batch_size, rank)
    meta = {**sidecar_meta(scorer, job), "worker": {"host": socket.gethostname(), "pid": os.getpid()}}
    write_sidecar(scores, Path(folder) / job.name, meta)
    return {**report, "skipped": False, "seconds": time.perf_counter() - t0}


def shard_rows(source: Any, job: ShardJob) -> pa.Table:
    """The shard's rows as an Arrow table: sliced from a whole-pool `Dataset`, or a shard table checked
    against the job (its `INDEX_COLUMN` must be exactly the shard's rows)."""
    import pyarrow as pa

    if isinstance(source, pa.Table):
        if INDEX_COLUMN in source.column_names:
            index = source.column(INDEX_COLUMN).to_pylist()
            if index != list(job.rows):
                raise InputError(
                    f"pool shard {job.spec} holds rows {index[:1]}..{index[-1:]} ({len(index)}), expected "
                    f"{job.rows.start}..{job.rows.stop - 1}: it was written for another --shards or --batch-size"
                )
            source = source.drop_columns([INDEX_COLUMN])
        if source.num_rows != len(job.rows):
            raise InputError(f"pool shard {job.spec} has {source.num_rows} rows, expected {len(job.rows)}")
        return source
    if job.rows.stop > len(source):
        raise InputError(f"shard {job.spec} needs rows up to {job.rows.stop}, but the pool has {len(source)}")
    return source.with_format("arrow")[job.rows.start : job.rows.stop]


def quiet_progress() -> None:
    """No progress bars in this process (a Ray actor's output goes to the driver's log, line by line)."""
    os.environ[progress.SWITCH_ENV] = "0"


__all__ = [
    "FORMAT_VERSION",
    "ShardJob",
    "batch_ranges",
    "existing_sidecar",
    "plan_shards",
    "pool_key",
    "same_pool",
    "score_shard",
    "score_table",
    "sidecar_meta",
]
