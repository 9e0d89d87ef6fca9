"""The side-by-side summary table: totals and means over the rows that have a token count, said so."""

from __future__ import annotations

from datasets import Dataset

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
