"""The side-by-side summary table: totals and means over the rows that have a token count, said so."""

from __future__ import annotations

import json
from pathlib import Path

from datasets import Dataset, load_dataset

from hf_select.conversation import detect_format
from hf_select.summary import describe, table


def test_rows_without_a_token_count_are_named_under_the_table() -> None:
    turns = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]
    ds = Dataset.from_dict({"conversations": [turns] * 4, "n_tokens": [10.0, 30.0, float("nan"), 20.0]})
    summary = describe(ds)
    assert summary["tokens"] == 60 and summary["mean_tokens"] == 20.0 and summary["rows_without_tokens"] == 1
    text = table({"pool": summary, "subset": describe(ds.select([0, 1]))})
    assert text.splitlines()[-1] == (
        "(tokens, mean and median count the rows that have a token count; rows without one: pool 1)"
    )
    assert "rows without one" not in table({"subset": describe(ds.select([0, 1]))})


def _json_column_pool(tmp_path: Path) -> Dataset:
    """Conversations of mixed shapes: datasets 5 stores the column as a `Json` extension column."""
    rows = [
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"conversations": [{"from": "human", "value": ["parts"]}, {"from": "gpt", "value": "a"}, {"from": "human"}]},
        {"conversations": "not a list of turns"},
        {"conversations": []},
    ]
    path = tmp_path / "mixed-shapes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ds = load_dataset("json", data_files=str(path), split="train")
    assert type(ds.features["conversations"]).__name__ == "Json"  # the case this test is about
    return ds


def test_mean_turns_of_a_json_conversation_column(tmp_path: Path) -> None:
    """`pc.list_value_length` has no kernel for the Json column (ArrowNotImplementedError before): turns
    are counted from the decoded rows, a value that is not a list counting as no conversation."""
    from hf_select.summary import turn_counts

    ds = _json_column_pool(tmp_path)
    assert turn_counts(ds, detect_format(ds.column_names)).tolist()[:2] == [2.0, 3.0]
    assert describe(ds)["mean_turns"] == 2.5
    assert describe(ds.select([1, 2]))["mean_turns"] == 3.0


def test_mean_turns_of_a_file_mixing_formats(tmp_path: Path) -> None:
    """Each row counted in the format it is read in: ShareGPT 2 turns, messages 3, Alpaca 2."""
    rows = [
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                      {"role": "assistant", "content": "a"}]},
        {"instruction": "q", "output": "a"},
    ]  # fmt: skip
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ds = load_dataset("json", data_files=str(path), split="train")
    from hf_select.summary import turn_counts

    assert turn_counts(ds, detect_format(ds.column_names)).tolist() == [2.0, 3.0, 2.0]
    assert describe(ds)["mean_turns"] == 7 / 3
