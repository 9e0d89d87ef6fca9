"""Resume after a crash: a multi-process `map` whose second shard fails is re-run, and only that shard is
recomputed, giving the same results as an uninterrupted run."""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import Dataset, load_from_disk

from hf_select import TokenLengthScorer
from hf_select.encoding import ConversationEncoder

N_ROWS = 40
FAILING_ROW = "row-39"  # the last row of shard 1 of 2


@dataclass(kw_only=True)
class CrashingTokenLength(TokenLengthScorer):
    """Logs every row it scores; while the crash marker exists, fails on FAILING_ROW once shard 0 is saved.

    The control files come from the environment, not the configuration, so the fingerprint (and therefore
    the cache file names) is the same in the crashing run and in the re-run.
    """

    def score(self, batch: Mapping[str, Sequence[Any]], resources: ConversationEncoder) -> Any:
        with open(os.environ["HF_SELECT_TEST_LOG"], "a", encoding="utf-8") as log:
            log.write("".join(f"{row_id}\n" for row_id in batch["id"]))
        if FAILING_ROW in batch["id"] and os.path.exists(os.environ["HF_SELECT_TEST_CRASH"]):
            shard0 = os.path.join(os.environ["HF_SELECT_TEST_CACHE"], "cache-*_00000_of_00002.arrow")
            deadline = time.time() + 60
            while not glob.glob(shard0) and time.time() < deadline:  # let shard 0 finish first
                time.sleep(0.05)
            raise RuntimeError("injected crash")
        return super().score(batch, resources)


def _pool() -> Dataset:
    rows = []
    for i in range(N_ROWS):
        turns = [{"from": "human", "value": f"Question {i}: " + "why? " * (i % 7)}]
        turns.append({"from": "gpt", "value": f"Answer {i}. " + "Because. " * (i % 11)})
        rows.append({"id": f"row-{i}", "conversations": turns if i % 13 else turns[:1]})  # some bad rows
    return Dataset.from_list(rows)


def test_rerun_after_crash_recomputes_only_the_failed_shard(
    tmp_path: Path, tiny_tokenizer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shard 0 is loaded from datasets' cache on the re-run; shard 1 is recomputed; results are exact."""
    _pool().save_to_disk(str(tmp_path / "pool"))
    pool = load_from_disk(str(tmp_path / "pool"))  # file-backed, so map writes cache files beside it
    log, crash = tmp_path / "calls.log", tmp_path / "crash"
    monkeypatch.setenv("HF_SELECT_TEST_LOG", str(log))
    monkeypatch.setenv("HF_SELECT_TEST_CRASH", str(crash))
    monkeypatch.setenv("HF_SELECT_TEST_CACHE", str(tmp_path / "pool"))
    scorer = CrashingTokenLength(tokenizer=tiny_tokenizer)

    crash.touch()
    with pytest.raises(RuntimeError, match="injected crash"):
        pool.map(scorer, batched=True, batch_size=5, with_rank=True, num_proc=2)
    assert len(glob.glob(str(tmp_path / "pool" / "cache-*_00000_of_00002.arrow"))) == 1
    assert not glob.glob(str(tmp_path / "pool" / "cache-*_00001_of_00002.arrow"))

    crash.unlink()
    log.unlink()
    resumed = pool.map(
        CrashingTokenLength(tokenizer=tiny_tokenizer), batched=True, batch_size=5, with_rank=True, num_proc=2
    )
    recomputed = log.read_text().split()
    assert sorted(recomputed) == sorted(f"row-{i}" for i in range(N_ROWS // 2, N_ROWS))

    reference = _pool().map(TokenLengthScorer(tokenizer=tiny_tokenizer), batched=True)
    assert resumed.column_names == reference.column_names
    for column in ("n_tokens_prompt", "n_tokens_response", "n_tokens"):
        np.testing.assert_array_equal(np.array(resumed[column]), np.array(reference[column]))  # NaN == NaN here
    for column in ("id", "conversations", "n_tokens_error"):
        assert resumed[column] == reference[column]
    assert resumed["id"] == [f"row-{i}" for i in range(N_ROWS)]
    assert sum(1 for e in resumed["n_tokens_error"] if e) == len(range(0, N_ROWS, 13))


def test_fingerprint_is_stable_across_processes(tiny_tokenizer: str) -> None:
    """The datasets hash of a scorer is a function of its configuration only, in any process."""
    import subprocess
    import sys

    code = (
        "from datasets.fingerprint import Hasher; from hf_select import TokenLengthScorer;"
        f"print(Hasher.hash(TokenLengthScorer(tokenizer={tiny_tokenizer!r}, template='paper')))"
    )
    hashes = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    from datasets.fingerprint import Hasher

    local = TokenLengthScorer(tokenizer=tiny_tokenizer, template="paper")
    local(_pool()[:3])  # loading resources must not change the hash
    assert hashes == {Hasher.hash(local) + "\n"}
