"""Selecting by LESS score: `hf-select select --method less` (top-k) and "LESS within clusters" (the
within-clusters selector on the `less` column), their records and dataset cards.

The pool carries a plain `less` column (the scorer that writes it is `LESSScorer`; a NaN is a row it could
not score)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from hf_select import select
from hf_select.cli import main
from hf_select.select import SELECTORS, LESSTopK, TopK, proportional_quotas

N = 30


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(N):
        turns = [{"from": "human", "value": f"Question {i}?"}, {"from": "gpt", "value": "Answer. " * (1 + i % 5)}]
        less = None if i % 9 == 4 else round(float(rng.normal()), 6)
        rows.append({"conversations": turns, "less": less, "cluster": i % 3, "n_tokens": float(10 + i)})
    path = tmp_path_factory.mktemp("less-pool") / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def scores(pool_file: Path) -> np.ndarray:
    rows = [json.loads(line) for line in pool_file.read_text().splitlines()]
    return np.array([math.nan if r["less"] is None else r["less"] for r in rows])


def card_and_record(folder: Path) -> tuple[str, dict]:
    return (folder / "README.md").read_text(encoding="utf-8"), json.loads((folder / "selection.json").read_text())


def test_less_is_a_top_k_preset_on_the_less_column() -> None:
    assert SELECTORS["less"] is LESSTopK and LESSTopK.cli
    selector = LESSTopK(budget=3)
    assert (selector.column, selector.largest, selector.min_value, selector.max_value) == ("less", True, None, None)
    with pytest.raises(TypeError):
        LESSTopK(budget=3, largest=False)  # type: ignore[call-arg]  # a preset: LESS keeps the highest


def test_select_method_less_keeps_the_highest_scores(pool_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "less-5"
    assert main(["select", str(pool_file), "--method", "less", "--budget", "5", "-o", str(out)]) == 0
    less = scores(pool_file)
    expected = sorted(np.argsort(-np.nan_to_num(less, nan=-np.inf), kind="stable")[:5].tolist())
    card, record = card_and_record(out)
    assert record["method"] == "less" and record["parameters"]["column"] == "less" and record["parameters"]["largest"]
    sel = select.less_top_k(select_pool(pool_file), 5)
    assert (
        sel.indices.tolist() == expected == TopK(column="less", budget=5).fit(select_pool(pool_file)).indices.tolist()
    )
    assert record["indices_sha256"] == sel.record.indices_sha256
    assert "### LESS (gradient influence)" in card and "Adam-preconditioned gradient" in card
    assert "arXiv" in card or "arxiv.org/abs/2402.04333" in card
    assert "@inproceedings{xia2024less" in card
    assert "selector = SELECTORS['less'](budget=5, column='less')" in card
    assert f"hf-select select {pool_file} --method less --budget 5 -o {out}" in card
    (python,) = re.findall(r"```python\n(.*?)\n```", card[card.index("## Reproduce it") :], re.DOTALL)[:1]
    namespace: dict = {}
    exec(compile(python, "<card of less>", "exec"), namespace)  # its digest assert must hold
    assert namespace["sel"].indices.tolist() == expected


def select_pool(pool_file: Path):  # type: ignore[no-untyped-def]
    from hf_select.pool import load_pool

    return load_pool(str(pool_file)).dataset


def test_less_within_clusters(pool_file: Path, tmp_path: Path) -> None:
    """Each cluster gets a quota proportional to its scored rows, filled with its highest LESS scores."""
    out = tmp_path / "less-km"
    argv = ["select", str(pool_file), "--method", "within-clusters", "--cluster-column", "cluster", "--column",
            "less", "--budget", "9", "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    less = scores(pool_file)
    clusters = np.arange(N) % 3
    usable = ~np.isnan(less)
    sizes = [int((usable & (clusters == c)).sum()) for c in range(3)]
    quotas = proportional_quotas(np.array(sizes), 9)
    expected = []
    for c in range(3):
        members = np.flatnonzero(usable & (clusters == c))
        expected += members[np.argsort(-less[members], kind="stable")[: quotas[c]]].tolist()
    card, record = card_and_record(out)
    sel = select.within_clusters(select_pool(pool_file), "cluster", "less", 9)
    assert sel.indices.tolist() == sorted(expected) and record["indices_sha256"] == sel.record.indices_sha256
    assert record["method"] == "within-clusters" and record["parameters"]["score_column"] == "less"
    assert "### Score within clusters" in card
    assert "--method within-clusters --cluster-column cluster --column less --budget 9" in card
    assert "SELECTORS['within-clusters'](" in card and "score_column='less'" in card
