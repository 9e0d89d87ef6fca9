"""Sharded scoring (issue #13): Ray actors, `--shard i/N` + `merge`, and sidecar output give exactly the
single-process scores, in pool order; a killed actor or driver loses nothing and repeats nothing; a GPU
request on a cluster without GPUs is a clear error. One local Ray cluster (2 CPUs) serves the module."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # before ray is imported: no usage reports

import numpy as np
import pyarrow.parquet as pq
import pytest

from hf_select import TokenLengthScorer, embedded
from hf_select.cli import main
from hf_select.distributed.layout import INDEX_COLUMN, read_sidecar_meta, sidecar_name
from hf_select.distributed.local import score_locally
from hf_select.distributed.merge import merge_scores, read_scores
from hf_select.distributed.ray_engine import score_with_ray
from hf_select.distributed.shard_scoring import batch_ranges
from hf_select.errors import InputError
from hf_select.pool import load_pool
from hf_select.scorers import CrossEntropyScorer

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed (pip install 'hf-select[ray]')")

N_ROWS, BATCH = 64, 8
MAX_LENGTH = 96


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: str) -> str:
    """Real ShareGPT rows, a few of them unscorable (NaN and a reason), as a jsonl file."""
    rows = load_pool(embedded.SHAREGPT, limit=600).dataset
    errors = rows.map(TokenLengthScorer(tokenizer=tiny_tokenizer), batched=True)["n_tokens_error"]
    bad = [i for i, e in enumerate(errors) if e][:6]
    good = [i for i, e in enumerate(errors) if not e][: N_ROWS - len(bad)]
    assert len(bad) == 6
    pool = rows.select(sorted(good[:30] + bad + good[30:]))
    path = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    pool.to_json(str(path))
    return str(path)


def _scorers(tiny_tokenizer: str, tiny_model: str) -> dict[str, object]:
    return {
        "token-length": TokenLengthScorer(tokenizer=tiny_tokenizer),
        "ce": CrossEntropyScorer(model=tiny_model, max_length=MAX_LENGTH),
    }


def _assert_same(scored, reference, columns) -> None:
    """Bit for bit: float64 scores (NaN in the same places) and error reasons, in pool order."""
    for name in columns:
        if name.endswith("_error"):
            assert list(scored[name]) == list(reference[name]), name
        else:
            got, want = np.asarray(scored[name], dtype=np.float64), np.asarray(reference[name], dtype=np.float64)
            assert np.array_equal(got.view(np.uint64), want.view(np.uint64)), name
    assert scored["id"] == reference["id"]


def test_batch_ranges_are_whole_batches() -> None:
    assert batch_ranges(20, 3, 8) == [range(0, 8), range(8, 16), range(16, 20)]
    assert batch_ranges(3, 4, 2) == [range(0, 2), range(2, 3), range(3, 3), range(3, 3)]
    ranges = batch_ranges(1001, 7, 10)
    assert all(r.start % 10 == 0 for r in ranges) and [i for r in ranges for i in r] == list(range(1001))


@pytest.mark.parametrize("method", ["token-length", "ce"])
def test_ray_engine_equals_single_process(cluster, pool_file, tiny_tokenizer, tiny_model, tmp_path, method) -> None:
    pool, source, _ = load_pool(pool_file)
    scorer = _scorers(tiny_tokenizer, tiny_model)[method]
    reference = pool.map(scorer, batched=True, batch_size=BATCH)
    assert any(reference[scorer.error_column]) and not all(reference[scorer.error_column])  # both kinds of rows
    reports = score_with_ray(scorer, pool, tmp_path, source=source, n_shards=3, batch_size=BATCH, actors=2)
    assert [r["shard"] for r in reports] == [0, 1, 2] and not any(r["skipped"] for r in reports)
    _assert_same(merge_scores(pool, tmp_path), reference, scorer.columns_added)
    assert not (tmp_path / "pool").exists()  # the pool shards go once every shard is scored
    meta = read_sidecar_meta(tmp_path / sidecar_name(1, 3))
    assert meta["fingerprint"] == scorer.fingerprint() and meta["scorer"]["method"] == method
    assert meta["rows"] == [24, 48] and meta["shard"] == 1 and meta["n_shards"] == 3
    assert meta["pool"]["sha256"] == source["sha256"] and meta["columns"] == list(scorer.columns_added)
    again = score_with_ray(scorer, pool, tmp_path, source=source, n_shards=3, batch_size=BATCH, actors=2)
    assert all(r["skipped"] for r in again)


def test_shard_cli_and_merge_equal_single_process(pool_file, tiny_model, tmp_path, capsys) -> None:
    """`--shard i/3` three times (as three machines would) then `merge --pool`: the scored pool, exactly."""
    flags = ["--method", "ce", "--model", tiny_model, "--max-length", str(MAX_LENGTH), "--batch-size", str(BATCH)]
    out = tmp_path / "sidecars"
    for i in (2, 0, 1):
        assert main(["score", pool_file, *flags, "--shard", f"{i}/3", "-o", str(out), "--quiet"]) == 0
        assert f"Scored shards [{i}]" in capsys.readouterr().out
    assert main(["merge", str(out), "--pool", pool_file, "-o", str(tmp_path / "merged")]) == 0
    from datasets import load_from_disk

    pool = load_pool(pool_file).dataset
    scorer = CrossEntropyScorer(model=tiny_model, max_length=MAX_LENGTH)
    _assert_same(load_from_disk(str(tmp_path / "merged")), pool.map(scorer, batched=True, batch_size=BATCH),
                 scorer.columns_added)  # fmt: skip
    sidecar_bytes = sum(p.stat().st_size for p in out.iterdir())
    assert sidecar_bytes < Path(pool_file).stat().st_size  # the scores only, never the pool


def test_scores_only_with_two_processes_and_merge_errors(pool_file, tiny_tokenizer, tmp_path, capsys) -> None:
    flags = ["--method", "token-length", "--tokenizer", tiny_tokenizer, "--batch-size", str(BATCH)]
    out = tmp_path / "scores"
    assert main(["score", pool_file, *flags, "--scores-only", "--num-proc", "2", "--shards", "4", "-o", str(out)]) == 0
    pool = load_pool(pool_file).dataset
    scorer = TokenLengthScorer(tokenizer=tiny_tokenizer)
    scores = read_scores(out).table
    assert scores.column(INDEX_COLUMN).to_pylist() == list(range(N_ROWS))
    _assert_same(merge_scores(pool, out), pool.map(scorer, batched=True, batch_size=BATCH), scorer.columns_added)
    capsys.readouterr()

    (out / sidecar_name(1, 4)).unlink()
    assert main(["merge", str(out), "-o", str(tmp_path / "m")]) == 2
    assert "shards 1 of 4 are missing" in capsys.readouterr().err
    other = tmp_path / "other"
    score_locally(scorer, pool, other, n_shards=2, batch_size=BATCH)
    shutil.copy(other / sidecar_name(1, 2), out / sidecar_name(1, 2))
    assert main(["merge", str(out), "-o", str(tmp_path / "m")]) == 2
    assert "different scoring runs (n_shards" in capsys.readouterr().err
    # another scorer configuration in the folder: an error naming both fingerprints, not a silent mix
    os.unlink(out / sidecar_name(1, 2))
    code = main(["score", pool_file, *flags, "--template", "paper", "--scores-only", "--shards", "4", "-o", str(out)])
    assert code == 2 and "another scorer configuration (fingerprint" in capsys.readouterr().err
    assert main(["score", pool_file, *flags, "--scores-only", "--shards", "4", "-o", str(out)]) == 0  # resume
    assert "Scored shards [1]; already done: [0, 2, 3]" in capsys.readouterr().out
    too_few = main(["merge", str(out), "--pool", pool_file, "--limit", "10", "-o", str(tmp_path / "m")])
    assert too_few == 2 and "is not the pool the sidecars scored" in capsys.readouterr().err


def test_killed_actor_every_row_exactly_once(cluster, pool_file, tiny_model, tmp_path) -> None:
    """SIGKILL an actor's process as soon as it has written a sidecar (it is then replying, or scoring its next
    shard): Ray restarts it and retries the call; each shard is written once, every row scored once, exactly."""
    pool, source, _ = load_pool(pool_file)
    scorer = CrossEntropyScorer(model=tiny_model, max_length=MAX_LENGTH)
    with ThreadPoolExecutor(1) as executor:
        run = executor.submit(
            score_with_ray, scorer, pool, tmp_path, source=source, n_shards=8, batch_size=BATCH, actors=2
        )
        deadline = time.time() + 120
        while not list(tmp_path.glob("scores-*.parquet")) and time.time() < deadline:
            time.sleep(0.02)
        first = list(tmp_path.glob("scores-*.parquet"))[0]
        victim = read_sidecar_meta(first)["worker"]["pid"]
        os.kill(victim, signal.SIGKILL)
        reports = run.result(timeout=180)
    assert sorted(r["shard"] for r in reports) == list(range(8))
    # two actors, and the restarted one that retried the killed call (which finds the sidecar there when
    # the kill came between its rename and its reply: `skipped`, never written twice)
    pids = {read_sidecar_meta(p)["worker"]["pid"] for p in tmp_path.glob("scores-*.parquet")}
    assert len(pids | {r["pid"] for r in reports}) >= 3
    _assert_same(merge_scores(pool, tmp_path), pool.map(scorer, batched=True, batch_size=BATCH), scorer.columns_added)


def test_killed_driver_rerun_scores_only_missing_shards(cluster, pool_file, tiny_model, tmp_path, capsys) -> None:
    out = tmp_path / "scores"
    args = ["score", pool_file, "--method", "ce", "--model", tiny_model, "--max-length", str(MAX_LENGTH),
            "--batch-size", str(BATCH), "--engine", "ray", "--actors", "1", "--shards", "8", "--scores-only",
            "-o", str(out)]  # fmt: skip
    env = {**os.environ, "HF_SELECT_PROGRESS": "0"}
    log = open(tmp_path / "driver.log", "w")  # noqa: SIM115 - the driver writes it until killed
    driver = subprocess.Popen(
        [sys.executable, "-m", "hf_select", *args, "--address", cluster], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.time() + 300  # a loaded machine takes a while to start the driver and its actor
        while not list(out.glob("scores-*.parquet")) and time.time() < deadline and driver.poll() is None:
            time.sleep(0.02)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
    time.sleep(3)  # Ray ends the dead driver's actor (it may finish the shard it was on)
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("scores-*.parquet")}
    assert 1 <= len(done) < 8, (done, (tmp_path / "driver.log").read_text()[-3000:])
    assert main(args) == 0
    ran = re.search(r"Scored shards \[([\d, ]+)\]", capsys.readouterr().out).group(1)
    expected = sorted(set(range(8)) - {int(name[7:12]) for name in done})
    assert [int(i) for i in ran.split(",")] == expected
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("scores-*.parquet") if p.name in done} == done
    pool = load_pool(pool_file).dataset
    scorer = CrossEntropyScorer(model=tiny_model, max_length=MAX_LENGTH)
    _assert_same(merge_scores(pool, out), pool.map(scorer, batched=True, batch_size=BATCH), scorer.columns_added)


def test_gpu_request_without_gpus_is_a_clear_error(cluster, pool_file, tiny_model, tmp_path, capsys) -> None:
    pool, source, _ = load_pool(pool_file)
    scorer = CrossEntropyScorer(model=tiny_model, max_length=MAX_LENGTH)
    t0 = time.time()
    with pytest.raises(InputError, match=r"need 2 GPU\(s\), but the Ray cluster has 0"):
        score_with_ray(scorer, pool, tmp_path, source=source, actors=2, gpus_per_actor=1)
    assert time.time() - t0 < 30
    args = ["score", pool_file, "--method", "ce", "--model", tiny_model, "--engine", "ray", "--gpus-per-actor", "1"]
    assert main([*args, "--scores-only", "-o", str(tmp_path / "x")]) == 2
    assert "but the Ray cluster has 0" in capsys.readouterr().err
    # no GPU asked for: a model scorer runs on CPU actors
    reports = score_with_ray(scorer, pool, tmp_path / "cpu", source=source, n_shards=1, batch_size=BATCH, actors=1)
    assert pq.read_table(tmp_path / "cpu" / sidecar_name(0, 1)).num_rows == N_ROWS and len(reports) == 1


def test_shards_from_machines_that_mount_the_pool_elsewhere(pool_file, tiny_tokenizer, tmp_path, capsys) -> None:
    """Two machines read the same file at different paths: their sidecars merge (same rows, same digest);
    another file with the same row count does not."""
    elsewhere = tmp_path / "mnt" / "pool.jsonl"
    elsewhere.parent.mkdir()
    shutil.copy(pool_file, elsewhere)
    flags = ["--method", "token-length", "--tokenizer", tiny_tokenizer, "--batch-size", str(BATCH), "--quiet"]
    out = tmp_path / "scores"
    assert main(["score", pool_file, *flags, "--shard", "0/2", "-o", str(out)]) == 0
    assert main(["score", str(elsewhere), *flags, "--shard", "1/2", "-o", str(out)]) == 0
    assert main(["merge", str(out), "--pool", str(elsewhere), "-o", str(tmp_path / "merged")]) == 0
    other = tmp_path / "other.jsonl"
    lines = Path(pool_file).read_text().splitlines()
    other.write_text("\n".join(lines[1:] + lines[:1]) + "\n")  # the same rows, in another order
    capsys.readouterr()
    assert main(["score", str(other), *flags, "--shard", "1/2", "-o", str(out)]) == 2
    assert "has pool=" in capsys.readouterr().err
