"""`hf-select cluster`: k-means of an embedding column saved as a scored pool, then `select` on it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, load_from_disk

from hf_select.cli import main
from hf_select.cluster import KMeans
from hf_select.record import SelectionRecord
from hf_select.save import load_selection_folder

N_PER, DIM = 12, 4


def _rows() -> list[dict]:
    """Three blobs of 12 rows (sizes 12/12/12 less row 5, whose embedding is null), float vectors."""
    rng = np.random.default_rng(0)
    centers = np.eye(3, DIM) * 20.0
    X = (centers[np.arange(3 * N_PER) % 3] + rng.normal(0, 1, (3 * N_PER, DIM))).astype(np.float32)
    return [
        {"id": f"r{i}", "embedding": None if i == 5 else X[i].tolist(), "n_tokens": float(10 + (i * 7) % 23)}
        for i in range(3 * N_PER)
    ]


@pytest.fixture
def pool_file(tmp_path: Path) -> Path:
    path = tmp_path / "emb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    return path


def _cluster(pool: Path, out: Path, *extra: str) -> None:
    assert main(["cluster", str(pool), "--column", "embedding", "--n-clusters", "3", *extra, "-o", str(out)]) == 0


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("hf-select: error: ")
    return last


def test_cluster_adds_typed_columns_in_row_order_with_provenance(
    pool_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "clustered"
    _cluster(pool_file, out, "--seed", "3", "--niter", "5")
    assert "35 of 36 rows in 3 clusters" in capsys.readouterr().out
    ds = load_from_disk(str(out))
    assert ds.features["cluster"].dtype == "int64" and ds.features["cluster_distance"].dtype == "float64"
    rows = _rows()
    assert len(ds) == len(rows) and ds["id"] == [r["id"] for r in rows]  # same rows, same order
    assert ds["n_tokens"] == [r["n_tokens"] for r in rows]
    labels, distances = ds["cluster"], ds["cluster_distance"]
    assert labels[5] is None and distances[5] is None  # no embedding: no cluster, never selectable
    blob = np.arange(len(rows)) % 3
    for b in range(3):  # each well-separated blob is one cluster
        assert len({labels[i] for i in np.flatnonzero(blob == b) if i != 5}) == 1
    assert len({label for label in labels if label is not None}) == 3
    assert all(d >= 0 for d in distances if d is not None)
    # the same as the Python API on the same rows
    expected = KMeans(n_clusters=3, seed=3, niter=5).fit(Dataset.from_list(rows))
    assert expected["cluster"] == labels
    assert np.allclose(np.array(expected["cluster_distance"][:5]), np.array(distances[:5]))
    # provenance: where the rows come from, and the clustering as a record entry
    provenance = json.loads((out / "hf_select.json").read_text())
    assert provenance["source"]["dataset"] == str(pool_file) and len(provenance["source"]["sha256"]) == 64
    (entry,) = provenance["scorers"]
    assert entry["method"] == "kmeans" and entry["command"].startswith("hf-select cluster ")
    assert entry["config"] | {"n_clusters": 3, "seed": 3, "niter": 5, "column": "embedding"} == entry["config"]
    assert entry["rows_clustered"] == 35 and entry["rows_unclustered"] == 1


def test_cluster_is_deterministic_for_a_seed_and_reclustering_replaces(pool_file: Path, tmp_path: Path) -> None:
    a, b, again = tmp_path / "a", tmp_path / "b", tmp_path / "again"
    _cluster(pool_file, a, "--seed", "1", "--init", "k-means++", "--max-points-per-centroid", "4")
    _cluster(pool_file, b, "--seed", "1", "--init", "k-means++", "--max-points-per-centroid", "4")
    first, second = load_from_disk(str(a)), load_from_disk(str(b))
    assert first["cluster"] == second["cluster"] and first["cluster_distance"] == second["cluster_distance"]
    entry = json.loads((a / "hf_select.json").read_text())["scorers"][0]
    assert entry["config"]["init"] == "k-means++" and entry["config"]["max_points_per_centroid"] == 4
    # clustering a clustered pool replaces the columns and the stale provenance entry
    assert main(["cluster", str(a), "--column", "embedding", "--n-clusters", "2", "-o", str(again)]) == 0
    ds = load_from_disk(str(again))
    assert ds.column_names.count("cluster") == 1 and len({c for c in ds["cluster"] if c is not None}) == 2
    provenance = json.loads((again / "hf_select.json").read_text())
    assert [e["config"]["n_clusters"] for e in provenance["scorers"]] == [2]
    assert provenance["source"]["dataset"] == str(pool_file)  # still the original rows


def test_cluster_user_errors_are_one_line(pool_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["cluster", str(pool_file), "--n-clusters", "3"]
    err = _error(capsys, [*base, "--column", "nope", "-o", str(tmp_path / "o1")])
    assert "'nope'" in err and "'embedding'" in err
    err = _error(capsys, [*base, "--column", "id", "-o", str(tmp_path / "o2")])
    assert "'id'" in err and "not a list of numbers" in err
    err = _error(capsys, [*base, "--column", "n_tokens", "-o", str(tmp_path / "o3")])
    assert "'n_tokens'" in err and "not a list of numbers" in err
    err = _error(capsys, ["cluster", str(pool_file), "--n-clusters", "40", "-o", str(tmp_path / "o4")])
    assert "40 clusters needs at least that many rows, got 35" in err
    err = _error(capsys, ["cluster", str(pool_file), "--n-clusters", "0", "-o", str(tmp_path / "o5")])
    assert "n_clusters" in err
    err = _error(capsys, [*base, "--max-points-per-centroid", "0", "-o", str(tmp_path / "o6")])
    assert "max_points_per_centroid" in err
    err = _error(capsys, [*base, "-o", str(pool_file)])
    assert "refusing" in err
    assert not any((tmp_path / f"o{i}").exists() and any((tmp_path / f"o{i}").iterdir()) for i in range(1, 7))


def test_cluster_then_select_within_clusters_and_centroid(pool_file: Path, tmp_path: Path) -> None:
    clustered, out = tmp_path / "clustered", tmp_path / "km-longest"
    _cluster(pool_file, clustered)
    argv = ["select", str(clustered), "--method", "within-clusters", "--cluster-column", "cluster"]
    assert main([*argv, "--column", "n_tokens", "--budget", "10", "-o", str(out)]) == 0
    record = SelectionRecord.load(out)
    assert record.method == "within-clusters" and record.kept["rows"] == 10 == len(load_selection_folder(out))
    quotas = record.parameters["quotas"]
    assert sum(quotas.values()) == 10 and len(quotas) == 3  # 12/11/12 usable rows: 4 + 3 + 3 (or 3 + 3 + 4)
    assert sorted(quotas.values()) == [3, 3, 4]
    # the clustering travels into the record and the card, like a scorer
    (entry,) = record.scorers
    assert entry["method"] == "kmeans" and entry["config"]["n_clusters"] == 3
    assert entry["command"].startswith("hf-select cluster ")
    card = (out / "README.md").read_text()
    assert "| Clustering | `kmeans`: 3 clusters of `embedding`, seed 0 |" in card
    assert "### K-means clusters" in card
    # the card's Python snippet re-clusters the source rows and reproduces the selection exactly
    (python,) = re.findall(r"```python\n(.*?)\n```", card[card.index("## Reproduce it") :], re.DOTALL)[:1]
    assert "KMeans(" in python and "SCORERS" not in python
    exec(compile(python, "<card>", "exec"), {})

    centroid = tmp_path / "centroid"
    assert main(["select", str(clustered), "--method", "centroid", "--budget", "6", "-o", str(centroid)]) == 0
    record = SelectionRecord.load(centroid)
    assert record.parameters["mode"] == "centroid" and sum(record.parameters["quotas"].values()) == 6
    ds = load_from_disk(str(clustered))
    chosen = load_selection_folder(centroid)
    for cluster in set(chosen["cluster"]):  # each cluster's picks are its rows nearest the centroid
        members = sorted(d for c, d in zip(ds["cluster"], ds["cluster_distance"], strict=True) if c == cluster)
        picked = sorted(d for c, d in zip(chosen["cluster"], chosen["cluster_distance"], strict=True) if c == cluster)
        assert picked == members[: len(picked)]


def test_methods_lists_the_clustering(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    section = out[out.index("Clustering (hf-select cluster):") :]
    assert "kmeans:" in section and "cluster_distance" in section and "n_clusters" in section
    assert "max_points_per_centroid" in section
