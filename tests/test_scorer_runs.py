"""How scorers run under `map` (issue #10): bad Unicode in Python-object batches, a forgotten `batched=True`,
strict errors naming the dataset's row, streaming datasets, progress per micro-batch, the dry run on a small
pool, workers that exit with a killed parent, and checkpoints that survive a `kill -9`."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset, IterableDataset

from hf_select import InputError, RowError, TokenLengthScorer, progress
from hf_select.estimate import estimate
from hf_select.model_cache import MODELS
from hf_select.scorers import CrossEntropyScorer, SelectITScorer

ROOT = Path(__file__).resolve().parents[1]


def _rows(n: int, bad: set[int] = frozenset()) -> list[dict]:
    out = []
    for i in range(n):
        answer = f"Answer {i}. " + "Because. " * (i % 5)
        turns = [{"from": "human", "value": f"Question {i}?"}, {"from": "gpt", "value": answer}]
        out.append({"id": f"r{i}", "conversations": turns[:1] if i in bad else turns})
    return out


def test_lone_surrogate_in_a_python_batch_fails_only_its_row(tiny_tokenizer: str) -> None:
    """A generator can yield str that is not valid Unicode; the tokenizer would fail the whole batch."""
    rows = _rows(4)
    rows[1]["conversations"][1]["value"] = "broken \ud800 text"

    def gen():  # noqa: ANN202
        yield from rows

    scorer = TokenLengthScorer(tokenizer=tiny_tokenizer, template="paper")
    got = list(IterableDataset.from_generator(gen).map(scorer, batched=True, batch_size=4))
    assert [r["id"] for r in got] == ["r0", "r1", "r2", "r3"]
    assert math.isnan(got[1]["n_tokens"]) and "lone surrogate" in got[1]["n_tokens_error"]
    clean = Dataset.from_list([rows[i] for i in (0, 2, 3)]).map(scorer, batched=True)
    assert [got[i]["n_tokens"] for i in (0, 2, 3)] == clean["n_tokens"][:]


def test_map_without_batched_is_a_clear_error(tiny_tokenizer: str) -> None:
    scorer = TokenLengthScorer(tokenizer=tiny_tokenizer)
    with pytest.raises(InputError, match="batched=True"):
        Dataset.from_list(_rows(3)).map(scorer)
    only_turns = Dataset.from_list(_rows(3)).remove_columns("id")  # the one column holds a list per row
    with pytest.raises(InputError, match="batched=True"):
        only_turns.map(scorer)


@pytest.mark.parametrize("num_proc", [None, 2])
def test_strict_error_names_the_dataset_row(tiny_tokenizer: str, num_proc: int | None) -> None:
    """Row 7 is bad; batches of 3 put it at position 1 of its batch: the error must say 7, with or without a rank."""
    ds = Dataset.from_list(_rows(10, bad={7}))
    scorer = TokenLengthScorer(tokenizer=tiny_tokenizer, strict=True)
    for kwargs in ({"with_indices": True}, {"with_indices": True, "with_rank": True}):
        with pytest.raises(RowError) as info:
            ds.map(scorer, batched=True, batch_size=3, num_proc=num_proc, **kwargs)
        assert info.value.index == 7 and "no assistant turn" in str(info.value)
    with pytest.raises(RowError, match=r"row 7: no assistant turn"):
        scorer.map(ds, batch_size=3, num_proc=num_proc, progress=False)
    with pytest.raises(RowError) as info:  # checkpointed chunks shift their indices back to the dataset's
        scorer.map(ds, batch_size=2, checkpoint_every=4, progress=False, load_from_cache_file=False)
    assert info.value.index == 7
    with pytest.raises(RowError, match="pass with_indices=True"):  # no indices: says what it knows and how to fix
        ds.map(scorer, batched=True, batch_size=3, with_rank=True)


def test_streaming_dataset_is_scored_like_a_dataset(tiny_tokenizer: str) -> None:
    rows = _rows(9, bad={4})
    scorer = TokenLengthScorer(tokenizer=tiny_tokenizer)
    want = Dataset.from_list(rows).map(scorer, batched=True, batch_size=4)
    streamed = Dataset.from_list(rows).to_iterable_dataset(num_shards=3)
    for got in (list(streamed.map(scorer, batched=True, batch_size=4)), list(scorer.map(streamed, batch_size=4))):
        assert [r["id"] for r in got] == want["id"][:]
        np.testing.assert_array_equal([r["n_tokens"] for r in got], want["n_tokens"][:])
        assert [r["n_tokens_error"] for r in got] == want["n_tokens_error"][:]


def test_progress_moves_per_micro_batch(tiny_model: str) -> None:
    """One `map` batch of 12 rows, a budget that fits one row per forward: 12 steps, not 1."""
    steps: list[progress.Step] = []
    stop = progress.listen(steps.append)
    try:
        scorer = CrossEntropyScorer(model=tiny_model, template="paper", dtype="float32", batch_tokens=8)
        Dataset.from_list(_rows(12)).map(scorer, batched=True, batch_size=1000)
    finally:
        stop()
    assert len(steps) == 12 and all(s.sequences == 1 for s in steps)
    assert sum(s.rows for s in steps) == pytest.approx(12) and all(s.tokens > 0 for s in steps)


def test_cli_score_shows_a_bar_unless_quiet(tmp_path: Path, tiny_model: str) -> None:
    pool = tmp_path / "pool.jsonl"
    Dataset.from_list(_rows(6)).to_json(str(pool))
    argv = [sys.executable, "-m", "hf_select", "score", str(pool), "--method", "ce", "--model", tiny_model]
    loud = subprocess.run([*argv, "-o", str(tmp_path / "a")], capture_output=True, text=True, check=True)
    assert "hf-select ce" in loud.stderr and "tokens/s" in loud.stderr
    quiet = subprocess.run([*argv, "--quiet", "-o", str(tmp_path / "b")], capture_output=True, text=True, check=True)
    assert "tokens/s" not in quiet.stderr


def test_dry_run_on_a_small_pool_scores_a_part_of_it(tiny_model: str) -> None:
    steps: list[progress.Step] = []
    stop = progress.listen(steps.append)
    try:
        scorer = CrossEntropyScorer(model=tiny_model, template="paper", dtype="float32")
        result = estimate(scorer, Dataset.from_list(_rows(10)), probe_rows=64)
    finally:
        stop()
    assert result["probe_rows"] == 5 and result["rows"] == 10
    assert sum(s.sequences for s in steps) == 2 + 5  # the 2-row warm-up and the probe, not the whole pool
    with pytest.raises(InputError, match="too few"):
        estimate(scorer, Dataset.from_list(_rows(3)))


def test_selectit_loads_each_model_once(tiny_model: str, tmp_path: Path, tiny_tokenizer: str) -> None:
    """Model-level SelectIT with two extra models holds three models; batches after the first load nothing."""
    from tiny_model import build_tiny_model

    extra = [build_tiny_model(tmp_path / f"m{k}", tiny_tokenizer, seed=k + 1) for k in range(2)]
    scorer = SelectITScorer(model=tiny_model, extra_models=tuple(extra), template="paper", dtype="float32")
    ds = Dataset.from_list(_rows(6))
    ds.map(scorer, batched=True, batch_size=2)
    loads = MODELS.loads
    ds.map(scorer, batched=True, batch_size=2, load_from_cache_file=False)
    assert MODELS.loads == loads


SLOW_SCORER = """
import os, time
from dataclasses import dataclass
from hf_select import TokenLengthScorer

@dataclass(kw_only=True)
class SlowTokenLength(TokenLengthScorer):
    def score(self, batch, resources):
        with open(os.environ["SLOW_LOG"], "a") as log:
            log.write("".join(f"{os.getpid()} {row_id}\\n" for row_id in batch["id"]))
        time.sleep(float(os.environ.get("SLOW_SECONDS", "0.3")))
        return super().score(batch, resources)
"""


def _run_script(tmp_path: Path, body: str, env: dict[str, str], args: list[str] = ()) -> subprocess.Popen:
    (tmp_path / "slow_scorer.py").write_text(SLOW_SCORER)
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT / 'tests'}", **env}
    command = [sys.executable, str(script), *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _processes_running(script: Path) -> list[int]:
    """Live processes whose command line runs `script` (forked children keep their parent's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(script).encode() in command and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _wait_for(predicate, seconds: float = 60.0) -> bool:  # noqa: ANN001
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kill -9 of a process tree, read from /proc")
@pytest.mark.parametrize("how", ["plain", "scorer.map"])
def test_workers_exit_when_the_main_process_is_killed(tmp_path: Path, tiny_tokenizer: str, how: str) -> None:
    log = tmp_path / "calls.log"
    body = f"""
        import sys
        from datasets import Dataset
        from slow_scorer import SlowTokenLength
        from test_scorer_runs import _rows
        ds = Dataset.from_list(_rows(400))
        scorer = SlowTokenLength(tokenizer={tiny_tokenizer!r})
        if sys.argv[1:] == ["plain"]:
            ds.map(scorer, batched=True, batch_size=2, num_proc=2, with_rank=True)
        else:
            scorer.map(ds, batch_size=2, num_proc=2)
    """
    main = _run_script(tmp_path, body, {"SLOW_LOG": str(log), "SLOW_SECONDS": "0.5"}, args=[how])
    try:
        assert _wait_for(lambda: log.exists() and len({line.split()[0] for line in log.read_text().splitlines()}) == 2)
        workers = {int(line.split()[0]) for line in log.read_text().splitlines()}
        assert main.pid not in workers
        os.kill(main.pid, signal.SIGKILL)
        main.wait()
        assert _wait_for(lambda: not any(_alive(pid) for pid in workers), 15), "workers outlived their parent"
        if how == "scorer.map":  # datasets' manager process (forked, none of our code runs in it) too
            assert _wait_for(lambda: not _processes_running(tmp_path / "run.py"), 15), "a child outlived its parent"
    finally:
        main.kill()
        for pid in _processes_running(tmp_path / "run.py"):  # plain ds.map: datasets' idle manager process
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9 is a POSIX test")
def test_checkpoints_survive_kill_9_and_resume_to_identical_scores(tmp_path: Path, tiny_tokenizer: str) -> None:
    log, out, checkpoints = tmp_path / "calls.log", tmp_path / "out", tmp_path / "checkpoints"
    body = f"""
        import sys
        from datasets import Dataset
        from slow_scorer import SlowTokenLength
        from test_scorer_runs import _rows
        ds = Dataset.from_list(_rows(40, bad={{5, 33}}))
        scorer = SlowTokenLength(tokenizer={tiny_tokenizer!r})
        scored = scorer.map(ds, batch_size=5, checkpoint_every=10, checkpoint_dir={str(checkpoints)!r})
        scored.save_to_disk({str(out)!r})
    """
    env = {"SLOW_LOG": str(log), "SLOW_SECONDS": "0.4"}
    first = _run_script(tmp_path, body, env)
    try:
        assert _wait_for(lambda: len(list(checkpoints.glob("*/rows-*.arrow"))) >= 2), first.stdout.read().decode()
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    finally:
        first.kill()
    assert not out.exists()
    done = {p.name for p in checkpoints.glob("*/rows-*.arrow")}
    log.unlink()
    second = _run_script(tmp_path, body, env)
    assert second.wait(120) == 0, second.stdout.read().decode()
    recomputed = {line.split()[1] for line in log.read_text().splitlines()}
    finished = {f"r{i}" for name in done for i in range(int(name[5:17]), int(name[18:30]))}
    assert finished and not recomputed & finished  # finished chunks were loaded, not scored again
    assert recomputed | finished == {f"r{i}" for i in range(40)}

    from datasets import load_from_disk

    resumed = load_from_disk(str(out))
    reference = Dataset.from_list(_rows(40, bad={5, 33})).map(TokenLengthScorer(tokenizer=tiny_tokenizer), batched=True)
    assert resumed["id"][:] == reference["id"][:]
    for column in ("n_tokens_prompt", "n_tokens_response", "n_tokens"):
        np.testing.assert_array_equal(np.array(resumed[column][:]), np.array(reference[column][:]))
    assert resumed["n_tokens_error"][:] == reference["n_tokens_error"][:]
