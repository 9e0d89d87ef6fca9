"""Selection on sharded scores against the single machine: wall time, driver peak memory, equal indices.

A random pool of `--rows` rows (n_tokens, ce with NaNs and ties, a cluster label, and for k-means a
`--dim`-d float32 embedding on the first `--kmeans-rows` rows) is written as `--shards` score sidecars and
as one parquet file. Each selector runs as `fit` on the pool read from the one file (memory-mapped) and as
`fit_sharded` on the sidecars (local per-shard steps, this process); the indices must be equal.

    python benchmarks/bench_sharded_select.py [--rows 2000000] [--shards 8] [--kmeans-rows 200000] [--dim 64]
        [--clusters 100] [--name sharded_select]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import measure, write_results
from datasets import Dataset

from hf_select.distributed.layout import INDEX_COLUMN, shard_ranges, sidecar_name, write_sidecar
from hf_select.select import SELECTORS


def make_table(rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 2000, rows).astype(np.float64)
    ce = np.round(rng.normal(1.0, 0.5, rows), 3)
    ce[rng.random(rows) < 0.02] = np.nan
    return pa.table({"n_tokens": tokens, "ce": ce, "cluster": rng.integers(0, 100, rows)})


def embeddings(rows: int, dim: int, seed: int = 1) -> pa.Array:
    X = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), dim).cast(pa.list_(pa.float32()))


def write(table: pa.Table, folder: str, shards: int) -> tuple[str, str]:
    whole = os.path.join(folder, "pool.parquet")
    pq.write_table(table, whole)
    sidecars = os.path.join(folder, "sidecars")
    for i, part in enumerate(shard_ranges(table.num_rows, shards)):
        piece = table.slice(part.start, len(part))
        piece = piece.add_column(0, INDEX_COLUMN, pa.array(np.arange(part.start, part.stop)))
        write_sidecar(piece, os.path.join(sidecars, sidecar_name(i, shards)), {"shard": i, "n_shards": shards})
    return whole, sidecars


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--kmeans-rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--name", default="sharded_select")
    args = parser.parse_args()
    cases = [
        ("scores", "top-k", {"column": "ce", "budget": 10_000}),
        ("scores", "top-k", {"column": "ce", "budget": "5M tokens"}),
        ("scores", "random", {"budget": "1%", "seed": 0, "column": "ce"}),
        ("scores", "within-clusters", {"score_column": "ce", "budget": 10_000}),
        ("embedded", "kmeans", {"column": "embedding", "n_clusters": args.clusters, "budget": 2_000}),
    ]
    rows_out, figures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        table = make_table(args.rows)
        small = make_table(args.kmeans_rows, seed=2).append_column("embedding", embeddings(args.kmeans_rows, args.dim))
        pools = {}
        for name, t in (("scores", table), ("embedded", small)):
            os.makedirs(os.path.join(tmp, name))
            pools[name] = write(t, os.path.join(tmp, name), args.shards)
        del table, small
        for pool_name, method, params in cases:
            whole, sidecars = pools[pool_name]
            pool = Dataset.from_parquet(whole, cache_dir=os.path.join(tmp, "cache"))
            single, t_single, m_single = measure(lambda: SELECTORS[method](**params).fit(pool))  # noqa: B023
            sharded, t_sharded, m_sharded = measure(lambda: SELECTORS[method](**params).fit_sharded(sidecars))  # noqa: B023
            equal = single.indices.tolist() == sharded.indices.tolist()
            label = f"{method} {params.get('budget')}"
            mib = [None if m is None else m / 2**20 for m in (m_single, m_sharded)]
            figures.append(
                {"case": label, "rows": len(pool), "equal": equal, "seconds": [t_single, t_sharded], "peak_mib": mib}
            )
            rows_out.append(
                f"| {label} | {len(pool):,} | {t_single:.2f} | {t_sharded:.2f} | "
                + " | ".join("n/a" if m is None else f"{m:,.0f}" for m in mib)
                + f" | {'yes' if equal else 'NO'} |"
            )
            print(rows_out[-1], flush=True)
    markdown = (
        f"Selection from {args.shards} score sidecars (`fit_sharded`, local per-shard steps) against `fit` on the "
        "pool read from one parquet file; k-means on a smaller pool with "
        f"{args.dim}-d embeddings, {args.clusters} clusters.\n\n"
        "| case | rows | fit s | fit_sharded s | fit peak MiB | fit_sharded peak MiB | equal indices |\n"
        "|---|---:|---:|---:|---:|---:|---|\n"
        + "\n".join(rows_out)
        + f"\n\nLoad average after: {list(os.getloadavg())} (other jobs share this machine: timings are upper bounds)."
    )
    write_results(args.name, {"cases": figures, "shards": args.shards}, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
