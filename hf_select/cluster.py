"""K-means over an embedding column, and the centroid selection mode.

`kmeans(ds, n_clusters)` clusters the vectors of `ds["embedding"]` and returns the dataset with two new
columns, `cluster` (int64; null where the row has no usable embedding) and `cluster_distance` (float64,
the Euclidean distance to its centroid, or the cosine distance with `spherical=True`; null likewise),
plus the centroids ([n_clusters, dim] float32). The `KMeans` class does the same and keeps a record
(`describe()`: configuration, fingerprint, objective, iterations, rows left unclustered) for selection
records. A row is clustered when its embedding is a list of finite numbers of the common length: a
failed row's NaN vector (from `EmbeddingScorer`) or a null gets a null cluster, which `within_clusters`
never selects (it treats a null cluster as unselectable; `-1` would be a real label there).

**Why faiss.** It is the maintained reference implementation of large-scale k-means (Meta's FAISS,
`faiss-cpu` on PyPI, GPU builds too): seeded and deterministic for a given thread count, multi-threaded
BLAS assignment, and it trains on a seeded subsample of at most `max_points_per_centroid` (256) rows per
cluster, so the training cost stops growing with the pool: 1,000 clusters over 1M x 1024 float32 vectors
(4 GiB) train on one machine within memory (one float32 copy of the matrix and O(k x d)), and the same call
runs on GPUs (`gpu=True`) with a faiss GPU build. Measured on 2 CPU cores (`benchmarks/bench_kmeans.py`,
1,000 clusters, 20 iterations, 384-d): 100K rows in ~11 s (scikit-learn's Lloyd on every row: ~17 s, and
faster than faiss in a run under heavier load), 1M rows in 56 s against scikit-learn's 236 s, with a
0.4% higher objective from the subsampled training.

Reading the column costs one float32 copy of the usable rows at most (none when the column is a single
float32 Arrow chunk of finite vectors, whose buffer is used in place; `datasets` saves columns in 1,000-row
record batches, so a large saved column is copied once); nothing loops over rows in Python. After
training, every usable row is assigned to its nearest centroid by faiss (a float32 GEMM-based search)
and `cluster_distance` is computed directly as `||x - c||` (or `1 - cos(x, c)`), so it never comes out
negative from rounding.

Centroid mode (`centroids(pool, budget)`): each cluster gets a quota proportional to its size and is
filled with its rows nearest the centroid: `within_clusters` on `cluster_distance` with `largest=False`.

Example:
    >>> import numpy as np
    >>> from datasets import Dataset
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(0, 1, (50, 8)), rng.normal(20, 1, (50, 8))]).astype(np.float32)
    >>> ds, C = kmeans(Dataset.from_dict({"embedding": X.tolist()}), 2, seed=0)
    >>> labels = np.array(ds["cluster"])
    >>> len(set(labels[:50])), len(set(labels[50:])), bool(labels[0] != labels[50])
    (1, 1, True)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from .errors import InputError
from .provenance import derived

_ROWS_PER_BLOCK = 65_536  # rows per block when checking, compacting or measuring distances


# ---------------------------------------------------------------------------------------------------
# Reading an embedding column
# ---------------------------------------------------------------------------------------------------


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _column(ds: Dataset, column: str) -> pa.ChunkedArray:
    if column not in ds.column_names:
        raise InputError(f"embedding column {column!r} is not in the dataset; it has {ds.column_names}")
    data = ds.with_format("arrow")[column]
    if isinstance(data, pa.Table):
        data = data.column(0)
    if isinstance(data, pa.Array):
        data = pa.chunked_array([data], type=data.type)
    if not _is_list(data.type):
        raise InputError(f"embedding column {column!r} is {data.type}, not a list of numbers per row")
    value_type = data.type.value_type
    if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
        raise InputError(f"embedding column {column!r} holds {value_type}, not numbers")
    return data


def embedding_array(ds: Dataset, column: str = "embedding") -> tuple[np.ndarray, np.ndarray]:
    """(X, rows): the float32 [m, dim] matrix of the usable rows' vectors (C-contiguous; possibly a
    read-only view of the Arrow buffer) and their row indices in `ds` (int64, ascending).

    A row is usable when its embedding is non-null, of the common length, and all finite. Vectors of
    different lengths among non-null rows are an error. No Python loop runs over rows.
    """
    data = _column(ds, column)
    n = len(data)
    lengths = np.concatenate(
        [pc.fill_null(pc.list_value_length(c), -1).to_numpy(zero_copy_only=False) for c in data.chunks]
        or [np.empty(0, dtype=np.int64)]
    ).astype(np.int64)
    present = lengths >= 0
    dims = np.unique(lengths[present])
    if len(dims) == 0:
        return np.empty((0, 0), dtype=np.float32), np.empty(0, dtype=np.int64)
    if len(dims) > 1:
        raise InputError(f"embedding column {column!r} has vectors of different lengths: {dims[:5].tolist()}")
    d = int(dims[0])
    if d == 0:
        raise InputError(f"embedding column {column!r} holds empty vectors")
    rows = np.flatnonzero(present).astype(np.int64)
    X: np.ndarray | None = None
    if data.num_chunks == 1 and len(rows) == n and pa.types.is_float32(data.type.value_type):
        values = data.chunk(0).flatten()
        if values.null_count == 0:  # the Arrow buffer itself, no copy
            X = values.to_numpy(zero_copy_only=True).reshape(n, d)
    if X is None:
        X = np.empty((len(rows), d), dtype=np.float32)
        at = 0
        for chunk in data.chunks:
            values = chunk.flatten()  # the non-null lists' values, offsets and slicing handled
            block = pc.cast(values, pa.float32()).to_numpy(zero_copy_only=False)  # a null value reads NaN
            m = len(block) // d
            X[at : at + m] = block.reshape(m, d)
            at += m
    finite = np.empty(len(rows), dtype=bool)
    for a in range(0, len(rows), _ROWS_PER_BLOCK):
        finite[a : a + _ROWS_PER_BLOCK] = np.isfinite(X[a : a + _ROWS_PER_BLOCK]).all(axis=1)
    if finite.all():
        return X, rows
    keep = np.flatnonzero(finite)
    if not X.flags.writeable:
        return np.ascontiguousarray(X[keep]), rows[keep]
    for a in range(0, len(keep), _ROWS_PER_BLOCK):  # compact in place: keep[j] >= j, so no source is overwritten
        block = keep[a : a + _ROWS_PER_BLOCK]
        X[a : a + len(block)] = X[block]
    return X[: len(keep)], rows[keep]


# ---------------------------------------------------------------------------------------------------
# k-means
# ---------------------------------------------------------------------------------------------------


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as err:
        raise InputError("k-means needs faiss: pip install faiss-cpu (or a faiss GPU build)") from err
    return faiss


@dataclass(kw_only=True)
class KMeans:
    """k-means of an embedding column with faiss; `fit(ds)` adds the cluster and distance columns.

    After `fit`: `centroids` ([n_clusters, dim] float32) and `stats` (objective per iteration, rows
    clustered and left out, device, threads). `describe()` is the entry for a selection record.
    """

    n_clusters: int
    column: str = "embedding"
    seed: int = 0
    niter: int = 20
    spherical: bool = False
    """Unit-norm centroids and inner-product assignment (for normalised embeddings); distance = 1 - cos."""
    init: Literal["random", "k-means++"] = "random"
    """faiss's initialisation: `random` rows (its default) or k-means++ (better, one extra pass per center)."""
    max_points_per_centroid: int = 256
    """faiss trains on a seeded sample of at most this many rows per cluster (its default)."""
    gpu: bool | int | None = None
    """None: every GPU when faiss is a GPU build, else CPU; True / a count / False as faiss.Kmeans takes it."""
    output_column: str = "cluster"
    distance_column: str = "cluster_distance"

    method: ClassVar[str] = "kmeans"
    centroids: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    stats: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.n_clusters, bool) or not isinstance(self.n_clusters, int | np.integer):
            raise InputError(f"n_clusters must be a positive integer, got {self.n_clusters!r}")
        if self.n_clusters < 1:
            raise InputError(f"n_clusters must be a positive integer, got {self.n_clusters}")
        if self.niter < 1:
            raise InputError(f"niter must be at least 1, got {self.niter}")
        if self.init not in ("random", "k-means++"):
            raise InputError(f"init must be 'random' or 'k-means++', got {self.init!r}")
        if self.max_points_per_centroid < 1:
            raise InputError(f"max_points_per_centroid must be at least 1, got {self.max_points_per_centroid}")

    _STATE = ("centroids", "stats")

    def config(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._STATE}

    def fingerprint(self) -> str:
        payload = {"class": "hf_select.cluster.KMeans", "version": 1, "config": self.config()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """Method, fingerprint, configuration and the statistics of the last `fit`."""
        return {"method": self.method, "fingerprint": self.fingerprint(), "config": self.config(), **self.stats}

    def cluster_matrix(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """k-means of a float32 [m, dim] matrix: (centroids, labels int64 [m], distances float64 [m])."""
        km = self.train(X)
        _, assigned = km.index.search(np.ascontiguousarray(X, dtype=np.float32), 1)
        labels = assigned[:, 0].astype(np.int64)
        return self.centroids, labels, self.distances(X, labels)  # type: ignore[return-value]

    def training_sample(self, n_rows: int) -> np.ndarray | None:
        """The positions among `n_rows` usable rows that faiss trains on, in its order (its own seeded
        permutation, `faiss.rand_perm`), or None when it trains on all of them: training on these rows
        gives the centroids training on all `n_rows` gives (sharded k-means gathers only them)."""
        faiss = _faiss()
        limit = self.max_points_per_centroid * int(self.n_clusters)
        if n_rows <= limit:
            return None
        if n_rows >= 2**31:  # faiss permutes with 32-bit ints
            raise InputError(f"k-means over {n_rows:,} rows: faiss samples from at most 2**31 - 1 rows")
        perm = np.empty(n_rows, dtype=np.int32)
        faiss.rand_perm(faiss.swig_ptr(perm), n_rows, self.seed)
        return perm[:limit].astype(np.int64)

    def train(self, X: np.ndarray, *, n_rows: int | None = None) -> Any:
        """Train on a float32 [m, dim] matrix (or on `training_sample(n_rows)` of `n_rows` usable rows):
        sets `centroids` and `stats`; returns the trained `faiss.Kmeans`."""
        faiss = _faiss()
        m, d = X.shape
        n_rows = m if n_rows is None else n_rows
        if n_rows < self.n_clusters:
            raise InputError(f"k-means with {self.n_clusters:,} clusters needs at least that many rows, got {n_rows:,}")
        X = np.ascontiguousarray(X, dtype=np.float32)
        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        gpu = (gpus > 0) if self.gpu is None else self.gpu
        init = faiss.ClusteringInitMethod_RANDOM
        if self.init == "k-means++":
            init = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
        km = faiss.Kmeans(
            d, int(self.n_clusters), niter=self.niter, seed=self.seed, spherical=self.spherical, verbose=False,
            max_points_per_centroid=self.max_points_per_centroid, init_method=init, gpu=gpu,
        )  # fmt: skip
        km.train(X)
        self.centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)
        self.stats = {
            "objective": [float(v) for v in km.obj] if km.obj is not None else None,
            "iterations": len(km.obj) if km.obj is not None else None,
            "training_rows": min(n_rows, self.max_points_per_centroid * int(self.n_clusters)),
            "device": f"gpu x{int(gpu)}" if gpu else "cpu",
            "threads": int(faiss.omp_get_max_threads()),
            "faiss": getattr(faiss, "__version__", None),
        }
        return km

    def assign(self, X: np.ndarray, *, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels, distances) of the rows of `X` (some of `n_rows` usable rows) under the trained
        `centroids`, as `cluster_matrix` assigns them: faiss's flat search (padded to the row count at
        which faiss switches to its BLAS search when all `n_rows` rows would take it) and `distances`."""
        faiss = _faiss()
        if self.centroids is None:
            raise InputError("assign needs trained centroids: call train first")
        X = np.ascontiguousarray(X, dtype=np.float32)
        index = (faiss.IndexFlatIP if self.spherical else faiss.IndexFlatL2)(self.centroids.shape[1])
        index.add(self.centroids)
        blas = int(getattr(faiss.cvar, "distance_compute_blas_threshold", 20))
        query = X
        if len(X) < blas <= n_rows:  # the same search path (and so the same rounding) as the whole matrix
            query = np.zeros((blas, X.shape[1]), dtype=np.float32)
            query[: len(X)] = X
        _, assigned = index.search(query, 1)
        labels = assigned[: len(X), 0].astype(np.int64)
        return labels, self.distances(X, labels)

    def distances(self, X: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Each row's distance to its centroid: `||x - c||`, or `1 - cos(x, c)` when spherical."""
        C = self.centroids
        assert C is not None
        distances = np.empty(len(X), dtype=np.float64)
        if self.spherical:
            unit_c = C / np.maximum(np.linalg.norm(C, axis=1, keepdims=True), np.finfo(np.float32).tiny)
        for a in range(0, len(X), _ROWS_PER_BLOCK):
            x, lab = X[a : a + _ROWS_PER_BLOCK], labels[a : a + _ROWS_PER_BLOCK]
            if self.spherical:
                norms = np.linalg.norm(x, axis=1)
                cos = np.einsum("ij,ij->i", x, unit_c[lab]) / np.where(norms > 0, norms, 1.0)
                distances[a : a + len(x)] = 1.0 - np.clip(cos, -1.0, 1.0)
            else:
                distances[a : a + len(x)] = np.linalg.norm(x - C[lab], axis=1)
        return distances

    def count(self, n: int, labels: np.ndarray) -> None:
        """Record in `stats` how `n` rows were clustered (`labels` of the usable ones)."""
        self.stats["rows_clustered"] = int(len(labels))
        self.stats["rows_unclustered"] = int(n - len(labels))
        sizes = np.bincount(labels, minlength=self.n_clusters)
        self.stats["cluster_sizes"] = {
            "min": int(sizes.min()),
            "max": int(sizes.max()),
            "empty": int((sizes == 0).sum()),
        }

    def with_columns(self, ds: Dataset, rows: np.ndarray, labels: np.ndarray, distances: np.ndarray) -> Dataset:
        """`ds` with `output_column` and `distance_column` (null for rows not in `rows`) replacing any columns
        of those names."""
        n = len(ds)
        cluster = np.zeros(n, dtype=np.int64)
        distance = np.zeros(n, dtype=np.float64)
        missing = np.ones(n, dtype=bool)
        cluster[rows], distance[rows], missing[rows] = labels, distances, False
        stale = [c for c in (self.output_column, self.distance_column) if c in ds.column_names]
        if stale:
            ds = ds.remove_columns(stale)
        fingerprint = hashlib.sha256(f"{ds._fingerprint}:{self.fingerprint()}".encode()).hexdigest()[:16]
        ds = ds.add_column(self.output_column, pa.array(cluster, mask=missing), new_fingerprint=f"{fingerprint}-c")
        return ds.add_column(self.distance_column, pa.array(distance, mask=missing), new_fingerprint=f"{fingerprint}-d")

    def fit(self, ds: Dataset) -> Dataset:
        """`ds` with `output_column` (int64, null for unusable rows) and `distance_column` (float64) added,
        replacing columns of those names."""
        X, rows = embedding_array(ds, self.column)
        _, labels, distances = self.cluster_matrix(X)
        self.count(len(ds), labels)
        clustered = self.with_columns(ds, rows, labels, distances)
        return derived(clustered, ds, self.describe())  # selectors record this clustering with the pool's scorers


def kmeans(
    ds: Dataset,
    n_clusters: int,
    *,
    column: str = "embedding",
    seed: int = 0,
    niter: int = 20,
    spherical: bool = False,
    init: Literal["random", "k-means++"] = "random",
    max_points_per_centroid: int = 256,
    output_column: str = "cluster",
    distance_column: str = "cluster_distance",
    gpu: bool | int | None = None,
) -> tuple[Dataset, np.ndarray]:
    """Cluster `ds[column]` into `n_clusters` with faiss k-means (see the module doc): (the dataset with
    `output_column` and `distance_column` added, the centroids [n_clusters, dim] float32). Use `KMeans`
    directly to keep a record of the run (`describe()`)."""
    km = KMeans(
        n_clusters=n_clusters, column=column, seed=seed, niter=niter, spherical=spherical, init=init,
        max_points_per_centroid=max_points_per_centroid, gpu=gpu, output_column=output_column,
        distance_column=distance_column,
    )  # fmt: skip
    out = km.fit(ds)
    assert km.centroids is not None
    return out, km.centroids


def __getattr__(name: str) -> Any:
    """`centroids` and `kmeans_select` moved to `hf_select.select`; this keeps `from hf_select.cluster import
    centroids` working without importing the selectors while this module loads."""
    if name in ("centroids", "kmeans_select"):
        from . import select

        return getattr(select, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
