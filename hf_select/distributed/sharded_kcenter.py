"""k-center over sharded embeddings that do not fit on the driver: one round trip to the shards per pick.

Each shard keeps its usable rows' embeddings and their distance to the selected set (k-center's own
`_State`) in a `ShardKCenter`, in this process or as a Ray actor. A greedy pick is one round trip: every
shard takes in the last pick's vector (a row's distance to it is `torch.cdist` of the two vectors alone,
so it is the one the single machine computes), marks the row when it is its own, and answers with its
farthest open row (distance, pool index, vector); the driver takes the farthest, ties to the lowest pool
index, as the single machine's `argmax` does. The start rows are sent once; one-shot mode asks each shard
for its rows by distance to them (the first `limit`) and merges. The driver holds the pool indices of
the usable rows and the token column (8 bytes a row each); the shards hold their own embeddings. Each
shard measures on the selector's `device` (default: CUDA where the shard runs, when it has one) and the
record names the shards' device: pin `device` to match a single-machine run on another device, since the
CPU and CUDA kernels may break a float32 near-tie differently.

Example:
    >>> import numpy as np, pyarrow as pa, tempfile
    >>> from datasets import Dataset
    >>> from hf_select.distributed.layout import INDEX_COLUMN, sidecar_name, write_sidecar
    >>> from hf_select.distributed.sharded_select import fit_sharded
    >>> from hf_select.select import KCenter
    >>> X, folder = [[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [5.0, 0.0]], tempfile.mkdtemp()
    >>> for i, rows in enumerate([range(0, 2), range(2, 4)]):
    ...     table = pa.table({INDEX_COLUMN: list(rows), "embedding": [X[r] for r in rows]})
    ...     _ = write_sidecar(table, f"{folder}/{sidecar_name(i, 2)}", {"shard": i, "n_shards": 2})
    >>> selector = KCenter(column="embedding", budget=3, init=[0], device="cpu")
    >>> fit_sharded(selector, folder, max_gather_bytes=0).order.tolist()  # one round trip per pick
    [0, 2, 3]
    >>> selector.fit(Dataset.from_dict({"embedding": X})).order.tolist()
    [0, 2, 3]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..select.budget import Budget
from ..select.kcenter import KCenter, _as_matrix, _resolve_device, _State, embedding_matrix, torch
from .layout import INDEX_COLUMN

Best = tuple[float, int, np.ndarray | None]
"""A shard's farthest open row: (its distance, its pool index, its vector); (-inf, -1, None) when none."""
_NONE: Best = (float("-inf"), -1, None)


class ShardKCenter:
    """One shard's side of sharded k-center: its usable rows (those with a token count too, for a token
    budget) and their distances to the selected set."""

    def __init__(
        self, path: str, column: str, token_column: str | None, device: str | None, chunk_size: int | None
    ) -> None:
        from .sharded_select import _read

        shard = _read(path, [column, *([token_column] if token_column else [])])
        X, local = embedding_matrix(shard, column)
        index = np.asarray(shard.with_format("arrow")[INDEX_COLUMN].to_numpy(), dtype=np.int64)
        if token_column is not None:
            from ..select.selection import column_values

            keep = ~np.isnan(column_values(shard, token_column, what="token")[local])
            X, local = X[keep], local[keep]
        self.rows = index[local]
        self.device = _resolve_device(device)
        self.state = _State(_as_matrix(X, self.device), chunk_size) if len(X) else None

    def device_type(self) -> str:
        return self.device.type

    def usable(self) -> np.ndarray:
        """The pool indices of this shard's usable rows (ascending)."""
        return self.rows

    def vectors(self, pool_rows: np.ndarray) -> np.ndarray:
        """The embeddings of those of `pool_rows` this shard holds (float32; any order will do)."""
        mine = self._mine(pool_rows)
        if self.state is None or not len(mine):
            return np.empty((0, 0), dtype=np.float32)
        return self.state.X[torch.as_tensor(mine, device=self.device)].cpu().numpy()

    def start(self, pool_rows: np.ndarray, centers: np.ndarray | None) -> Best:
        """Mark the start rows this shard holds, take in every start row's vector; the farthest open row."""
        if self.state is None:
            return _NONE
        self._mark(pool_rows)
        if centers is not None:  # the minimum over the centers: their order changes no distance
            self.state.update_vectors(torch.as_tensor(centers, device=self.device))
        return self.best()

    def step(self, pool_row: int, center: np.ndarray) -> Best:
        """Take in the last pick (marked when it is this shard's); the farthest open row."""
        if self.state is None:
            return _NONE
        self._mark(np.array([pool_row]))
        self.state.update_vectors(torch.as_tensor(center[None, :], device=self.device))
        return self.best()

    def best(self) -> Best:
        assert self.state is not None
        s = self.state.argmax()
        value = float(self.state.dmin[s])
        if value < 0:  # every row is selected
            return _NONE
        return value, int(self.rows[s]), self.state.X[s].cpu().numpy()

    def farthest(self, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(distances, pool indices) of the open rows, farthest first, ties in pool order (one-shot)."""
        if self.state is None:
            return np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int64)
        dmin = self.state.dmin.cpu().numpy()
        open_rows = np.flatnonzero(dmin >= 0)
        order = open_rows[np.argsort(-dmin[open_rows], kind="stable")][:limit]
        return dmin[order], self.rows[order]

    def _mine(self, pool_rows: np.ndarray) -> np.ndarray:
        """Positions in this shard of those of `pool_rows` it holds."""
        if not len(self.rows):
            return np.empty(0, dtype=np.int64)
        at = np.searchsorted(self.rows, pool_rows)
        return at[(at < len(self.rows)) & (self.rows[np.minimum(at, len(self.rows) - 1)] == pool_rows)]

    def _mark(self, pool_rows: np.ndarray) -> None:
        mine = self._mine(pool_rows)
        if len(mine):
            self.state.mark(torch.as_tensor(mine, device=self.device))  # type: ignore[union-attr]


class _Shards:
    """`ShardKCenter`s called alike, here or as Ray actors; results in shard order."""

    def __init__(self, paths: list[str], args: tuple[Any, ...], ray: bool) -> None:
        self.ray = ray
        if ray:
            from .sharded_scores import ray_remote

            actor = ray_remote(ShardKCenter)
            self.shards = [actor.remote(path, *args) for path in paths]
        else:
            self.shards = [ShardKCenter(path, *args) for path in paths]

    def call(self, method: str, *args: Any) -> list[Any]:
        if not self.ray:
            return [getattr(shard, method)(*args) for shard in self.shards]
        import ray

        return ray.get([getattr(shard, method).remote(*args) for shard in self.shards])


def pick_round_trips(selector: KCenter, scores: Any, budget: Budget, tokens: np.ndarray | None, *, ray: bool) -> Any:
    """`selector.pick_from` with the shards' picks (see the module doc)."""
    token_column = selector.token_column if budget.kind == "tokens" else None
    args = (selector.column, token_column, selector.device, selector.chunk_size)
    shards = _Shards([str(p) for p in scores.paths], args, ray)
    rows = np.concatenate(shards.call("usable"))

    def picks(start: np.ndarray) -> Iterator[int]:
        held = [v for v in shards.call("vectors", start) if len(v)]
        bests = shards.call("start", start, np.concatenate(held) if held else None)
        if selector.mode == "one-shot":  # the open rows by distance to the start rows, ties in pool order
            limit = None if budget.kind == "tokens" else budget.rows(scores.n_rows)
            found = shards.call("farthest", limit)
            values, pool_rows = (np.concatenate([f[i] for f in found]) for i in range(2))
            yield from pool_rows[np.lexsort((pool_rows, -values))].tolist()
            return
        while True:
            _, row, vector = max(bests, key=lambda best: (best[0], -best[1]))  # ties: the lowest pool index
            if vector is None:
                return
            yield row
            bests = shards.call("step", row, vector)

    device = shards.call("device_type")[0]  # where the shards measured the distances
    return selector.pick_from(rows, picks, budget, tokens, n_pool=scores.n_rows, device=device)


__all__ = ["ShardKCenter", "pick_round_trips"]
