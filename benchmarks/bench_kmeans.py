"""k-means with 1,000 clusters on 100,000 random 384-d float32 vectors: wall time, peak memory, objective.

Runs, on the same matrix:
  - `hf_select.cluster.kmeans` on a dataset saved to disk and loaded back (memory-mapped Arrow, the
    realistic case: read the column, train, assign, write the two columns), with faiss's default random
    initialisation and with k-means++;
  - raw `faiss.Kmeans` + `index.search` on the numpy matrix (the cost of hf-select's wrapper is the
    difference);
  - scikit-learn's Lloyd `KMeans` (random init, one run, `--niter` iterations, tol 0) for comparison,
    unless `--no-sklearn`.
Every run does `--niter` iterations (20). The objective is the mean squared distance of every row to its
assigned centroid (lower is better; random Gaussian vectors have no cluster structure, so the gaps are
small). Peak memory: the process's peak resident set (VmHWM, reset before each run through
/proc/self/clear_refs) minus its resident set before the run.

    python benchmarks/bench_kmeans.py [--rows 100000] [--dim 384] [--clusters 1000] [--niter 20] [--threads N]
        [--scale-rows N] [--no-sklearn] [--name kmeans]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
from common import measure, write_results
from datasets import Dataset, load_from_disk

from hf_select.cluster import KMeans, embedding_array


def objective(X: np.ndarray, C: np.ndarray, labels: np.ndarray) -> float:
    total = 0.0
    for a in range(0, len(X), 65536):
        diff = X[a : a + 65536].astype(np.float64) - C[labels[a : a + 65536]]
        total += float(np.einsum("ij,ij->", diff, diff))
    return total / len(X)


def dataset_on_disk(X: np.ndarray, folder: str) -> Dataset:
    """X as a `List(float32)` column, saved and loaded back (memory-mapped, as a scored pool is)."""
    offsets = pa.array(np.arange(0, X.size + 1, X.shape[1], dtype=np.int64))
    column = pa.LargeListArray.from_arrays(offsets, pa.array(X.reshape(-1)))
    Dataset.from_dict({"embedding": column.cast(pa.list_(pa.float32()))}).save_to_disk(folder)
    return load_from_disk(folder)


def suite(rows: int, dim: int, clusters: int, niter: int, *, full: bool, sklearn_too: bool) -> list[dict[str, Any]]:
    """The runs on `rows` random vectors: all of them (`full`), or hf-select's k-means (random init) and
    scikit-learn's only (the scaling check)."""
    X = np.random.default_rng(0).standard_normal((rows, dim), dtype=np.float32)
    runs: list[dict[str, Any]] = []
    tag = f"{rows:,} rows"
    with tempfile.TemporaryDirectory() as tmp:
        ds = dataset_on_disk(X, f"{tmp}/pool")
        if full:
            _, seconds, mem = measure(lambda: embedding_array(ds, "embedding"))
            runs.append({"rows": rows, "run": f"{tag}: read the column (`embedding_array`)", "seconds": seconds,
                         "peak_bytes": mem})  # fmt: skip
        for init in ("random", "k-means++") if full else ("random",):
            km = KMeans(n_clusters=clusters, niter=niter, seed=0, init=init)
            out, seconds, mem = measure(lambda km=km: km.fit(ds))
            labels = np.asarray(out.with_format("numpy")["cluster"], dtype=np.int64)
            runs.append(
                {
                    "rows": rows,
                    "run": f"{tag}: `hf_select.cluster.kmeans`, init {init} (read + train + assign + 2 columns)",
                    "seconds": seconds,
                    "peak_bytes": mem,
                    "objective": objective(X, km.centroids, labels),
                    "training_rows": km.stats["training_rows"],
                    "iterations": km.stats["iterations"],
                    "empty_clusters": km.stats["cluster_sizes"]["empty"],
                }
            )
            del out

    if full:

        def raw_faiss() -> tuple[np.ndarray, np.ndarray]:
            km = faiss.Kmeans(dim, clusters, niter=niter, seed=0, verbose=False)
            km.train(X)
            _, assigned = km.index.search(X, 1)
            return km.centroids, assigned[:, 0]

        (C, labels), seconds, mem = measure(raw_faiss)
        runs.append({"rows": rows, "run": f"{tag}: raw `faiss.Kmeans` + search on the numpy matrix",
                     "seconds": seconds, "peak_bytes": mem, "objective": objective(X, C, labels)})  # fmt: skip

    if sklearn_too:
        try:
            import sklearn
            from sklearn.cluster import KMeans as SKMeans
        except ImportError:
            return runs
        sk = SKMeans(n_clusters=clusters, init="random", n_init=1, max_iter=niter, tol=0.0, algorithm="lloyd",
                     random_state=0)  # fmt: skip
        _, seconds, mem = measure(lambda: sk.fit(X))
        runs.append({"rows": rows, "run": f"{tag}: scikit-learn {sklearn.__version__} `KMeans` (lloyd, random init, "
                     "1 run, every row)", "seconds": seconds, "peak_bytes": mem,
                     "objective": objective(X, sk.cluster_centers_, sk.labels_)})  # fmt: skip
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--niter", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--scale-rows", type=int, default=0, help="also run hf-select and scikit-learn on this many")
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--name", default="kmeans", help="results file name (benchmarks/results/NAME.json, .md)")
    args = parser.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    threads = faiss.omp_get_max_threads()
    load_before = os.getloadavg()

    runs = suite(args.rows, args.dim, args.clusters, args.niter, full=True, sklearn_too=not args.no_sklearn)
    if args.scale_rows:
        runs += suite(args.scale_rows, args.dim, args.clusters, args.niter, full=False, sklearn_too=not args.no_sklearn)
    load_after = os.getloadavg()
    mib = args.rows * args.dim * 4 / 2**20
    figures = {
        "rows": args.rows,
        "dim": args.dim,
        "clusters": args.clusters,
        "niter": args.niter,
        "threads": threads,
        "faiss": faiss.__version__,
        "matrix_mib": mib,
        "runs": runs,
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    lines = [
        f"k-means, {args.clusters:,} clusters, {args.niter} iterations, on {args.rows:,} random {args.dim}-d float32 "
        f"vectors ({mib:.0f} MiB){f' and on {args.scale_rows:,}' if args.scale_rows else ''}, "
        f"faiss {faiss.__version__} with {threads} threads.",
        "",
        "| run | seconds | peak memory above start | objective (mean squared distance) |",
        "|---|---:|---:|---:|",
    ]
    for r in runs:
        peak = f"{r['peak_bytes'] / 2**20:.1f} MiB" if r.get("peak_bytes") is not None else ""
        obj = f"{r['objective']:.4f}" if "objective" in r else ""
        lines.append(f"| {r['run']} | {r['seconds']:.1f} | {peak} | {obj} |")
    lines += [
        "",
        "Peak memory counts the pages of the memory-mapped embedding column that a run reads (file-backed and "
        "reclaimable, about the matrix size) on top of the float32 copy of the matrix that faiss trains on. "
        f"faiss trains on a sample of at most 256 rows per cluster ({256 * args.clusters:,} rows), "
        "scikit-learn on every row.",
        "",
        f"Load average before/after: {list(load_before)} / {list(load_after)} "
        "(other jobs share this machine: timings are upper bounds).",
    ]
    write_results(args.name, figures, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
