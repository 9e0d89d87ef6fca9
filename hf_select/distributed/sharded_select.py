"""Selection on sharded scores, equal to the single-machine selection on the merged pool.

`Selector.fit_sharded(scores)` runs here. Every selector keeps its own `pick` and record: this module only
builds, from the score sidecars (`ShardedScores`), the table that `pick` reads on the driver, the same
rows in the same order as the merged pool, so the indices, their order, the budget behaviour (counts,
fractions, token budgets, underfill notes), ties (pool order) and NaN handling are the single machine's
by construction. What each method reads, and where the work runs:

- **top-k / ifd**: each shard ranks its own rows (a step per shard, a Ray task with `ray=True`) and sends
  its head: the first `n` eligible rows for a count or fraction budget; for a token budget the rows up to
  and including the first whose running token sum passes the budget. The global head is inside the union
  of the shards' heads (its rows from one shard are that shard's head), and a shard sends all its
  eligible rows whenever the budget cannot be met, so the driver's ranking of the union, with every other
  row's score unknown, cuts the same rows and raises the same budget errors (token sums are exact for
  whole-number token counts). The driver holds the token column (8 bytes a row, for the record's totals).
- **threshold, random (controls: the same seeds over global indices), within-clusters, centroid**: the
  driver gathers the columns they read (score, cluster, tokens: 8 bytes a row each; cluster labels as
  stored) with parquet column projection, and runs `pick`.
- **kmeans**: the shards count their usable embeddings; the driver draws faiss's own seeded training
  sample (`KMeans.training_sample`) over the pool's usable rows, fetches only those vectors
  (`max_points_per_centroid` x K rows), trains, and each shard assigns its rows to the centroids; the
  cluster columns (16 bytes a row) and the score and token columns come back to the driver for the quotas.
- **kcenter**: the embeddings are gathered on the driver when they fit (rows x dim x 4 bytes, at most
  `max_gather_bytes`) and the greedy runs there, exactly as on one machine; past that, the shards keep
  them and each pick is one round trip to the shards (`sharded_kcenter`).

Example:
    >>> import numpy as np, pyarrow as pa, tempfile
    >>> from datasets import Dataset
    >>> from hf_select.distributed.layout import INDEX_COLUMN, shard_ranges, sidecar_name, write_sidecar
    >>> from hf_select.select import TopK
    >>> scores, folder = np.array([3.0, 9.0, np.nan, 9.0, 1.0, 7.0]), tempfile.mkdtemp()
    >>> for i, rows in enumerate(shard_ranges(len(scores), 3)):
    ...     table = pa.table({INDEX_COLUMN: list(rows), "ce": scores[list(rows)]})
    ...     _ = write_sidecar(table, f"{folder}/{sidecar_name(i, 3)}", {"fingerprint": f"fp{i}", "n_shards": 3})
    >>> TopK(column="ce", budget=3).fit_sharded(folder).indices.tolist()
    [1, 3, 5]
    >>> TopK(column="ce", budget=3).fit(Dataset.from_dict({"ce": scores})).indices.tolist()
    [1, 3, 5]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import Dataset

from ..errors import InputError
from ..provenance import provenance_of
from ..select import KCenter, KMeansSelect, Random, Selection, Selector, Threshold, TopK, WithinClusters
from ..select.budget import Budget
from ..select.selection import column_values, ranked, token_values
from ..select.threshold import in_range
from .layout import INDEX_COLUMN
from .sharded_scores import ShardedScores

SHARDED = (TopK, Threshold, Random, WithinClusters, KMeansSelect, KCenter)
"""The selectors that select from sharded scores (their subclasses too: ifd, centroid)."""
MAX_GATHER_BYTES = 8 << 30
"""k-center gathers the embeddings on the driver up to this size (float32); past it, one round trip a pick."""


def fit_sharded(
    selector: Selector,
    scores: Any,
    *,
    pool: Dataset | None = None,
    ray: bool = False,
    source: Mapping[str, Any] | None = None,
    scorers: Sequence[Any] | None = None,
    max_gather_bytes: int = MAX_GATHER_BYTES,
) -> Selection:
    """`selector`'s selection from sharded scores (see the module doc): what `selector.fit(merged pool)`
    gives, with the record's parameters ending in `shards` (paths, rows, fingerprints). `pool`: the pool's
    rows (as many as the sidecars cover), for the subset; else the subset holds each row's pool index
    (`INDEX_COLUMN`). The subset has every sidecar column, as the merged pool's subset would."""
    if not isinstance(selector, SHARDED):
        names = sorted({c.method for c in SHARDED} | {"ifd", "centroid"})
        raise InputError(f"{selector.method} does not select from sharded scores; these do: {', '.join(names)}")
    scores = ShardedScores.open(scores)
    if pool is not None and len(pool) != scores.n_rows:
        raise InputError(f"the pool has {len(pool):,} rows but the score sidecars cover {scores.n_rows:,}")
    budget = selector.requested_budget()
    token = [selector.token_column] if selector.token_column in scores.columns else []
    pick, made = selector.pick, []
    if isinstance(selector, TopK):
        table = _top_k_table(selector, scores, budget, token, ray)
    elif isinstance(selector, KMeansSelect):
        table, km = _kmeans_table(selector, scores, token, ray)
        made = [km.output_column, km.distance_column]

        def pick(table: Dataset, budget: Budget, tokens: np.ndarray | None) -> Any:
            return selector.pick_clustered(table, km, budget, tokens)

    elif isinstance(selector, KCenter) and not _fits(scores, selector.column, max_gather_bytes):
        table = scores.gather(token)

        def pick(table: Dataset, budget: Budget, tokens: np.ndarray | None) -> Any:
            from .sharded_kcenter import pick_round_trips

            return pick_round_trips(selector, scores, budget, tokens, ray=ray)

    else:
        columns = read_columns(selector)
        scores.check_columns(columns)
        table = scores.gather([*columns, *token])
    known_source, known_scorers = provenance_of(pool) if pool is not None else (None, [])
    if source is None:
        source = known_source or _source(scores)
    if scorers is None:
        scorers = [*known_scorers, *scores.scorers()]
    tokens = token_values(table, budget, selector.token_column)
    picked = pick(table, budget, tokens)
    picked.details["shards"] = scores.describe()
    selection = selector.complete(table, picked, budget, tokens, source=source, scorers=scorers)
    selection.dataset = _subset(pool, scores, selection.indices, selection.dataset, made=made)
    return selection


def read_columns(selector: Selector) -> list[str]:
    """The pool columns a selector's `pick` reads besides the token column: its fields named `*column`."""
    names = []
    for f in dataclasses.fields(selector):
        value = getattr(selector, f.name)
        if f.name.endswith("column") and f.name != "token_column" and isinstance(value, str):
            names.append(value)
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------------------
# top-k: each shard's head, merged on the driver
# ---------------------------------------------------------------------------------------------------


def shard_head(
    path: str, column: str, token_column: str | None, largest: bool, bounds: tuple[float | None, float | None],
    rows: int | None, token_budget: int | None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(pool indices, scores) of a shard's head in its own ranking (see the module doc)."""
    shard = _read(path, [column, *([token_column] if token_column else [])])
    values = column_values(shard, column)
    eligible = in_range(values, *bounds)
    if token_budget is None:
        head = ranked(values, eligible, largest=largest)[:rows]
    else:  # as TopK.pick: a token budget never takes a row without a token count
        tokens = column_values(shard, token_column, what="token")  # type: ignore[arg-type]
        order = ranked(values, eligible & ~np.isnan(tokens), largest=largest)
        head = order[: int(np.searchsorted(np.cumsum(tokens[order]), token_budget, side="right")) + 1]
    return _index(shard)[head], values[head]


def _top_k_table(selector: TopK, scores: ShardedScores, budget: Budget, token: list[str], ray: bool) -> Dataset:
    scores.check_columns([selector.column, *token])
    in_range(np.empty(0), selector.min_value, selector.max_value)  # min above max fails before any shard reads
    table = scores.gather(token)
    by_tokens = budget.kind == "tokens"
    token_values(table, budget, selector.token_column)  # a token budget without a token column fails here
    if selector.column in token:  # ranking by the token column, gathered anyway: the driver ranks it
        return table
    rows = None if by_tokens else budget.rows(scores.n_rows)
    args = (
        selector.column, token[0] if by_tokens else None, selector.largest, (selector.min_value, selector.max_value),
        rows, int(budget.value) if by_tokens else None,
    )  # fmt: skip
    values = np.full(scores.n_rows, np.nan)
    for index, head in scores.map(shard_head, [args] * len(scores.paths), ray=ray):
        values[index] = head
    return _with_column(table, selector.column, values)


# ---------------------------------------------------------------------------------------------------
# k-means: faiss's training sample gathered, every shard assigned where it lies
# ---------------------------------------------------------------------------------------------------


def shard_usable(path: str, column: str) -> tuple[int, int]:
    """(usable embeddings, their dimension (0 when none)) of a shard."""
    from ..cluster import embedding_array

    X, _ = embedding_array(_read(path, [column]), column)
    return len(X), int(X.shape[1]) if len(X) else 0


def shard_vectors(path: str, column: str, positions: np.ndarray) -> np.ndarray:
    """The usable embeddings at `positions` (among the shard's usable rows)."""
    from ..cluster import embedding_array

    X, _ = embedding_array(_read(path, [column]), column)
    return np.ascontiguousarray(X[positions])


def shard_assign(path: str, km: Any, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pool indices of the usable rows, their clusters, their distances) under `km`'s centroids."""
    from ..cluster import embedding_array

    shard = _read(path, [km.column])
    X, rows = embedding_array(shard, km.column)
    if not len(X):
        return rows, rows.copy(), np.empty(0, dtype=np.float64)
    labels, distances = km.assign(X, n_rows=n_rows)
    return _index(shard)[rows], labels, distances


def _kmeans_table(selector: KMeansSelect, scores: ShardedScores, token: list[str], ray: bool) -> tuple[Dataset, Any]:
    km = selector.kmeans()
    other = [selector.score_column] if selector.score_column is not None else []
    scores.check_columns([km.column], what="embedding column")
    scores.check_columns(other)
    counts = scores.map(shard_usable, [(km.column,)] * len(scores.paths), ray=ray)
    dims = sorted({d for _, d in counts if d})
    if len(dims) > 1:
        raise InputError(f"embedding column {km.column!r} has vectors of different lengths: {dims[:5]}")
    sizes = np.array([c for c, _ in counts], dtype=np.int64)
    m = int(sizes.sum())
    if m < km.n_clusters:
        raise InputError(f"k-means with {km.n_clusters:,} clusters needs at least that many rows, got {m:,}")
    sample = km.training_sample(m)
    positions = np.arange(m, dtype=np.int64) if sample is None else sample
    starts = np.concatenate([[0], np.cumsum(sizes)])
    shard_of = np.searchsorted(starts, positions, side="right") - 1
    wanted = [positions[shard_of == s] - starts[s] for s in range(len(sizes))]
    parts = scores.map(shard_vectors, [(km.column, w) for w in wanted], ray=ray)
    X = np.empty((len(positions), dims[0] if dims else 0), dtype=np.float32)
    for s, part in enumerate(parts):
        if len(part):  # a shard without usable rows has no dimension
            X[shard_of == s] = part
    km.train(X, n_rows=m)
    assigned = scores.map(shard_assign, [(km, m)] * len(scores.paths), ray=ray)
    rows, labels, distances = (np.concatenate([a[i] for a in assigned]) for i in range(3))
    km.count(scores.n_rows, labels)
    return km.with_columns(scores.gather([*other, *token]), rows, labels, distances), km


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------


def _fits(scores: ShardedScores, column: str, limit: int) -> bool:
    """Whether an embedding column's float32 matrix (counted from the parquet metadata) is within `limit` bytes."""
    import pyarrow.parquet as pq

    scores.check_columns([column], what="embedding column")
    values = 0
    for path in scores.paths:
        meta = pq.ParquetFile(path).metadata
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                chunk = group.column(c)
                if chunk.path_in_schema.split(".")[0] == column:
                    values += chunk.num_values
    return values * 4 <= limit


def _read(path: str, columns: Sequence[str]) -> Dataset:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=list(dict.fromkeys([INDEX_COLUMN, *columns])))
    return Dataset(table.combine_chunks().replace_schema_metadata(None))


def _index(shard: Dataset) -> np.ndarray:
    return np.asarray(shard.with_format("arrow")[INDEX_COLUMN].to_numpy(), dtype=np.int64)


def _with_column(table: Dataset, name: str, values: np.ndarray) -> Dataset:
    return Dataset(table.data.table.append_column(name, pa.array(values)))


def _source(scores: ShardedScores) -> dict[str, Any]:
    """The sidecars' recorded source when they name one, else the sidecars themselves."""
    for meta in scores.metas:
        if isinstance(meta.get("source"), dict):
            return dict(meta["source"])
    return {"dataset": None, "sharded_scores": str(scores.paths[0].parent), "num_rows": scores.n_rows}


def _subset(
    pool: Dataset | None, scores: ShardedScores, indices: np.ndarray, chosen: Dataset, *, made: Sequence[str]
) -> Dataset:
    """The selected rows as `fit` on the scored pool keeps them: the pool's columns (without a pool, each
    row's pool index), every sidecar column the pool lacks, then the columns the selector made (k-means'
    clusters) in place of any of that name."""
    subset = pool.select(indices) if pool is not None else Dataset.from_dict({INDEX_COLUMN: indices.tolist()})
    stale = [c for c in made if c in subset.column_names]
    if stale:
        subset = subset.remove_columns(stale)
    missing = [c for c in scores.columns if c not in subset.column_names and c not in made]
    if missing:
        rows = scores.take(indices, missing)
        for name in missing:
            subset = subset.add_column(name, rows.column(name))
    for name in made:
        subset = subset.add_column(name, chosen.with_format("arrow")[name])
    return subset


__all__ = ["MAX_GATHER_BYTES", "SHARDED", "fit_sharded", "read_columns"]
