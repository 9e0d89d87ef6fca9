"""Selection on sharded scores equals the single-machine selection on the merged pool (issue #13 item 4).

Random pools with ties and NaNs are cut into score sidecars (`layout.write_sidecar`) in several ways (one
shard, three, uneven with an empty shard); every sharded selector must give the indices (in pick order),
record parameters (plus `shards`), budget record, warnings and errors of `SELECTORS[m](...).fit(pool)`.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings

import numpy as np
import pyarrow as pa
import pytest
from datasets import Dataset

from hf_select.distributed.layout import INDEX_COLUMN, shard_ranges, sidecar_name, write_sidecar
from hf_select.distributed.sharded_scores import ShardedScores
from hf_select.distributed.sharded_select import fit_sharded
from hf_select.errors import HFSelectError, InputError
from hf_select.select import SELECTORS

SCORER = {"method": "token-length", "fingerprint": "abc", "config": {}}
"""The scorer entry the test sidecars' metadata names (the record's scorers)."""
CUTS = {"one": [1.0], "three": [1 / 3, 2 / 3, 1.0], "uneven": [0.05, 0.05, 0.7, 1.0]}
"""Shard boundaries as fractions of the pool (`uneven` has an empty second shard)."""


def make_pool(n: int, seed: int, dim: int = 4) -> Dataset:
    """Scores with ties (few distinct values) and NaNs; clusters with nulls; embeddings with duplicate,
    null and non-finite rows."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 60, n).astype(float)
    tokens[rng.random(n) < 0.05] = np.nan
    ce = np.round(rng.normal(1.0, 0.5, n), 1)  # about 30 distinct values: many ties
    ce[rng.random(n) < 0.1] = np.nan
    cluster = [None if rng.random() < 0.05 else int(c) for c in rng.integers(0, 4, n)]
    distance = np.round(rng.random(n), 2)
    centers = rng.normal(0, 5, (3, dim))
    emb = (centers[rng.integers(0, 3, n)] + rng.normal(0, 1, (n, dim))).astype(np.float32)
    emb[1::17] = emb[0]  # exact duplicates: distance ties
    embedding: list = emb.tolist()
    for i in rng.choice(n, max(1, n // 40), replace=False):
        embedding[i] = None if i % 2 else [float("nan")] * dim
    return Dataset.from_dict(
        {"n_tokens": tokens, "ce": ce, "cluster": cluster, "cluster_distance": distance, "embedding": embedding}
    )


def write_shards(pool: Dataset, folder, cut: str) -> list[str]:
    n = len(pool)
    if cut == "one" or cut == "three":
        ranges = shard_ranges(n, len(CUTS[cut]))
    else:
        stops = [round(f * n) for f in CUTS[cut]]
        ranges = [range(a, b) for a, b in zip([0, *stops[:-1]], stops, strict=True)]
    table = pool.data.table
    paths = []
    for i, rows in enumerate(ranges):
        part = table.slice(rows.start, len(rows))
        part = part.add_column(0, INDEX_COLUMN, pa.array(list(rows), type=pa.int64()))
        meta = {"fingerprint": f"fp-{cut}-{i}", "scorer": SCORER, "shard": i, "n_shards": len(ranges)}
        paths.append(str(write_sidecar(part, folder / sidecar_name(i, len(ranges)), meta)))
    return paths


def outcome(fn):
    """(result, warnings' messages) or (the error's type and message, warnings' messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn()
        except HFSelectError as err:
            result = (type(err).__name__, str(err))
    return result, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def assert_same(method: str, params: dict, pool: Dataset, folder, paths: list[str], **fit) -> None:
    single, single_warned = outcome(lambda: SELECTORS[method](**params).fit(pool))
    if "max_gather_bytes" in fit:  # an option of the function alone
        sharded, sharded_warned = outcome(lambda: fit_sharded(SELECTORS[method](**params), folder, **fit))
    else:
        sharded, sharded_warned = outcome(lambda: SELECTORS[method](**params).fit_sharded(folder, **fit))
    assert sharded_warned == single_warned
    if isinstance(single, tuple):
        assert sharded == single
        return
    assert not isinstance(sharded, tuple), sharded
    assert sharded.indices.tolist() == single.indices.tolist()
    assert (sharded.order is None) == (single.order is None)
    if single.order is not None:
        assert sharded.order.tolist() == single.order.tolist()
    parameters = dict(sharded.record.parameters)
    shards = parameters.pop("shards")
    assert parameters == single.record.parameters
    assert shards["paths"] == paths
    assert shards["fingerprints"] == [f"fp-{folder.name}-{i}" for i in range(len(paths))]
    for key in ("budget", "seed", "pool", "kept", "indices_sha256"):
        assert getattr(sharded.record, key) == getattr(single.record, key), key
    assert sharded.record.scorers == [SCORER]


CASES = [
    ("top-k", {"column": "ce", "budget": 12}),
    ("top-k", {"column": "ce", "budget": "15%", "largest": False}),
    ("top-k", {"column": "ce", "budget": "400 tokens"}),
    ("top-k", {"column": "ce", "budget": "3000 tokens", "min_value": 0.5, "max_value": 1.5}),
    ("top-k", {"column": "n_tokens", "budget": "100000 tokens"}),  # more than the pool: the same error
    ("top-k", {"column": "ce", "budget": 10_000}),  # more rows than usable: the same error
    ("top-k", {"column": "n_tokens", "budget": "5 tokens", "largest": True}),  # smaller than the first row
    ("ifd", {"column": "ce", "budget": 9}),
    ("threshold", {"column": "ce", "min_value": 0.9, "max_value": 1.2}),
    ("random", {"budget": 11, "seed": 0}),
    ("random", {"budget": 11, "seed": 3, "column": "ce"}),
    ("random", {"budget": "500 tokens", "seed": 1}),
    ("within-clusters", {"score_column": "ce", "budget": 13}),
    ("within-clusters", {"score_column": "ce", "budget": "700 tokens", "largest": False}),
    ("centroid", {"budget": 10}),
    ("kmeans", {"column": "embedding", "n_clusters": 3, "budget": 12, "seed": 2}),
    ("kmeans", {"column": "embedding", "n_clusters": 3, "budget": "600 tokens", "score_column": "ce"}),
    ("kcenter", {"column": "embedding", "budget": 9, "device": "cpu"}),
    ("kcenter", {"column": "embedding", "budget": 7, "init": 3, "seed": 4, "mode": "one-shot", "device": "cpu"}),
    ("kcenter", {"column": "embedding", "budget": "300 tokens", "device": "cpu"}),
]


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    """For each cut, (pool, folder, paths), two pool seeds."""
    out = {}
    for seed, n in ((0, 97), (1, 160)):
        pool = make_pool(n, seed)
        for cut in CUTS:
            folder = tmp_path_factory.mktemp(f"s{seed}") / cut
            out[seed, cut] = (pool, folder, write_shards(pool, folder, cut))
    return out


@pytest.mark.parametrize("cut", list(CUTS))
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("method", "params"), CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(CASES)])
def test_sharded_equals_single_machine(pools, method, params, seed, cut):
    pool, folder, paths = pools[seed, cut]
    assert_same(method, params, pool, folder, paths)


KCENTER = [params for method, params in CASES if method == "kcenter"] + [
    {"column": "embedding", "budget": 8, "init": [5, 60, 2], "device": "cpu"},
    {"column": "embedding", "budget": "900 tokens", "init": 0, "mode": "one-shot", "device": "cpu"},
    {"column": "embedding", "budget": 6, "init": 0, "device": "cpu", "chunk_size": 7},
]


@pytest.mark.parametrize("cut", list(CUTS))
@pytest.mark.parametrize("params", KCENTER)
def test_kcenter_round_trips_equal_the_single_machine(pools, params, cut):
    """Embeddings over `max_gather_bytes` stay on the shards: one round trip a pick, the same picks."""
    pool, folder, paths = pools[1, cut]
    assert_same("kcenter", params, pool, folder, paths, max_gather_bytes=0)


def test_kmeans_on_faiss_training_sample(tmp_path):
    """A pool larger than faiss's training sample (256 rows a cluster): the shards send only the sampled
    vectors, and the clusters (so the quotas) are those of the whole pool."""
    pool = make_pool(700, 5, dim=3)
    folder = tmp_path / "uneven"
    paths = write_shards(pool, folder, "uneven")
    assert_same("kmeans", {"column": "embedding", "n_clusters": 2, "budget": 40, "seed": 1}, pool, folder, paths)
    single = SELECTORS["kmeans"](column="embedding", n_clusters=2, budget=40, seed=1).fit(pool)
    assert single.record.parameters["clustering"]["training_rows"] == 512


def test_subset_with_the_pool_equals_the_single_machine_subset(pools):
    pool, folder, _ = pools[0, "three"]
    for method, params in [CASES[0], CASES[15]]:
        single = SELECTORS[method](**params).fit(pool)
        sharded = SELECTORS[method](**params).fit_sharded(folder, pool=pool)
        assert sharded.dataset.column_names == single.dataset.column_names
        assert str(sharded.dataset.to_dict()) == str(single.dataset.to_dict())  # NaN equals NaN here
    alone = SELECTORS["top-k"](column="ce", budget=5).fit_sharded(folder)
    assert alone.dataset.column_names == [INDEX_COLUMN, *pool.column_names]
    assert alone.dataset[INDEX_COLUMN] == alone.indices.tolist()
    assert str(alone.dataset.remove_columns(INDEX_COLUMN).to_dict()) == str(pool.select(alone.indices).to_dict())


def test_bad_shardings_are_refused(pools, tmp_path):
    pool, _, paths = pools[0, "three"]
    with pytest.raises(InputError, match=r"2 sidecars of 3 shards \(missing shards \[1\]\)"):
        ShardedScores.open([paths[0], paths[2]])
    with pytest.raises(InputError, match="shard 0 is given twice"):
        ShardedScores.open([*paths, shutil.copy(paths[0], tmp_path / "copy.parquet")])
    write_sidecar(pa.table({INDEX_COLUMN: list(range(35)), "ce": [0.0] * 35}), tmp_path / "other" / "a.parquet", {})
    write_sidecar(pa.table({INDEX_COLUMN: list(range(30, 40)), "ce": [1.0] * 10}), tmp_path / "other" / "b.parquet", {})
    with pytest.raises(InputError, match=r"b.parquet repeats rows 30..34"):
        ShardedScores.open(tmp_path / "other")
    with pytest.raises(InputError, match="holds no"):
        ShardedScores.open((tmp_path / "empty").mkdir() or tmp_path / "empty")
    with pytest.raises(InputError, match="pool has 5 rows but the score sidecars cover 97"):
        SELECTORS["top-k"](column="ce", budget=2).fit_sharded(paths, pool=pool.select(range(5)))
    with pytest.raises(InputError, match="'nope' is not in every score sidecar"):
        SELECTORS["top-k"](column="nope", budget=2).fit_sharded(paths)
    with pytest.raises(InputError, match="does not select from sharded scores"):
        SELECTORS["zip"](budget=2).fit_sharded(paths)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 << 20)
    yield ray
    ray.shutdown()


def test_ray_tasks_equal_the_local_steps(local_ray, pools):
    pool, folder, paths = pools[1, "uneven"]
    for method, params in [CASES[2], CASES[6], CASES[16]]:
        assert_same(method, params, pool, folder, paths, ray=True)
    assert_same("kcenter", KCENTER[0], pool, folder, paths, ray=True, max_gather_bytes=0)  # Ray actors


def _pool_rows(n: int) -> Dataset:
    rng = np.random.default_rng(7)
    rows = {
        "id": [f"r{i}" for i in range(n)],
        "conversations": [
            [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": "ok " * (i % 9 + 1)}] for i in range(n)
        ],
        "source": [f"src{i % 3}" for i in range(n)],
    }
    scores = {
        "n_tokens": rng.integers(3, 40, n).astype(float).tolist(),
        "ce": [None if i % 11 == 4 else float(v) for i, v in enumerate(np.round(rng.random(n), 1))],
        "cluster": (rng.integers(0, 3, n)).tolist(),
    }
    return Dataset.from_dict(rows), Dataset.from_dict({**rows, **scores})


def _record(folder) -> dict:
    record = json.loads((folder / "selection.json").read_text())
    record["parameters"].pop("shards", None)
    for key in ("source", "scorers", "command", "created_at", "hf_select_version"):
        record.pop(key, None)
    return record


def test_cli_sharded_select_writes_the_single_machine_folder(tmp_path, capsys):
    """`hf-select select SIDECARS --sharded --pool POOL` writes the selection folder (and controls) that
    `hf-select select SCORED` writes, save the record's provenance and its `shards`."""
    from hf_select.cli import main
    from hf_select.save import load_selection_folder

    rows, scored = _pool_rows(50)
    rows.to_parquet(tmp_path / "pool.parquet")
    scored.to_parquet(tmp_path / "scored.parquet")
    sidecars = tmp_path / "sidecars"
    write_shards(scored.remove_columns(rows.column_names), sidecars, "uneven")
    method = ["--method", "within-clusters", "--column", "ce", "--budget", "9", "--controls", "2"]
    assert main(["select", str(tmp_path / "scored.parquet"), *method, "-o", str(tmp_path / "single")]) == 0
    sharded = ["select", str(sidecars), "--sharded", "--pool", str(tmp_path / "pool.parquet"), *method]
    assert main([*sharded, "-o", str(tmp_path / "sharded")]) == 0
    for single, ours in [
        ("single", "sharded"),
        *[(f"single-controls/seed-{s}", f"sharded-controls/seed-{s}") for s in (0, 1)],
    ]:
        assert _record(tmp_path / ours) == _record(tmp_path / single)
        a, b = load_selection_folder(tmp_path / ours), load_selection_folder(tmp_path / single)
        assert a.column_names == b.column_names
        assert str(a.to_dict()) == str(b.to_dict())
    shards = json.loads((tmp_path / "sharded" / "selection.json").read_text())["parameters"]["shards"]
    assert shards["fingerprints"] == [f"fp-uneven-{i}" for i in range(4)]
    assert (tmp_path / "sharded" / "README.md").exists()

    capsys.readouterr()
    assert main([*sharded[:3], *method[:-2], "-o", str(tmp_path / "alone")]) == 0
    assert "No --pool" in capsys.readouterr().out
    alone = load_selection_folder(tmp_path / "alone")
    single = load_selection_folder(tmp_path / "single")
    assert alone.column_names == [INDEX_COLUMN, "n_tokens", "ce", "cluster"]
    assert alone["ce"] == single["ce"] and alone["n_tokens"] == single["n_tokens"]

    assert main(["select", str(tmp_path / "scored.parquet"), "--pool", "x", *method, "-o", str(tmp_path / "e")]) == 2
    assert "--pool goes with --sharded" in capsys.readouterr().err
