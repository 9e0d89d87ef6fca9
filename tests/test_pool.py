"""Pools in and outputs out (issue #10): `--overwrite` swaps by renames and the next run repairs what a
killed one left; a pool from `load_dataset("json", data_files=...)` records its file, not the builder's
name; a `DatasetDict` becomes one pool or a clear error naming its splits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict, load_dataset

from hf_select import select
from hf_select.errors import InputError
from hf_select.pool import load_pool, prepare_output, staged_output
from hf_select.select.selection import source_info

KILL_AT_SWAP = """
import os, pathlib, sys
from hf_select.pool import staged_output

rename = pathlib.Path.rename
def killed_moving_the_new_output_in(self, target):
    if ".partial-" in self.name:
        os._exit(9)  # as if SIGKILL arrived between removing the old output and moving the new one in
    return rename(self, target)
pathlib.Path.rename = killed_moving_the_new_output_in
with staged_output(sys.argv[1], [], overwrite=True) as folder:
    (folder / "data.txt").write_text("new")
"""


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_a_run_killed_while_swapping_in_its_output_loses_nothing(tmp_path: Path) -> None:
    """Before: the old output was deleted, then the new one renamed in, so a kill in between left no output
    and an orphan `.partial` folder. Now the old output is moved aside first, and the next run (here: the
    next `prepare_output`, as every command does) completes the swap: the complete new output is in place,
    nothing is left beside it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "data.txt").write_text("old")
    proc = subprocess.run([sys.executable, "-c", KILL_AT_SWAP, str(out)], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    left = sorted(p.name for p in tmp_path.iterdir())
    assert [name.split("-")[0] for name in left] == [".out.old", ".out.partial"], left  # both kept, none lost

    with pytest.raises(InputError, match="already exists"):
        prepare_output(out, [])  # the next run finds the output back in place
    assert (out / "data.txt").read_text() == "new"  # the killed run had finished writing it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_recovery_puts_back_the_old_output_and_leaves_live_runs_alone(tmp_path: Path) -> None:
    """Killed after moving the old output aside but with no complete new one: the old one comes back. A
    dead run's lone `.partial` is deleted; a live run's folders (this process's pid) are not touched."""
    from hf_select.pool import recover_output

    dead = _dead_pid()
    out = tmp_path / "out"
    old = tmp_path / f".out.old-{dead}-abcd1234"
    old.mkdir()
    (old / "data.txt").write_text("old")
    (tmp_path / f".out.partial-{dead}-0000ffff").mkdir()  # a half-written run that was killed
    live = tmp_path / f".out.partial-{os.getpid()}-12345678"
    live.mkdir()
    recover_output(out)
    assert (out / "data.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "out"]


def test_overwrite_keeps_the_old_output_until_the_new_one_is_in(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_output(out, []) as folder:
        (folder / "a.txt").write_text("1")
    with staged_output(out, [], overwrite=True) as folder:
        assert (out / "a.txt").read_text() == "1"  # still there while the new one is written
        (folder / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _write_pool(path: Path, n: int = 6) -> Path:
    rows = [{"instruction": f"do {i}", "output": "done " * (i + 1)} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_pool_loaded_with_load_dataset_records_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """README's Python path: `load_dataset("json", data_files="pool.jsonl")` then a selector without
    `source=`. The record used to say dataset 'json' (whose reproduce snippet `load_pool('json')` fails); it
    now names the file, its sha256 and the builder, and `load_pool(<recorded path>)` rebuilds the pool."""
    monkeypatch.chdir(tmp_path)
    _write_pool(tmp_path / "pool.jsonl")
    pool = load_dataset("json", data_files="pool.jsonl", split="train")
    scored = pool.map(lambda row: {"n": len(row["output"])})
    sel = select.top_k(scored, "n", 2)
    source = sel.record.source
    assert source["dataset"] == "pool.jsonl" and source["builder"] == "json" and source["split"] == "train"
    cli_source = load_pool("pool.jsonl").source
    assert source["sha256"] == cli_source["sha256"] and len(source["sha256"]) == 64
    again = load_pool(source["dataset"], split=source["split"]).dataset
    assert again["instruction"] == pool["instruction"]

    (tmp_path / "shards").mkdir()
    for i in range(2):
        _write_pool(tmp_path / "shards" / f"part-{i}.jsonl", 3)
    sharded = load_dataset("json", data_files="shards/*.jsonl", split="train")
    assert source_info(sharded)["dataset"] == "shards"
    assert load_pool("shards").dataset["instruction"] == sharded["instruction"]


def test_a_pool_whose_files_cannot_be_identified_names_no_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files outside the working directory, or changed since they were loaded: never the builder's name."""
    _write_pool(tmp_path / "pool.jsonl")
    pool = load_dataset("json", data_files=str(tmp_path / "pool.jsonl"), split="train")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    info = source_info(pool)
    assert info["dataset"] is None and info["builder"] == "json"
    assert source_info(pool, "my-pool")["dataset"] == "my-pool"  # a name given is kept
    assert source_info(Dataset.from_dict({"x": [1]}))["dataset"] is None


def test_a_dataset_dict_becomes_one_pool_or_a_clear_error() -> None:
    from hf_select.pool import as_dataset

    one = Dataset.from_dict({"x": [1, 2]})
    assert as_dataset(DatasetDict({"only": one}))["x"] == [1, 2]
    assert as_dataset(DatasetDict({"train": one, "test": one.select([0])}), "test")["x"] == [1]
    with pytest.raises(InputError, match=r"several splits \['a', 'b'\]"):
        as_dataset(DatasetDict({"a": one, "b": one}))
    with pytest.raises(InputError, match=r"no split 'dev'; it has \['a', 'b'\]"):
        as_dataset(DatasetDict({"a": one, "b": one}), "dev")
    with pytest.raises(InputError, match="not a datasets.Dataset"):
        as_dataset([{"x": 1}])


def test_the_demo_pool_limit_is_recorded_by_load_pool(tmp_path: Path) -> None:
    path = _write_pool(tmp_path / "pool.jsonl", 10)
    ds, source, _ = load_pool(str(path), limit=4)
    assert ds["instruction"] == [f"do {i}" for i in range(4)]
    assert source["limit"] == 4 and source["num_rows"] == 4 and source["fingerprint"] == ds._fingerprint
    assert len(load_pool(str(path), limit=100).dataset) == 10


def test_a_selector_given_a_dataset_dict_names_its_splits() -> None:
    """`select.top_k(load_dataset("json", data_files=...))` without `split=` gives a DatasetDict: the error
    names its splits (it used to say "score column 'n' is not in the dataset; it has {'train': ['n'], ...}")."""
    one = Dataset.from_dict({"n": [1.0, 2.0]})
    with pytest.raises(InputError, match=r"pick a split first \(it has \['train', 'test'\]\), e.g. pool\['train'\]"):
        select.top_k(DatasetDict({"train": one, "test": one}), "n", 1)
