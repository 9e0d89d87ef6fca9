"""Cheap proxies, no training: per subset, its token statistics, its diversity on the `embedding`
column (mean pairwise cosine distance; cluster coverage: the share of k-means clusters, fitted on all
subsets together, that it has a row in; at most 50 clusters and one per 10 rows) and its source mix
(shares of a `source` column).

Example:
    >>> import numpy as np
    >>> from datasets import Dataset
    >>> a = Dataset.from_dict({"embedding": [[1.0, 0.0], [0.0, 1.0]], "n_tokens": [10, 30]})
    >>> b = Dataset.from_dict({"embedding": [[1.0, 0.0], [1.0, 0.0]], "n_tokens": [10, 10]})
    >>> out = subset_proxies({"selection": a, "random seed 0": b}, clusters=2)
    >>> out["selection"]["mean_cosine_distance"], out["random seed 0"]["mean_cosine_distance"]
    (1.0, 0.0)
    >>> out["selection"]["cluster_coverage"], out["random seed 0"]["cluster_coverage"]
    (1.0, 0.5)
    >>> out["selection"]["tokens"]["mean"]
    20.0
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
from datasets import Dataset

from ..select.selection import TOKEN_COLUMN

EMBEDDING_COLUMN = "embedding"
SOURCE_COLUMN = "source"
POINTS_PER_CLUSTER = 10
"""Cluster coverage uses at most (all subsets' rows) / 10 clusters: with about as many clusters as points,
every row is its own cluster and every subset covers the same share."""
MAX_PAIRS_ROWS = 2000
"""Pairwise distances are computed on a seeded sample of at most this many rows per subset."""


def token_stats(values: np.ndarray) -> dict[str, float]:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return {"total": 0.0, "mean": float("nan"), "median": float("nan"), "p90": float("nan")}
    return {
        "total": float(finite.sum()),
        "mean": float(finite.mean()),
        "median": float(np.median(finite)),
        "p90": float(np.quantile(finite, 0.9)),
    }


def mean_cosine_distance(vectors: np.ndarray, *, seed: int = 0) -> float:
    """Mean of 1 - cos(a, b) over distinct pairs (on a seeded sample of `MAX_PAIRS_ROWS` rows)."""
    if len(vectors) > MAX_PAIRS_ROWS:
        vectors = vectors[np.random.default_rng(seed).choice(len(vectors), MAX_PAIRS_ROWS, replace=False)]
    n = len(vectors)
    if n < 2:
        return float("nan")
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    return float(1.0 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))


def cluster_count(clusters: int, points: int) -> int:
    return max(1, min(clusters, points, max(2, points // POINTS_PER_CLUSTER)))


def _cluster_ids(vectors: list[np.ndarray], clusters: int, seed: int) -> list[np.ndarray]:
    """k-means (faiss, seeded) on all subsets' vectors together; each subset's cluster ids."""
    import faiss

    allv = np.ascontiguousarray(np.concatenate(vectors).astype(np.float32))
    k = cluster_count(clusters, len(allv))
    km = faiss.Kmeans(allv.shape[1], k, niter=20, seed=seed, verbose=False)
    km.train(allv)
    _, labels = km.index.search(allv, 1)
    bounds = np.cumsum([0, *(len(v) for v in vectors)])
    return [labels[bounds[i] : bounds[i + 1], 0] for i in range(len(vectors))]


def subset_proxies(
    subsets: Mapping[str, Dataset], *, clusters: int = 50, token_column: str = TOKEN_COLUMN, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """The proxies of each named subset (see the module docstring); a proxy whose column is missing is left out."""
    out: dict[str, dict[str, Any]] = {name: {"rows": len(ds)} for name, ds in subsets.items()}
    for name, ds in subsets.items():
        if token_column in ds.column_names:
            values = np.asarray(ds[token_column], dtype=np.float64)
            out[name]["tokens"] = token_stats(values)
        if SOURCE_COLUMN in ds.column_names:
            counts = Counter(str(s) for s in ds[SOURCE_COLUMN])
            out[name]["sources"] = {k: v / len(ds) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}
    with_embeddings = [name for name, ds in subsets.items() if EMBEDDING_COLUMN in ds.column_names and len(ds)]
    if with_embeddings:
        vectors = [np.asarray(subsets[n][EMBEDDING_COLUMN], dtype=np.float32) for n in with_embeddings]
        for name, v in zip(with_embeddings, vectors, strict=True):
            out[name]["mean_cosine_distance"] = round(mean_cosine_distance(v, seed=seed), 6)
        ids = _cluster_ids(vectors, clusters, seed)
        k = cluster_count(clusters, sum(len(v) for v in vectors))
        for name, labels in zip(with_embeddings, ids, strict=True):
            out[name]["cluster_coverage"] = len(np.unique(labels)) / k
            out[name]["clusters"] = k
    return out
