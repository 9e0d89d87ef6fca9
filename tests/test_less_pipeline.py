"""LESS from the command line, as a user runs it: `less-warmup`, then `score --method less` (in one process,
and as two `--shard i/2` runs merged), then `select --method less`, on a tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import load_from_disk

from hf_select import select
from hf_select.cli import main


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = []
    for i in range(24):
        turns = [{"from": "human", "value": f"What is {i} plus {i}?"},
                 {"from": "gpt", "value": f"It is {2 * i}. " * (1 + i % 3)}]  # fmt: skip
        if i % 5 == 2:
            turns += [{"from": "human", "value": "Why?"}, {"from": "gpt", "value": "Because it adds up."}]
        rows.append({"id": i, "conversations": turns})
    path = tmp_path_factory.mktemp("less-pool") / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_warmup_score_shards_merge_and_select(
    pool_file: Path, tiny_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warm = tmp_path / "warmup"
    argv = ["less-warmup", str(pool_file), "-o", str(warm), "--model", tiny_model, "--lora-r", "4",
            "--lora-alpha", "16", "--epochs", "2", "--sample", "6", "--max-length", "64", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    score = ["score", str(pool_file), "--method", "less", "--warmup", str(warm), "--n-targets", "5",
             "--batch-size", "8"]  # fmt: skip
    assert main([*score, "-o", str(tmp_path / "dry"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "less on 24 rows" in printed and "estimated time" in printed and not (tmp_path / "dry").exists()
    assert main([*score, "-o", str(tmp_path / "scored")]) == 0
    scored = load_from_disk(str(tmp_path / "scored"))
    less = np.array(scored["less"], dtype=float)
    assert scored["id"] == list(range(24)) and np.isfinite(less).all() and len(set(less.tolist())) == 24

    # Two machines, one shard each, then merged: the same targets (drawn from the whole pool on each) and scores.
    for shard in ("1/2", "0/2"):
        assert main([*score, "--shard", shard, "-o", str(tmp_path / "sidecars")]) == 0
    assert main(["merge", str(tmp_path / "sidecars"), "--pool", str(pool_file), "-o", str(tmp_path / "merged")]) == 0
    merged = load_from_disk(str(tmp_path / "merged"))
    assert merged["id"] == list(range(24))
    np.testing.assert_allclose(merged["less"], less, rtol=1e-6, atol=1e-9)

    out = tmp_path / "sel"
    assert main(["select", str(tmp_path / "scored"), "--method", "less", "--budget", "5", "-o", str(out)]) == 0
    record = json.loads((out / "selection.json").read_text())
    expected = select.less_top_k(scored, 5)
    assert sorted(expected.indices.tolist()) == sorted(np.argsort(-less, kind="stable")[:5].tolist())
    assert record["method"] == "less" and record["indices_sha256"] == expected.record.indices_sha256
    (scorer,) = [s for s in record["scorers"] if s["method"] == "less"]
    assert scorer["warmup"]["model"] == tiny_model and scorer["config"]["n_targets"] == 5
    card = (out / "README.md").read_text()
    assert "### LESS (gradient influence)" in card and f"--method less --warmup {warm}" in card
