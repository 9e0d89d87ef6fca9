"""k-means (faiss) over an embedding column, the centroid mode, and the IFD pre-experience subset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from datasets import Dataset, concatenate_datasets, load_from_disk

from hf_select import BudgetError, InputError, select
from hf_select.cluster import KMeans, centroids, embedding_array, kmeans
from hf_select.select.pre_experience import band_picks, pre_experience_subset


def blobs(n_per: int = 30, dim: int = 8, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`k` tight Gaussian blobs (sd 1) whose centers are 50 apart along distinct axes."""
    rng = np.random.default_rng(seed)
    centers = np.zeros((k, dim))
    centers[np.arange(k), np.arange(k)] = 50.0
    truth = np.repeat(np.arange(k), n_per)
    X = (centers[truth] + rng.normal(0, 1, (k * n_per, dim))).astype(np.float32)
    order = rng.permutation(len(X))
    return X[order], truth[order]


def as_dataset(X: np.ndarray, **extra: object) -> Dataset:
    """A `List(float32)` column, as `EmbeddingScorer` writes it."""
    offsets = pa.array(np.arange(0, X.size + 1, X.shape[1], dtype=np.int32))
    return Dataset.from_dict({"embedding": pa.ListArray.from_arrays(offsets, pa.array(X.ravel())), **extra})


def test_well_separated_blobs_are_recovered_exactly() -> None:
    X, truth = blobs()
    km = KMeans(n_clusters=4, seed=0, init="k-means++")
    ds = km.fit(as_dataset(X))
    labels = np.array(ds["cluster"])
    assert ds.features["cluster"].dtype == "int64" and ds.features["cluster_distance"].dtype == "float64"
    for c in range(4):  # each blob is exactly one cluster
        assert len(set(labels[truth == c])) == 1
    assert len(set(labels)) == 4
    C = km.centroids
    assert C.shape == (4, 8) and C.dtype == np.float32
    for c in range(4):  # the centroid is the blob's mean; the distance is ||x - c||
        members = labels == c
        assert np.abs(C[c] - X[members].astype(np.float64).mean(0)).max() < 1e-3
        expected = np.linalg.norm(X[members].astype(np.float64) - C[c], axis=1)
        assert np.abs(np.array(ds["cluster_distance"])[members] - expected).max() < 1e-4
    info = km.describe()
    assert info["method"] == "kmeans" and info["config"]["n_clusters"] == 4 and info["rows_unclustered"] == 0
    assert 1 <= info["iterations"] <= 20 and len(info["objective"]) == info["iterations"]  # faiss stops once stable


def test_seeded_runs_are_identical() -> None:
    X = np.random.default_rng(1).standard_normal((600, 16)).astype(np.float32)
    ds = as_dataset(X)
    a, ca = kmeans(ds, 12, seed=3)
    b, cb = kmeans(ds, 12, seed=3)
    c, cc = kmeans(ds, 12, seed=4)
    assert a["cluster"] == b["cluster"] and a["cluster_distance"] == b["cluster_distance"]
    assert ca.tobytes() == cb.tobytes()
    assert a._fingerprint == b._fingerprint != c._fingerprint
    assert ca.tobytes() != cc.tobytes()


def test_rows_without_a_usable_embedding_get_a_null_cluster_and_are_never_selected() -> None:
    X, _ = blobs(n_per=10, k=3)
    vectors: list = [list(map(float, x)) for x in X]
    vectors[0] = [float("nan")] * 8  # a failed EmbeddingScorer row
    vectors[5] = None
    vectors[7] = [1.0, float("inf")] + [0.0] * 6
    ds = Dataset.from_dict({"embedding": vectors, "score": np.arange(30.0)})
    km = KMeans(n_clusters=3, seed=0)
    out = km.fit(ds)
    for i in (0, 5, 7):
        assert out[i]["cluster"] is None and out[i]["cluster_distance"] is None
    assert all(out[i]["cluster"] is not None for i in range(30) if i not in (0, 5, 7))
    assert km.stats["rows_unclustered"] == 3
    picked = select.within_clusters(out, "cluster", "score", 27).indices
    assert not {0, 5, 7} & set(picked.tolist())
    with pytest.raises(BudgetError):
        select.within_clusters(out, "cluster", "score", 28)
    refit = km.fit(out)  # fitting again replaces the columns
    assert refit.column_names == out.column_names and refit["cluster"] == out["cluster"]


def test_embedding_array_reads_every_layout(tmp_path: Path) -> None:
    X = np.random.default_rng(2).standard_normal((50, 6)).astype(np.float32)
    one = as_dataset(X)
    one.save_to_disk(tmp_path / "pool")
    on_disk = load_from_disk(str(tmp_path / "pool"))
    got, rows = embedding_array(on_disk)
    assert np.array_equal(got, X) and np.array_equal(rows, np.arange(50))
    assert not got.flags.writeable  # the memory-mapped Arrow buffer itself, no copy
    chunks = concatenate_datasets([as_dataset(X[:20]), as_dataset(X[20:])])  # two chunks
    got, rows = embedding_array(chunks)
    assert np.array_equal(got, X) and got.flags.c_contiguous
    doubles = Dataset.from_dict({"embedding": X.astype(np.float64).tolist()})  # float64 values
    assert np.array_equal(embedding_array(doubles)[0], X)
    fixed = Dataset(pa.table({"embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 6)}))
    assert np.array_equal(embedding_array(fixed)[0], X)
    sub = chunks.select([3, 1, 40])  # an indices mapping
    assert np.array_equal(embedding_array(sub)[0], X[[3, 1, 40]])
    vectors: list = X.tolist()
    vectors[4], vectors[9] = None, [float("nan")] * 6
    got, rows = embedding_array(Dataset.from_dict({"embedding": vectors}))
    keep = [i for i in range(50) if i not in (4, 9)]
    assert np.array_equal(rows, keep) and np.array_equal(got, X[keep])
    with pytest.raises(InputError, match="different lengths"):
        embedding_array(Dataset.from_dict({"embedding": [[1.0, 2.0], [1.0]]}))
    with pytest.raises(InputError, match="not a list"):
        embedding_array(Dataset.from_dict({"embedding": [1.0, 2.0]}))
    with pytest.raises(InputError, match="not in the dataset"):
        embedding_array(one, "vector")


def test_centroid_mode_takes_the_rows_nearest_each_centroid() -> None:
    X, truth = blobs(n_per=20, k=3)
    km = KMeans(n_clusters=3, seed=0)
    ds = km.fit(as_dataset(X))
    sel = centroids(ds, 7, clustering=km)
    labels, dist = np.array(ds["cluster"]), np.array(ds["cluster_distance"])
    quotas = select.proportional_quotas(np.bincount(labels, minlength=3), 7)
    expected = []
    for c in range(3):
        members = np.flatnonzero(labels == c)
        expected += members[np.argsort(dist[members], kind="stable")[: quotas[c]]].tolist()
    assert sorted(sel.indices.tolist()) == sorted(expected)
    same = select.within_clusters(ds, "cluster", "cluster_distance", 7, largest=False)
    assert sel.record.indices_sha256 == same.record.indices_sha256
    assert sel.record.method == "centroid" and sel.record.parameters["mode"] == "centroid"
    assert sel.record.parameters["clustering"]["fingerprint"] == km.fingerprint()


def test_spherical_kmeans_gives_unit_centroids_and_cosine_distances() -> None:
    X, truth = blobs(n_per=15, k=3)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    km = KMeans(n_clusters=3, seed=0, spherical=True, init="k-means++")
    ds = km.fit(as_dataset(X))
    assert np.allclose(np.linalg.norm(km.centroids, axis=1), 1.0, atol=1e-5)
    labels, dist = np.array(ds["cluster"]), np.array(ds["cluster_distance"])
    cos = np.einsum("ij,ij->i", X.astype(np.float64), km.centroids[labels])
    assert np.abs(dist - (1 - cos)).max() < 1e-5 and (dist >= 0).all()
    for c in range(3):
        assert len(set(labels[truth == c])) == 1


def test_bad_arguments() -> None:
    ds = as_dataset(np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(InputError, match="at least that many rows"):
        kmeans(ds, 5)
    for bad in ({"n_clusters": 0}, {"n_clusters": 2, "niter": 0}, {"n_clusters": 2, "init": "kmeans||"}):
        with pytest.raises(InputError):
            KMeans(**bad)


# --- IFD pre-experience -------------------------------------------------------------------------------


def test_band_picks_by_hand() -> None:
    ppl = np.array([9.0, 1.0, 5.0, np.nan, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0])  # 1..10 and a NaN
    # percentiles of 1..10: 3.25 and 7.75, so the band is 4, 5, 6, 7 (positions 8, 2, 9, 5)
    assert band_picks(ppl, 10).tolist() == [8, 2, 9, 5]
    assert band_picks(ppl, 2).tolist() == [8, 5]  # rint(linspace(0, 3, 2)) = [0, 3]
    assert band_picks(ppl, 3).tolist() == [8, 9, 5]  # rint([0, 1.5, 3]) = [0, 2, 3]: 4, 6, 7
    assert band_picks(np.array([np.nan]), 3).tolist() == []
    ties = np.array([2.0, 1.0, 2.0, 2.0, 3.0])  # equal perplexities go in pool order
    assert band_picks(ties, 10).tolist() == [0, 2, 3]


def test_pre_experience_subset_follows_the_definition() -> None:
    X, truth = blobs(n_per=40, k=3, dim=6)
    rng = np.random.default_rng(5)
    ppl = rng.uniform(1.5, 80.0, len(X))
    ppl[[0, 1]] = np.nan
    ds = Dataset.from_dict(
        {"instruction_embedding": X.tolist(), "instruction_ppl": ppl, "n_tokens": rng.integers(10, 99, len(X))}
    )
    sel = pre_experience_subset(ds, n_clusters=3, per_cluster=5, seed=0)
    clustered = KMeans(n_clusters=3, column="instruction_embedding", seed=0).fit(ds)
    labels = np.array(clustered["cluster"])
    expected = []
    for c in range(3):
        members = np.flatnonzero((labels == c) & np.isfinite(ppl))
        lo, hi = np.percentile(ppl[members], [25, 75])
        band = sorted((ppl[i], i) for i in members if lo <= ppl[i] <= hi)
        positions = sorted(set(int(round(x)) for x in np.linspace(0, len(band) - 1, 5)))
        expected += [band[p][1] for p in positions]
    assert sorted(sel.indices.tolist()) == sorted(expected) and len(sel) == 15
    assert not {0, 1} & set(sel.indices.tolist())
    params = sel.record.parameters
    assert sel.record.method == "ifd-pre-experience" and params["n_clusters"] == 3 and params["per_cluster"] == 5
    assert params["clustering"]["config"]["column"] == "instruction_embedding"
    assert sel.record.kept["tokens"] == int(np.array(ds["n_tokens"])[sel.indices].sum())
    again = pre_experience_subset(ds, n_clusters=3, per_cluster=5, seed=0)
    assert again.record.indices_sha256 == sel.record.indices_sha256
    by_column = pre_experience_subset(clustered, cluster_column="cluster", per_cluster=5)
    assert by_column.record.indices_sha256 == sel.record.indices_sha256
    with pytest.raises(InputError):
        pre_experience_subset(ds, n_clusters=3, per_cluster=0)
