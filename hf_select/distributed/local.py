"""Score shards of a pool on this machine, into sidecars: `hf-select score --scores-only` and `--shard i/N`.

Without Ray: one shard alone (`shards=[i]`, a Slurm array task or one of several machines sharing a
folder), or every shard with `num_proc` worker processes, each scoring whole shards (`score_shard`, the
same code path as a Ray actor). Only the score columns are written; shards already in the folder are
skipped, so a re-run after a crash scores only the missing ones.

Example:
    >>> import tempfile
    >>> from datasets import Dataset
    >>> from hf_select import TokenLengthScorer
    >>> pool = Dataset.from_dict({"prompt": ["Hi", "Yo", "Hey"], "response": ["Hello!", "Hey", "Hi!"]})
    >>> scorer = TokenLengthScorer(tokenizer="embedded:smollm2", template="paper")
    >>> reports = score_locally(scorer, pool, tempfile.mkdtemp(), n_shards=3, batch_size=1)
    >>> [(r["shard"], r["rows"], r["skipped"]) for r in reports]
    [(0, [0, 1], False), (1, [1, 2], False), (2, [2, 3], False)]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import lifeline
from .shard_scoring import ShardJob, plan_shards, score_shard

if TYPE_CHECKING:
    from ..scorers import Scorer


def _score_in_worker(args: tuple[Scorer, Any, ShardJob, str]) -> dict[str, Any]:
    import multiprocess

    scorer, pool, job, folder = args
    identity = multiprocess.current_process()._identity  # (k,) in the k-th worker of a pool: its GPU
    return score_shard(scorer, pool, job, folder, rank=identity[0] - 1 if identity else None)


def score_locally(
    scorer: Scorer,
    pool: Any,
    folder: str | os.PathLike[str],
    *,
    source: Mapping[str, Any] | None = None,
    n_shards: int | None = None,
    shards: Sequence[int] | None = None,
    batch_size: int = 1000,
    num_proc: int | None = None,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Score `shards` (default: all) of the `n_shards` (default: `num_proc`, else 1) of `pool` (a
    `datasets.Dataset`) into sidecars in `folder`, skipping those already there. Returns their reports, in
    shard order; `on_shard` receives each as it finishes."""
    workers = max(1, num_proc or 1)
    reports: dict[int, dict[str, Any]]
    todo, reports = plan_shards(
        scorer, pool, folder, source=source, n_shards=n_shards or workers, batch_size=batch_size, shards=shards
    )

    def finished(report: dict[str, Any]) -> None:
        reports[report["shard"]] = report
        if on_shard is not None:
            on_shard(report)

    workers = min(workers, len(todo))
    if workers <= 1:
        for job in todo:
            finished(score_shard(scorer, pool, job, folder))
    else:
        import multiprocess

        scorer.preload()  # forked workers inherit the tokenizer instead of loading it again
        with lifeline.children_exit_with_me(), multiprocess.Pool(workers) as procs:
            for report in procs.imap_unordered(_score_in_worker, [(scorer, pool, job, str(folder)) for job in todo]):
                finished(report)
    return [reports[i] for i in sorted(reports)]


__all__ = ["score_locally"]
