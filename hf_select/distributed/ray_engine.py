"""Score a pool on a Ray cluster: a pool of scorer actors, one shard per call, one sidecar per shard.

The driver (where `hf-select score --engine ray` runs) plans the shards (`ShardJob.plan`), skips those
whose sidecar is already in the output folder, writes the others' rows as parquet files
(`pool_shards`) in that folder, and hands them out, one per call, to a pool of actors (`ray.util.ActorPool`):
each actor loads the scorer's model once (`num_gpus` each where GPUs are asked for), reads its shard by
path and writes the sidecar by path, so the folder must be on storage every node sees (NFS, a shared
mount). Ray restarts an actor whose process dies and retries its call (`max_restarts`,
`max_task_retries`); sidecars are written atomically, so a shard never appears twice or half-written. A
killed driver loses nothing finished: the re-run scores only the shards without a sidecar.

Example:
    >>> from hf_select import TokenLengthScorer
    >>> scorer = TokenLengthScorer(tokenizer="embedded:smollm2")
    >>> reports = score_with_ray(scorer, pool, "scores/", n_shards=8)  # doctest: +SKIP
    >>> sorted(r["shard"] for r in reports if not r["skipped"])  # doctest: +SKIP
    [0, 1, 2, 3, 4, 5, 6, 7]
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .pool_shards import pool_shard_path, read_pool_shard, write_pool_shards
from .shard_scoring import ShardJob, plan_shards, quiet_progress, score_shard

if TYPE_CHECKING:
    from ..scorers import Scorer

POOL_FOLDER = "pool"
"""Sub-folder of the output where the driver writes the pool shards (removed once every shard is scored)."""
MAX_RESTARTS = 3
"""Restarts of a dead actor, and retries of the call it was running, before the run fails."""


class ShardScorer:
    """A Ray actor: one scorer, its model loaded once, scoring one pool shard file per call."""

    def __init__(self, scorer: Scorer, threads: int) -> None:
        quiet_progress()
        # the Rust tokenizers use every core unless told; an actor owns `threads` of them
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
        self.scorer = scorer

    def score(self, shard_path: str, job: ShardJob, folder: str) -> dict[str, Any]:
        return score_shard(self.scorer, read_pool_shard(shard_path), job, folder)

    def pid(self) -> int:
        return os.getpid()


def actor_resources(
    scorer: Scorer, cluster: Mapping[str, float], *, actors: int | None, gpus_per_actor: float | None
) -> tuple[int, float]:
    """(number of actors, GPUs per actor) for this cluster. `gpus_per_actor=None`: one GPU per actor for a
    local model scorer when the cluster has GPUs, else none (CPU actors). A GPU request the cluster cannot
    meet is an `InputError` naming the numbers (Ray would otherwise wait for the GPUs forever)."""
    gpus, cpus = float(cluster.get("GPU", 0)), float(cluster.get("CPU", 0))
    local_model = scorer.needs_device and getattr(scorer, "backend", "local") == "local"
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if local_model and gpus >= 1 else 0.0
    if gpus_per_actor < 0:
        raise InputError(f"--gpus-per-actor must be at least 0, got {gpus_per_actor}")
    if actors is not None and actors < 1:
        raise InputError(f"--actors must be at least 1, got {actors}")
    if gpus_per_actor > 0:
        n = actors if actors is not None else int(gpus // gpus_per_actor)
        if n < 1 or n * gpus_per_actor > gpus:
            raise InputError(
                f"{max(n, 1)} actor(s) x {gpus_per_actor:g} GPU(s) each need {max(n, 1) * gpus_per_actor:g} GPU(s), "
                f"but the Ray cluster has {gpus:g}: add GPU nodes, ask for fewer actors, or --gpus-per-actor 0 (CPU)"
            )
        return n, gpus_per_actor
    n = actors if actors is not None else max(1, int(cpus))
    if n > cpus:
        raise InputError(f"{n} actors need {n} CPUs, but the Ray cluster has {cpus:g}: ask for at most {int(cpus)}")
    return n, 0.0


def score_with_ray(
    scorer: Scorer,
    pool: Any,
    folder: str | os.PathLike[str],
    *,
    source: Mapping[str, Any] | None = None,
    n_shards: int | None = None,
    batch_size: int = 1000,
    address: str | None = None,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Score every shard of `pool` (a `datasets.Dataset`) missing from `folder` on Ray, as `score_shard`
    does. `address`: a cluster to join (`"auto"`: the one this node belongs to); None starts a local one
    unless Ray is already initialised. `n_shards` defaults to four per actor. `source` (the pool's record,
    as `load_pool` gives it) identifies the pool in the sidecars. `on_shard` receives each shard's report
    as it finishes. Returns the reports of every shard, done before (`skipped`) or now, in shard order."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports sent on the user's behalf
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as err:
        raise InputError(f"--engine ray needs Ray ({err}): pip install 'hf-select[ray]'") from err

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, logging_level="warning")
    folder = Path(folder).resolve()
    try:
        n_actors, gpus = actor_resources(scorer, ray.cluster_resources(), actors=actors, gpus_per_actor=gpus_per_actor)
        n_shards = n_shards or default_shards(len(pool), batch_size, n_actors)
        todo, reports = plan_shards(scorer, pool, folder, source=source, n_shards=n_shards, batch_size=batch_size)
        if todo:
            columns = scorer.format_spec(pool.column_names).columns
            shards = folder / POOL_FOLDER
            paths = write_pool_shards(pool, todo, shards, columns=kept_columns(scorer, pool.column_names, columns))
            threads = 1 if gpus else max(1, int(ray.cluster_resources().get("CPU", 1) // n_actors))
            remote = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)(
                ShardScorer
            )
            workers = [remote.remote(scorer, threads) for _ in range(min(n_actors, len(todo)))]
            try:
                items = list(zip(todo, paths, strict=True))
                calls = ActorPool(workers).map_unordered(
                    lambda actor, item: actor.score.remote(str(item[1]), item[0], str(folder)), items
                )
                for report in calls:
                    reports[report["shard"]] = report
                    if on_shard is not None:
                        on_shard(report)
            finally:
                for worker in workers:
                    ray.kill(worker)
            for path in paths:
                path.unlink(missing_ok=True)
            if shards.exists() and not any(shards.iterdir()):
                shards.rmdir()
        return [reports[i] for i in sorted(reports)]
    finally:
        if started:
            ray.shutdown()


def kept_columns(scorer: Scorer, names: list[str], columns: tuple[str, ...]) -> list[str]:
    """The columns a pool shard needs: the conversation's, when the scorer detects the same format from
    them alone; otherwise every column (the rows then look to the scorer exactly as in the pool)."""
    try:
        same = scorer.format_spec(list(columns)) == scorer.format_spec(names)
    except Exception:  # detection fails without the other columns
        same = False
    return list(columns) if same else list(names)


def default_shards(n_rows: int, batch_size: int, n_actors: int) -> int:
    """Four shards per actor (a finished shard is what a re-run keeps), never more than there are batches."""
    return max(1, min(4 * n_actors, math.ceil(n_rows / batch_size)))


__all__ = ["MAX_RESTARTS", "POOL_FOLDER", "ShardScorer", "actor_resources", "pool_shard_path", "score_with_ray"]
