"""Selectors as objects: the registry rebuilds each from its record, `selection.keep` is a `Dataset.filter`
callable that keeps exactly the selection, the provenance comes from the pool, and the CLI takes only the
chosen method's options."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import Dataset

from hf_select import SELECTORS, BudgetError, InputError, select
from hf_select.cli import main
from hf_select.cluster import KMeans
from hf_select.options import field_options
from hf_select.pool import load_pool
from hf_select.provenance import provenance_of
from hf_select.reproduce import python_snippet
from hf_select.select import Budget, Selector, Threshold

N = 60


def _train(state: Any, rows: Dataset) -> int:
    return (state or 0) + 1


def _embed(state: int, ds: Dataset) -> np.ndarray:
    return np.random.default_rng(state).standard_normal((len(ds), 3)).astype(np.float32)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    rng = np.random.default_rng(5)
    rows = []
    for i in range(N):
        rows.append(
            {
                "conversations": [
                    {"from": "human", "value": f"Question {i} about {'xyz'[i % 3]}?"},
                    {"from": "gpt", "value": "An answer. " * (1 + i % 5) + str(i)},
                ],
                "n_tokens": float(rng.integers(5, 60)) if i % 11 else None,
                "ifd": float(rng.uniform(0.2, 1.4)),
                "embedding": rng.standard_normal(4).round(4).tolist(),
                "instruction_ppl": float(rng.uniform(2, 40)),
                "less": float(np.sin(i)) if i % 13 else None,
            }
        )
    path = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return KMeans(n_clusters=4, column="embedding", seed=0).fit(load_pool(str(path)).dataset)


CASES: dict[str, dict[str, Any]] = {
    "top-k": {"column": "n_tokens", "budget": 10, "largest": False, "min_value": 10.0},
    "top-k-tokens": {"column": "ifd", "budget": "200 tokens"},
    "ifd": {"budget": 0.2},
    "less": {"budget": 7},
    "threshold": {"column": "ifd", "min_value": 0.5, "max_value": 1.0},
    "random": {"budget": "300 tokens", "seed": 4, "column": "n_tokens"},
    "within-clusters": {"score_column": "n_tokens", "budget": 12},
    "centroid": {"budget": 9},
    "kmeans": {"column": "embedding", "budget": 10, "n_clusters": 3, "score_column": "ifd"},
    "kcenter": {"column": "embedding", "budget": 8, "init": [3, 7], "device": "cpu"},
    "zip": {"budget": 6, "k1": 20, "k2": 8, "k3": 3, "workers": 1},
    "ifd-pre-experience": {"cluster_column": "cluster", "ppl_column": "instruction_ppl", "per_cluster": 2},
    "diverseevol": {"init": 3, "n_query": 2, "rounds": 2, "train_step": _train, "embed": _embed, "seed": 1},
}


def _method(case: str) -> str:
    return case if case in SELECTORS else case.rsplit("-", 1)[0]


def test_every_registered_selector_is_covered() -> None:
    assert {_method(case) for case in CASES} == set(SELECTORS)


@pytest.mark.parametrize("case", sorted(CASES))
def test_filter_with_keep_equals_the_selection(case: str, pool: Dataset) -> None:
    """`pool.filter(selection.keep, with_indices=True, batched=True)` keeps exactly the selected rows, in pool
    order, batched or not, in one process or two."""
    selection = SELECTORS[_method(case)](**CASES[case]).fit(pool)
    assert len(selection) > 0
    columns = [c for c in pool.column_names if case != "kmeans" or not c.startswith("cluster")]  # it re-clusters
    expected = selection.dataset.select_columns(columns).to_list()
    filtered = pool.filter(selection.keep, with_indices=True, batched=True, batch_size=7)
    assert filtered.select_columns(columns).to_list() == expected
    assert pool.filter(selection.keep, with_indices=True).select_columns(columns).to_list() == expected
    if case == "top-k":
        assert pool.filter(selection.keep, with_indices=True, batched=True, num_proc=2).to_list() == expected


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_registry_rebuilds_each_selector_from_its_record(case: str, pool: Dataset) -> None:
    """`SELECTORS[method](**arguments from the record)` picks the same rows (DiverseEvol's steps are code,
    which a record only names: they are given again)."""
    selection = SELECTORS[_method(case)](**CASES[case]).fit(pool)
    cls = SELECTORS[selection.record.method]
    arguments = cls.arguments_from_record(selection.record)
    if case == "diverseevol":
        arguments.update(train_step=_train, embed=_embed)
    else:
        assert Selector.from_record(selection.record) == cls(**arguments)
    again = cls(**arguments).fit(pool)
    assert again.indices.tolist() == selection.indices.tolist()
    assert again.record.parameters == selection.record.parameters or case == "diverseevol"  # its timings vary


def test_a_threshold_filters_without_fitting(pool: Dataset) -> None:
    selector = Threshold(column="ifd", min_value=0.5, max_value=1.0)
    fitted = selector.fit(pool).dataset.to_list()
    assert pool.filter(selector).to_list() == fitted
    assert pool.filter(selector, batched=True, batch_size=9).to_list() == fitted


def test_a_bad_configuration_fails_when_the_selector_is_made() -> None:
    with pytest.raises(BudgetError, match="'lots'"):
        select.TopK(column="x", budget="lots")
    with pytest.raises(InputError, match="min_value"):
        Threshold(column="x", min_value=2, max_value=1)
    with pytest.raises(InputError, match="k1 >= k2 >= k3"):
        select.ZIP(budget=5, k1=2, k2=3)
    with pytest.raises(InputError, match="pick a split"):
        select.TopK(column="x", budget=1).fit({"train": Dataset.from_dict({"x": [1.0]})})  # type: ignore[arg-type]
    with pytest.raises(InputError, match="a streaming dataset must be scored and saved first"):
        select.TopK(column="x", budget=1).fit(Dataset.from_dict({"x": [1.0]}).to_iterable_dataset())  # type: ignore[arg-type]


def test_budget_errors_have_one_wording() -> None:
    """Counts, fractions and tokens are checked in one place (`Budget.check`), whatever the selector."""
    ds = Dataset.from_dict({"x": [1.0, 2.0, 3.0, float("nan")], "n_tokens": [5.0, 5.0, 5.0, 5.0]})
    with pytest.raises(BudgetError) as rows:
        select.top_k(ds, "x", 4)
    assert str(rows.value) == "budget of 4 rows exceeds the 3 rows with a usable 'x'"
    with pytest.raises(BudgetError) as tokens:
        select.top_k(ds, "x", "16 tokens")
    assert str(tokens.value) == "budget of 16 tokens exceeds the 15 tokens of the 3 rows with a usable 'x'"
    clustered = ds.add_column("cluster", [0, 0, 1, 1])
    with pytest.raises(BudgetError) as clusters:
        select.within_clusters(clustered, "cluster", "x", "16 tokens")
    assert str(clusters.value).startswith("budget of 16 tokens exceeds the 15 tokens of the 3 rows")
    assert Budget.parse("10 tokens").cut(np.array([1, 0]), n_pool=2, tokens=np.array([4.0, 6.0])).tolist() == [1, 0]


def test_provenance_comes_from_the_pool(pool: Dataset, tmp_path: Path) -> None:
    """A pool loaded with `load_pool` and clustered with `KMeans.fit` carries its source and the clustering
    into every selection made from it, with nothing passed by hand."""
    source, scorers = provenance_of(pool)
    assert source["dataset"].endswith("pool.jsonl") and [s["method"] for s in scorers] == ["kmeans"]
    record = select.top_k(pool, "ifd", 3).record
    assert record.source == source and record.scorers == scorers
    assert select.top_k(pool, "ifd", 3, scorers=[]).record.scorers == []  # explicit arguments still win
    unknown = Dataset.from_dict({"x": [1.0, 2.0]})
    assert select.top_k(unknown, "x", 1).record.scorers == []


def _select(tmp_path: Path, pool: Dataset, *options: str) -> subprocess.CompletedProcess[str]:
    folder = tmp_path / "pool"
    if not folder.exists():
        pool.save_to_disk(str(folder))
    argv = ["select", str(folder), *options, "-o", str(tmp_path / "out")]
    return subprocess.run([sys.executable, "-m", "hf_select", *argv], capture_output=True, text=True, timeout=300)


def test_the_cli_refuses_options_of_another_method(pool: Dataset, tmp_path: Path) -> None:
    options = ["--method", "top-k", "--column", "ifd", "--budget", "3", "--k1", "5", "--text", "repr"]
    proc = _select(tmp_path, pool, *options)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "--method top-k does not take --k1, --text; it takes --budget, --column, --largest" in line
    assert not (tmp_path / "out").exists()


def test_the_cli_converts_each_option_by_its_field(pool: Dataset, tmp_path: Path, capsys: Any) -> None:
    assert main(["select", str(tmp_path / "p"), "--method", "kcenter", "--column", "embedding", "--budget", "3",
                 "--init", "x,y", "-o", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "--init takes int or comma-separated ints, got 'x,y'" in capsys.readouterr().err
    assert main(["select", str(tmp_path / "p"), "--method", "zip", "--budget", "3", "--text", "bytes",
                 "-o", str(tmp_path / "o")]) == 2  # fmt: skip
    assert "--text must be one of rendered, repr, got 'bytes'" in capsys.readouterr().err
    assert main(["select", str(tmp_path / "p"), "--method", "kmeans", "--budget", "3", "-o", str(tmp_path / "o")]) == 2
    assert "--method kmeans needs --column, --n-clusters" in capsys.readouterr().err


def test_method_help_shows_each_fields_docstring(capsys: Any) -> None:
    assert main(["select", "--method", "zip", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--k2 K2" in out and "Stage-2 survivors per round." in out and "(default: 200)" in out
    assert "--column " not in out  # another method's option
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"  top-k: Keep the rows with the largest \(or smallest\) score, ties in pool order\.", out)
    assert "--budget (a count, a fraction or tokens, required): How much to select" in out
    assert "diverseevol: DiverseEvol: " in out and "(Python only: hf_select.select.DiverseEvol)" in out


def test_writing_a_selector_example_in_the_readme_runs() -> None:
    """The README's "Writing a selector" example registers a selector that the CLI, the registry and the
    reproduce snippet then know, with no other change."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Writing a selector") :]
    (code,) = re.findall(r"```python\n(.*?)\n```", section, re.DOTALL)[:1]
    assert len(code.splitlines()) <= 32
    namespace: dict[str, Any] = {}
    exec(compile(code, "<README: writing a selector>", "exec"), namespace)
    assert "longest-per-turn" in SELECTORS
    try:
        cls = SELECTORS["longest-per-turn"]
        ds = Dataset.from_dict({"n_tokens": [10.0, 40.0, 30.0, 8.0], "n_turns": [2, 4, 1, 2]})
        selection = cls(budget=2).fit(ds)
        assert selection.indices.tolist() == [1, 2]  # 10/2=5, 40/4=10, 30/1=30, 8/2=4: the two largest
        assert selection.record.parameters == {"turns_column": "n_turns"}
        assert [option.flags[0] for option in field_options(cls)] == ["--budget", "--turns-column", "--token-column"]
        snippet = python_snippet(selection.record)
        assert "selector = SELECTORS['longest-per-turn'](budget=2, turns_column='n_turns')" in snippet
    finally:
        SELECTORS.pop("longest-per-turn")


def test_a_token_budget_underfilled_by_more_than_a_row_warns_and_records_why() -> None:
    ds = Dataset.from_dict({"n_tokens": [10.0, 10.0, 500.0, 10.0]})
    with pytest.warns(UserWarning, match="budget of 300 tokens underfilled"):
        sel = select.top_k(ds, "n_tokens", "300 tokens", largest=False)  # three short rows, then 500 does not fit
    assert sel.indices.tolist() == [0, 1, 3]
    assert sel.record.budget["achieved"]["note"].startswith("270 tokens short of the budget, more than a row's worth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = select.top_k(ds, "n_tokens", "25 tokens", largest=False)  # 5 short: less than a row's worth
    assert "note" not in full.record.budget["achieved"]


def test_scorer_map_adds_the_scorer_to_the_pools_provenance(tmp_path: Path, tiny_tokenizer: str) -> None:
    from hf_select import TokenLengthScorer

    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "response": "a" * (i + 1)}) + "\n" for i in range(6)))
    scorer = TokenLengthScorer(tokenizer=tiny_tokenizer)
    scored = scorer.map(load_pool(str(path)).dataset)
    record = select.top_k(scored, "n_tokens", 2).record
    assert record.source["dataset"] == str(path) and record.scorers == [scorer.describe()]
