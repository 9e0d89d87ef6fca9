"""Selectors (`hf_select.select`): budgets, top-k, threshold, random, score within clusters, records.

Expected values are computed by hand or by small independent implementations below (Python's
`sorted` with explicit tie-break keys, exact `Fraction` arithmetic for quotas), never by calling the
code under test a second way.
"""

from __future__ import annotations

import json
import math
import random as pyrandom
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import Dataset, concatenate_datasets

from hf_select.errors import BudgetError, InputError
from hf_select.record import SCHEMA_VERSION, SelectionRecord
from hf_select.select import (
    SELECTORS,
    ZIP,
    Budget,
    Centroid,
    DiverseEvol,
    IFDTopK,
    KCenter,
    KMeansSelect,
    LESSTopK,
    PreExperience,
    Random,
    Selection,
    Threshold,
    TopK,
    WithinClusters,
    centroids,
    diverse_evol,
    ifd_top_k,
    kcenter_greedy,
    kmeans_select,
    less_top_k,
    pre_experience_subset,
    proportional_quotas,
    random,
    random_controls,
    threshold,
    top_k,
    within_clusters,
    zip_select,
)

NAN = float("nan")


# ---------------------------------------------------------------------------------------------------
# Independent reference implementations
# ---------------------------------------------------------------------------------------------------


def is_missing(value: Any) -> bool:
    """None or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def brute_order(values: list[Any], *, largest: bool = True) -> list[int]:
    """Indices of non-missing values by value (largest or smallest first), ties by pool index."""
    usable = [i for i, v in enumerate(values) if not is_missing(v)]
    sign = -1 if largest else 1
    return sorted(usable, key=lambda i: (sign * float(values[i]), i))


def token_prefix(order: list[int], tokens: list[float], budget: float) -> list[int]:
    """Longest prefix of `order` whose token sum does not exceed `budget`."""
    kept: list[int] = []
    total = 0.0
    for i in order:
        if total + tokens[i] > budget:
            break
        total += tokens[i]
        kept.append(i)
    return kept


def hamilton(sizes: list[int], total: int) -> list[int]:
    """Largest-remainder quotas with exact fractions; remainder ties to the earlier group."""
    n = sum(sizes)
    shares = [Fraction(s * total, n) for s in sizes]
    quotas = [math.floor(s) for s in shares]
    missing = total - sum(quotas)
    by_remainder = sorted(range(len(sizes)), key=lambda i: (-(shares[i] - quotas[i]), i))
    for i in by_remainder[:missing]:
        quotas[i] += 1
    return quotas


def brute_within_clusters(
    clusters: list[Any], scores: list[Any], budget: int, *, largest: bool = True
) -> tuple[list[int], dict[Any, int]]:
    """Reference score-within-clusters for a row budget: (sorted indices, quota per label)."""
    usable = [i for i in range(len(scores)) if not is_missing(scores[i]) and clusters[i] is not None]
    labels = sorted({clusters[i] for i in usable})
    members = {c: [i for i in usable if clusters[i] == c] for c in labels}
    quotas = dict(zip(labels, hamilton([len(members[c]) for c in labels], budget), strict=True))
    chosen: list[int] = []
    for c in labels:
        sub = [scores[i] if i in members[c] else None for i in range(len(scores))]
        chosen += brute_order(sub, largest=largest)[: quotas[c]]
    return sorted(chosen), quotas


def assert_subset_consistent(pool: Dataset, sel: Selection) -> None:
    """The subset is `pool.select(sorted indices)`, in pool order, with a matching record."""
    idx = sel.indices.tolist()
    assert idx == sorted(idx)
    assert len(set(idx)) == len(idx)
    assert len(sel) == len(idx) == len(sel.dataset)
    assert plain_rows(sel.dataset) == plain_rows(pool.select(idx))
    assert sel.record.kept["rows"] == len(idx)
    assert sel.record.budget["achieved"]["rows"] == len(idx)
    assert sel.record.pool["rows"] == len(pool)


def plain_rows(ds: Dataset) -> dict[str, list[Any]]:
    """Columns as lists with NaN replaced by a marker, so equal rows compare equal."""
    columns = ds.to_dict()
    return {k: ["NaN" if is_missing(v) and v is not None else v for v in col] for k, col in columns.items()}


def record_without_time(sel: Selection) -> dict[str, Any]:
    """The record as a dict, minus `created_at`."""
    data = sel.record.to_dict()
    data.pop("created_at")
    return data


# ---------------------------------------------------------------------------------------------------
# Budget.parse and Budget.rows
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind", "value"),
    [
        (1000, "count", 1000),
        (1, "count", 1),
        (0.01, "fraction", 0.01),
        (1.0, "fraction", 1.0),
        ("1000", "count", 1000),
        ("10k", "count", 10_000),
        ("10K", "count", 10_000),
        ("1.5k", "count", 1_500),
        ("0.01", "fraction", 0.01),
        ("1%", "fraction", 0.01),
        ("100%", "fraction", 1.0),
        ("5M tokens", "tokens", 5_000_000),
        ("2.5k tokens", "tokens", 2_500),
        ("1 token", "tokens", 1),
        ("1_000 rows", "count", 1_000),
        (" 7 rows ", "count", 7),
    ],
)
def test_budget_parse_valid(spec: Any, kind: str, value: float) -> None:
    """Counts, fractions, percentages, k/M suffixes and token budgets parse to the right kind and value."""
    budget = Budget.parse(spec)
    assert budget.kind == kind
    assert budget.value == value
    assert type(budget.value) is (float if kind == "fraction" else int)
    assert Budget.parse(budget) is budget


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ("-1", "-1"),
        ("0", "0"),
        (0, "0"),
        (-3, "-3"),
        (1.5, "1.5"),
        (0.0, "0.0"),
        ("abc", "abc"),
        ("1.5 rows", "1.5 rows"),
        ("150%", "150%"),
        ("0%", "0%"),
        ("0 tokens", "0 tokens"),
        ("1.5 tokens", "1.5 tokens"),
        ("2.0", "2.0"),
        (True, "True"),
        (None, "None"),
        (float("nan"), "nan"),
    ],
)
def test_budget_parse_invalid_names_value(spec: Any, shown: str) -> None:
    """Malformed budgets raise BudgetError whose message shows the bad value."""
    with pytest.raises(BudgetError) as info:
        Budget.parse(spec)
    assert shown in str(info.value)


@pytest.mark.parametrize(
    ("spec", "value"),
    [("16.1k", 16_100), ("1.001k", 1_001), ("0.00051M tokens", 510), ("32.7k", 32_700)],
)
def test_budget_parse_decimal_suffix_is_exact(spec: str, value: int) -> None:
    """A decimal with a k/M suffix that names a whole number parses to it (no float round-off)."""
    assert Budget.parse(spec).value == value


@pytest.mark.parametrize(
    ("spec", "n_pool", "rows"),
    [
        (0.5, 3, 2),
        (0.5, 5, 3),
        (0.25, 2, 1),
        (0.01, 17_671, 177),
        (0.01, 50, 1),
        ("1%", 17_671, 177),
        (1.0, 9, 9),
        (0.3, 10, 3),
        (0.34, 10, 3),
        (0.35, 10, 4),
        (7, 3, 7),
        ("10k", 5, 10_000),
    ],
)
def test_budget_rows(spec: Any, n_pool: int, rows: int) -> None:
    """Counts give themselves; fractions give the share of the pool rounded half up."""
    assert Budget.parse(spec).rows(n_pool) == rows


@pytest.mark.parametrize(("spec", "n_pool", "rows"), [("29%", 50, 15), (0.29, 50, 15), ("58%", 25, 15)])
def test_budget_rows_half_up_is_exact(spec: Any, n_pool: int, rows: int) -> None:
    """An exact half (29% of 50 = 14.5) rounds up, despite the float value of 0.29 being just under."""
    assert Budget.parse(spec).rows(n_pool) == rows


def test_budget_rows_half_up_matches_exact_arithmetic() -> None:
    """For every whole percentage and pool size up to 200, rows() is floor(k*n/100 + 1/2)."""
    wrong = []
    for k in range(1, 101):
        for n in range(1, 201):
            expected = (k * n * 2 + 100) // 200
            if expected == 0:
                continue
            got = Budget.parse(f"{k}%").rows(n)
            if got != expected:
                wrong.append((k, n, got, expected))
    assert wrong == []


def test_budget_fraction_selecting_nothing_raises() -> None:
    """A fraction that rounds to zero rows raises BudgetError naming the pool size."""
    with pytest.raises(BudgetError, match="10-row pool"):
        Budget.parse(0.01).rows(10)
    with pytest.raises(BudgetError):
        Budget.parse(0.04).rows(12)  # 0.48 rounds to 0


def test_budget_tokens_have_no_row_count() -> None:
    """A token budget has no row count."""
    with pytest.raises(BudgetError):
        Budget.parse("5 tokens").rows(100)


def test_budget_to_dict_and_describe() -> None:
    """to_dict gives kind and value; describe says what it is."""
    assert Budget.parse("5M tokens").to_dict() == {"kind": "tokens", "value": 5_000_000}
    assert Budget.parse(1000).describe() == "1,000 rows"
    assert "tokens" in Budget.parse("5M tokens").describe()


# ---------------------------------------------------------------------------------------------------
# top_k
# ---------------------------------------------------------------------------------------------------


def test_top_k_largest_and_smallest() -> None:
    """Largest and smallest pick the right rows; the subset keeps pool order."""
    pool = Dataset.from_dict({"s": [3.0, 9.0, 1.0, 7.0, 5.0], "id": list("abcde")})
    big = top_k(pool, "s", 2)
    assert big.indices.tolist() == [1, 3]
    assert big.dataset["id"] == ["b", "d"]
    small = top_k(pool, "s", 2, largest=False)
    assert small.indices.tolist() == [0, 2]
    assert small.dataset["id"] == ["a", "c"]
    assert_subset_consistent(pool, big)
    assert_subset_consistent(pool, small)


def test_top_k_ties_broken_by_pool_order() -> None:
    """Many equal scores: the earliest rows win, for largest and smallest alike."""
    scores = [1.0, 2.0, 2.0, 1.0, 2.0, 2.0, 0.0, 2.0, 1.0, 0.0]
    pool = Dataset.from_dict({"s": scores})
    assert top_k(pool, "s", 3).indices.tolist() == [1, 2, 4]
    assert top_k(pool, "s", 6).indices.tolist() == [0, 1, 2, 4, 5, 7]
    assert top_k(pool, "s", 3, largest=False).indices.tolist() == [0, 6, 9]
    assert top_k(pool, "s", 4, largest=False).indices.tolist() == [0, 3, 6, 9]
    constant = Dataset.from_dict({"s": [4.0] * 12})
    assert top_k(constant, "s", 5).indices.tolist() == [0, 1, 2, 3, 4]
    assert top_k(constant, "s", 5, largest=False).indices.tolist() == [0, 1, 2, 3, 4]


def test_top_k_never_selects_nan() -> None:
    """NaN scores are never selected, for largest and smallest, even when the budget takes all usable rows."""
    pool = Dataset.from_dict({"s": [NAN, 1.0, NAN, 3.0, 2.0, NAN]})
    assert top_k(pool, "s", 3).indices.tolist() == [1, 3, 4]
    assert top_k(pool, "s", 3, largest=False).indices.tolist() == [1, 3, 4]
    assert top_k(pool, "s", 1, largest=False).indices.tolist() == [1]


def test_top_k_matches_brute_force_on_random_pools() -> None:
    """On 60 random pools with ties and NaNs, top-k equals a `sorted`-based reference, both directions."""
    rng = pyrandom.Random(1234)
    for _ in range(60):
        n = rng.randint(1, 40)
        scores = [NAN if rng.random() < 0.2 else float(rng.randint(0, 5)) for _ in range(n)]
        usable = sum(not is_missing(v) for v in scores)
        if usable == 0:
            continue
        pool = Dataset.from_dict({"s": scores})
        k = rng.randint(1, usable)
        for largest in (True, False):
            expected = sorted(brute_order(scores, largest=largest)[:k])
            assert top_k(pool, "s", k, largest=largest).indices.tolist() == expected


def test_top_k_fraction_budget() -> None:
    """A fraction of the whole pool (NaN rows included in the pool size), rounded half up."""
    pool = Dataset.from_dict({"s": [5.0, 4.0, 3.0, 2.0, 1.0, NAN]})
    sel = top_k(pool, "s", 0.5)
    assert sel.indices.tolist() == [0, 1, 2]
    assert sel.record.budget["requested"] == {"kind": "fraction", "value": 0.5}
    assert top_k(pool, "s", "25%").indices.tolist() == [0, 1]  # 1.5 -> 2
    with pytest.raises(BudgetError):
        top_k(pool, "s", 0.05)  # 0.3 rows -> 0


def test_top_k_token_budget_exact_prefix() -> None:
    """A token budget keeps the longest prefix in score order whose n_tokens sum does not exceed it."""
    pool = Dataset.from_dict(
        {"s": [0.9, 0.1, 0.5, 0.7, 0.3], "n_tokens": [10, 20, 30, 40, 50]},
    )
    # score order: 0 (10), 3 (40), 2 (30), 4 (50), 1 (20); cumulative 10, 50, 80, 130, 150
    sel = top_k(pool, "s", "79 tokens")
    assert sel.indices.tolist() == [0, 3]
    assert sel.record.budget["achieved"] == {"rows": 2, "tokens": 50}
    assert sel.record.kept == {"rows": 2, "tokens": 50}
    exact = top_k(pool, "s", "80 tokens")
    assert exact.indices.tolist() == [0, 2, 3]
    assert exact.record.budget["achieved"]["tokens"] == 80
    assert top_k(pool, "s", "150 tokens").indices.tolist() == [0, 1, 2, 3, 4]
    # the prefix stops at the first row that does not fit, even if a later, smaller one would
    assert top_k(pool, "s", "129 tokens").indices.tolist() == [0, 2, 3]
    smallest = top_k(pool, "s", "70 tokens", largest=False)  # order 1 (20), 4 (50), 2 (30)
    assert smallest.indices.tolist() == [1, 4]
    assert smallest.record.kept["tokens"] == 70
    assert smallest.record.pool == {"rows": 5, "tokens": 150}


def test_top_k_token_budget_matches_brute_force() -> None:
    """On random pools, a token budget matches a reference greedy prefix in score order."""
    rng = pyrandom.Random(99)
    for _ in range(40):
        n = rng.randint(2, 30)
        scores = [NAN if rng.random() < 0.15 else float(rng.randint(0, 4)) for _ in range(n)]
        tokens = [rng.randint(1, 50) for _ in range(n)]
        order = brute_order(scores)
        if not order:
            continue
        total = sum(tokens[i] for i in order)
        budget = rng.randint(tokens[order[0]], total)
        pool = Dataset.from_dict({"s": scores, "n_tokens": tokens})
        sel = top_k(pool, "s", f"{budget} tokens")
        expected = token_prefix(order, [float(t) for t in tokens], budget)
        assert sel.indices.tolist() == sorted(expected)
        assert sel.record.kept["tokens"] == sum(tokens[i] for i in expected) <= budget


def test_top_k_token_budget_skips_rows_without_tokens() -> None:
    """With a token budget, rows whose n_tokens is NaN or null are not candidates."""
    pool = Dataset.from_dict({"s": [9.0, 8.0, 7.0, 6.0], "n_tokens": [None, 5, 5, 5]})
    sel = top_k(pool, "s", "10 tokens")
    assert sel.indices.tolist() == [1, 2]
    assert sel.record.pool["tokens"] == 15


def test_top_k_token_budget_errors() -> None:
    """A token budget above the usable tokens, or below the first row, raises BudgetError."""
    pool = Dataset.from_dict({"s": [2.0, 1.0, NAN], "n_tokens": [30, 20, 100]})
    with pytest.raises(BudgetError, match="50"):
        top_k(pool, "s", "51 tokens")  # the NaN-score row's 100 tokens do not count
    with pytest.raises(BudgetError):
        top_k(pool, "s", "29 tokens")


def test_top_k_min_max_filters() -> None:
    """min_value/max_value are inclusive filters applied before ranking."""
    pool = Dataset.from_dict({"ifd": [0.4, 1.2, NAN, 0.9, 1.0, 0.2, 1.0]})
    sel = top_k(pool, "ifd", 3, max_value=1.0)
    assert sel.indices.tolist() == [3, 4, 6]
    assert top_k(pool, "ifd", 2, min_value=0.4, largest=False).indices.tolist() == [0, 3]
    assert top_k(pool, "ifd", 2, min_value=0.5, max_value=1.0, largest=False).indices.tolist() == [3, 4]
    assert sel.record.parameters == {"column": "ifd", "largest": True, "min_value": None, "max_value": 1.0}
    with pytest.raises(BudgetError, match="6"):
        top_k(pool, "ifd", 6, max_value=1.0)  # 5 rows are at most 1.0
    with pytest.raises(InputError):
        top_k(pool, "ifd", 1, min_value=2.0, max_value=1.0)


def test_top_k_integer_and_boolean_columns() -> None:
    """Integer and boolean score columns rank numerically; True beats False."""
    pool = Dataset.from_dict({"i": [3, 10, 2, 10, 7], "b": [False, True, False, True, True]})
    assert top_k(pool, "i", 3).indices.tolist() == [1, 3, 4]
    assert top_k(pool, "i", 2, largest=False).indices.tolist() == [0, 2]
    assert top_k(pool, "b", 2).indices.tolist() == [1, 3]
    assert top_k(pool, "b", 2, largest=False).indices.tolist() == [0, 2]


def test_top_k_nulls_are_nan() -> None:
    """Nulls in an integer or float column are never selected."""
    pool = Dataset.from_dict({"i": [None, 4, None, 1, 9], "f": [None, 0.5, 0.25, None, 0.75]})
    assert top_k(pool, "i", 3).indices.tolist() == [1, 3, 4]
    assert top_k(pool, "i", 3, largest=False).indices.tolist() == [1, 3, 4]
    assert top_k(pool, "f", 3, largest=False).indices.tolist() == [1, 2, 4]
    with pytest.raises(BudgetError):
        top_k(pool, "f", 4)


def test_top_k_budget_above_eligible_names_numbers() -> None:
    """Asking for more rows than have a usable score raises BudgetError naming both numbers."""
    pool = Dataset.from_dict({"s": [1.0, NAN, 2.0, 3.0, NAN]})
    with pytest.raises(BudgetError) as info:
        top_k(pool, "s", 4)
    message = str(info.value)
    assert "4" in message and "3" in message


def test_top_k_column_errors() -> None:
    """Missing column (message lists the columns), string column, and token budget without n_tokens."""
    pool = Dataset.from_dict({"s": [1.0, 2.0], "text": ["a", "b"]})
    with pytest.raises(InputError) as missing:
        top_k(pool, "nope", 1)
    assert "nope" in str(missing.value) and "'s'" in str(missing.value) and "'text'" in str(missing.value)
    with pytest.raises(InputError, match="text"):
        top_k(pool, "text", 1)
    with pytest.raises(InputError, match="n_tokens"):
        top_k(pool, "s", "5 tokens")


def test_top_k_custom_token_column() -> None:
    """token_column= picks the column a token budget sums."""
    pool = Dataset.from_dict({"s": [3.0, 2.0, 1.0], "len": [4, 4, 4]})
    sel = top_k(pool, "s", "8 tokens", token_column="len")
    assert sel.indices.tolist() == [0, 1]
    assert sel.record.kept["tokens"] == 8


def test_top_k_on_concatenated_and_reindexed_pools() -> None:
    """Multi-chunk and index-mapped (select/shuffle) pools give positions in the pool as the user sees it."""
    a = Dataset.from_dict({"s": [1.0, 5.0, 2.0]})
    b = Dataset.from_dict({"s": [4.0, NAN, 3.0]})
    pool = concatenate_datasets([a, b])
    assert top_k(pool, "s", 3).indices.tolist() == [1, 3, 5]
    view = pool.select([5, 4, 3, 2, 1, 0])  # s = 3, NaN, 4, 2, 5, 1
    sel = top_k(view, "s", 2)
    assert sel.indices.tolist() == [2, 4]
    assert sel.dataset["s"] == [4.0, 5.0]
    assert_subset_consistent(view, sel)


# ---------------------------------------------------------------------------------------------------
# Subset correctness and records
# ---------------------------------------------------------------------------------------------------


def test_selection_record_fields() -> None:
    """The record holds method, parameters, budgets, pool and kept counts (nansum tokens) and the seed."""
    pool = Dataset.from_dict(
        {"s": [0.5, 0.9, NAN, 0.7, 0.1], "n_tokens": [10.0, 20.0, NAN, 40.0, 7.0], "id": list("abcde")}
    )
    sel = top_k(pool, "s", 2)
    assert_subset_consistent(pool, sel)
    rec = sel.record
    assert rec.method == "top-k"
    assert rec.parameters == {"column": "s", "largest": True, "min_value": None, "max_value": None}
    assert rec.budget == {"requested": {"kind": "count", "value": 2}, "achieved": {"rows": 2, "tokens": 60}}
    assert rec.pool == {"rows": 5, "tokens": 77}
    assert rec.kept == {"rows": 2, "tokens": 60}
    assert rec.seed is None
    assert rec.schema_version == SCHEMA_VERSION
    assert rec.source["num_rows"] == 5
    assert rec.source["fingerprint"] == pool._fingerprint
    assert len(rec.indices_sha256) == 64
    seeded = random(pool, 2, seed=7)
    assert seeded.record.seed == 7
    assert seeded.record.method == "random"


def test_selection_record_without_token_column() -> None:
    """Without n_tokens the token counts are None."""
    pool = Dataset.from_dict({"s": [1.0, 2.0, 3.0]})
    rec = top_k(pool, "s", 1).record
    assert rec.pool == {"rows": 3, "tokens": None}
    assert rec.kept == {"rows": 1, "tokens": None}
    assert rec.budget["achieved"] == {"rows": 1, "tokens": None}


def test_indices_sha256_identifies_the_selection() -> None:
    """Equal index sets give equal digests across selectors; different sets give different digests."""
    pool = Dataset.from_dict({"s": [1.0, 5.0, 3.0, 4.0, 2.0]})
    a = top_k(pool, "s", 2)
    b = threshold(pool, "s", min_value=4.0)
    c = top_k(pool, "s", 2, largest=False)
    assert a.indices.tolist() == b.indices.tolist() == [1, 3]
    assert a.record.indices_sha256 == b.record.indices_sha256
    assert a.record.indices_sha256 != c.record.indices_sha256
    assert a.record.indices_sha256 != top_k(pool, "s", 3).record.indices_sha256
    other = Dataset.from_dict({"s": [5.0, 1.0, 1.0, 4.0]})
    assert top_k(other, "s", 2).record.indices_sha256 != a.record.indices_sha256  # [0, 3] vs [1, 3]


def test_record_save_load_round_trip(tmp_path: Path) -> None:
    """save then load gives an equal record, to a file or into a directory as selection.json."""
    pool = Dataset.from_dict(
        {"c": ["x", "y", "x", "y", "z"], "s": [1.0, 2.0, 3.0, 4.0, 5.0], "n_tokens": [1] * 5},
    )
    for sel in (
        top_k(pool, "s", 2, max_value=4.0),
        within_clusters(pool, "c", "s", 3),
        random(pool, "3 tokens", seed=3),
        threshold(pool, "s", min_value=2.0),
    ):
        path = sel.record.save(tmp_path / f"{sel.record.method}.json")
        assert SelectionRecord.load(path) == sel.record
    saved = top_k(pool, "s", 1).record.save(tmp_path)
    assert saved == tmp_path / "selection.json"
    assert SelectionRecord.load(tmp_path).indices_sha256 == top_k(pool, "s", 1).record.indices_sha256


def test_record_load_rejects_wrong_schema_or_unknown_field(tmp_path: Path) -> None:
    """Loading a record with another schema_version or an unknown field raises InputError."""
    pool = Dataset.from_dict({"s": [1.0, 2.0]})
    data = top_k(pool, "s", 1).record.to_dict()
    wrong = dict(data, schema_version=SCHEMA_VERSION + 1)
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    with pytest.raises(InputError, match="schema_version"):
        SelectionRecord.load(tmp_path / "wrong.json")
    no_version = {k: v for k, v in data.items() if k != "schema_version"}
    (tmp_path / "none.json").write_text(json.dumps(no_version))
    with pytest.raises(InputError):
        SelectionRecord.load(tmp_path / "none.json")
    extra = dict(data, surprise=1)
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    with pytest.raises(InputError, match="surprise"):
        SelectionRecord.load(tmp_path / "extra.json")
    with pytest.raises(InputError):
        SelectionRecord.load(tmp_path / "absent.json")


def test_record_load_missing_field_is_input_error(tmp_path: Path) -> None:
    """A record missing a required field raises InputError (not a bare TypeError)."""
    data = top_k(Dataset.from_dict({"s": [1.0, 2.0]}), "s", 1).record.to_dict()
    del data["method"]
    (tmp_path / "selection.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="method"):
        SelectionRecord.load(tmp_path)


def test_record_load_corrupt_json_is_input_error(tmp_path: Path) -> None:
    """A selection.json that is not valid JSON raises InputError naming the file."""
    (tmp_path / "selection.json").write_text("{not json")
    with pytest.raises(InputError, match="selection.json"):
        SelectionRecord.load(tmp_path)


def test_selectors_registry() -> None:
    """Every selector's method name maps to its class, and each wrapper function fits that class."""
    expected = {
        "top-k": (TopK, top_k),
        "ifd": (IFDTopK, ifd_top_k),
        "less": (LESSTopK, less_top_k),
        "threshold": (Threshold, threshold),
        "random": (Random, random),
        "within-clusters": (WithinClusters, within_clusters),
        "zip": (ZIP, zip_select),
        "kcenter": (KCenter, kcenter_greedy),
        "centroid": (Centroid, centroids),
        "kmeans": (KMeansSelect, kmeans_select),
        "diverseevol": (DiverseEvol, diverse_evol),
        "ifd-pre-experience": (PreExperience, pre_experience_subset),
    }
    assert {name: cls for name, (cls, _) in expected.items()} == SELECTORS
    for name, (cls, function) in expected.items():
        assert cls.method == name and f"{cls.__name__}(" in (function.__doc__ or ""), name


# ---------------------------------------------------------------------------------------------------
# threshold
# ---------------------------------------------------------------------------------------------------


def test_threshold_inclusive_bounds() -> None:
    """Both bounds are inclusive; NaN and null never pass."""
    pool = Dataset.from_dict({"s": [0.5, 1.0, NAN, 2.0, 2.5, None, 1.5]})
    sel = threshold(pool, "s", min_value=1.0, max_value=2.0)
    assert sel.indices.tolist() == [1, 3, 6]
    assert_subset_consistent(pool, sel)
    assert sel.record.method == "threshold"
    assert sel.record.budget["requested"] is None
    assert sel.record.parameters == {"column": "s", "min_value": 1.0, "max_value": 2.0}
    assert threshold(pool, "s", min_value=2.0, max_value=2.0).indices.tolist() == [3]


def test_threshold_one_sided_bounds() -> None:
    """Only min or only max keeps everything on that side, inclusive."""
    pool = Dataset.from_dict({"s": [0.5, 1.0, NAN, 2.0, 2.5], "n_tokens": [1, 2, 3, 4, 5]})
    low = threshold(pool, "s", max_value=1.0)
    assert low.indices.tolist() == [0, 1]
    assert low.record.kept["tokens"] == 3
    assert low.record.pool["tokens"] == 15
    assert threshold(pool, "s", min_value=2.0).indices.tolist() == [3, 4]
    assert threshold(pool, "s", min_value=-math.inf).indices.tolist() == [0, 1, 3, 4]


def test_threshold_errors() -> None:
    """min > max and no bound raise InputError; nothing passing raises BudgetError; bad columns raise."""
    pool = Dataset.from_dict({"s": [0.5, 1.0, NAN], "t": ["a", "b", "c"]})
    with pytest.raises(InputError):
        threshold(pool, "s", min_value=2.0, max_value=1.0)
    with pytest.raises(InputError):
        threshold(pool, "s")
    with pytest.raises(BudgetError):
        threshold(pool, "s", min_value=5.0)
    with pytest.raises(InputError, match="missing"):
        threshold(pool, "missing", min_value=0.0)
    with pytest.raises(InputError):
        threshold(pool, "t", min_value=0.0)


# ---------------------------------------------------------------------------------------------------
# random
# ---------------------------------------------------------------------------------------------------


def test_random_seeded_determinism() -> None:
    """Same seed gives the same indices; different seeds give different ones on a 1,000-row pool."""
    pool = Dataset.from_dict({"x": list(range(1000))})
    a = random(pool, 100, seed=0)
    b = random(pool, 100, seed=0)
    c = random(pool, 100, seed=1)
    assert a.indices.tolist() == b.indices.tolist()
    assert a.record.indices_sha256 == b.record.indices_sha256
    assert a.indices.tolist() != c.indices.tolist()
    assert len(a) == len(c) == 100
    assert_subset_consistent(pool, a)
    assert a.dataset["x"] == a.indices.tolist()


def test_random_is_uniform_without_replacement() -> None:
    """Over 200 seeds each of 20 rows is drawn close to budget/N of the time; no row twice in a draw."""
    pool = Dataset.from_dict({"x": list(range(20))})
    counts: Counter[int] = Counter()
    seeds = 200
    for seed in range(seeds):
        idx = random(pool, 5, seed=seed).indices.tolist()
        assert len(set(idx)) == 5
        counts.update(idx)
    expected = seeds * 5 / 20  # 50, sd ~6.1
    assert set(counts) == set(range(20))
    for row in range(20):
        assert abs(counts[row] - expected) <= 25, (row, counts[row])


def test_random_draws_are_not_a_fixed_prefix() -> None:
    """Draws for different seeds cover the pool (not just the first rows)."""
    pool = Dataset.from_dict({"x": list(range(100))})
    seen = set()
    for seed in range(20):
        seen.update(random(pool, 10, seed=seed).indices.tolist())
    assert len(seen) > 70


def test_random_column_restricts_to_non_nan() -> None:
    """column= draws only from rows where that column is neither NaN nor null."""
    scores = [NAN if i % 3 == 0 else float(i) for i in range(30)]
    scores[4] = None
    pool = Dataset.from_dict({"s": scores})
    usable = {i for i, v in enumerate(scores) if not is_missing(v)}
    for seed in range(10):
        sel = random(pool, 8, seed=seed, column="s")
        assert set(sel.indices.tolist()) <= usable
        assert len(sel) == 8
    assert random(pool, len(usable), seed=0, column="s").indices.tolist() == sorted(usable)
    assert random(pool, 5, seed=2, column="s").record.parameters == {"column": "s"}
    with pytest.raises(BudgetError):
        random(pool, len(usable) + 1, seed=0, column="s")
    with pytest.raises(InputError):
        random(pool, 2, column="nope")


def test_random_fraction_and_budget_errors() -> None:
    """A fraction is of the whole pool; too many rows raises BudgetError."""
    pool = Dataset.from_dict({"x": list(range(10))})
    assert len(random(pool, 0.25, seed=0)) == 3  # 2.5 -> 3
    assert random(pool, 1.0, seed=5).indices.tolist() == list(range(10))
    with pytest.raises(BudgetError, match="11"):
        random(pool, 11)


def test_random_token_budget() -> None:
    """A token budget takes rows in the seeded random order until the next would exceed it."""
    tokens = [5, 7, 3, 11, 2, 8, 6, 4, 9, 1, 10, 12]
    tokens_nan: list[Any] = [*tokens[:-1], None]
    pool = Dataset.from_dict({"x": list(range(12)), "n_tokens": tokens_nan})
    for seed in range(15):
        sel = random(pool, "30 tokens", seed=seed)
        # numpy's PCG64 permutation, as documented, minus the row without a token count
        order = [int(i) for i in np.random.default_rng(seed).permutation(12) if i != 11]
        expected = token_prefix(order, [float(t) for t in tokens], 30)
        assert sel.indices.tolist() == sorted(expected)
        assert sel.record.kept["tokens"] == sum(tokens[i] for i in expected) <= 30
        assert 11 not in sel.indices.tolist()
    with pytest.raises(BudgetError):
        random(pool, "1000 tokens")
    with pytest.raises(InputError):
        random(Dataset.from_dict({"x": [1, 2]}), "3 tokens")


def test_random_controls() -> None:
    """random_controls gives n selections with seeds seed..seed+n-1, each equal to random(seed=s)."""
    pool = Dataset.from_dict({"x": list(range(200)), "s": [float(i % 7) for i in range(200)]})
    controls = random_controls(pool, 20, n_controls=4, seed=10, column="s")
    assert [c.record.seed for c in controls] == [10, 11, 12, 13]
    for c in controls:
        single = random(pool, 20, seed=c.record.seed, column="s")
        assert c.indices.tolist() == single.indices.tolist()
        assert record_without_time(c) == record_without_time(single)
    assert len({c.record.indices_sha256 for c in controls}) == 4
    assert len(random_controls(pool, 5)) == 5
    with pytest.raises(InputError, match="n_controls"):
        random_controls(pool, 5, n_controls=0)


# ---------------------------------------------------------------------------------------------------
# proportional_quotas and within_clusters
# ---------------------------------------------------------------------------------------------------


def test_proportional_quotas_hand_examples() -> None:
    """[5,3,2] of 7 -> [4,2,1]; remainder ties go to the earlier group; zero-size groups get nothing."""
    assert proportional_quotas(np.array([5, 3, 2]), 7).tolist() == [4, 2, 1]
    assert proportional_quotas(np.array([1, 1, 1]), 2).tolist() == [1, 1, 0]
    assert proportional_quotas(np.array([3, 3, 2]), 4).tolist() == [2, 1, 1]  # 1.5, 1.5, 1
    assert proportional_quotas(np.array([1, 2, 1]), 2).tolist() == [1, 1, 0]  # .5, 1, .5 -> first .5 wins
    assert proportional_quotas(np.array([1, 1, 2]), 2).tolist() == [1, 0, 1]  # .5, .5, 1
    assert proportional_quotas(np.array([2, 0, 2]), 3).tolist() == [2, 0, 1]
    assert proportional_quotas(np.array([4, 6]), 10).tolist() == [4, 6]
    with pytest.raises(BudgetError):
        proportional_quotas(np.array([0, 0]), 1)


def test_proportional_quotas_property() -> None:
    """500 random cases: sum equals the budget, each quota within 1 of its share, equal to exact Hamilton."""
    rng = np.random.default_rng(2024)
    for _ in range(500):
        k = int(rng.integers(1, 12))
        sizes = rng.integers(0, 50, size=k)
        if rng.random() < 0.3:
            sizes = rng.choice([2, 4, 6], size=k)  # many remainder ties
        n = int(sizes.sum())
        if n == 0:
            continue
        total = int(rng.integers(1, n + 1)) if rng.random() < 0.8 else int(rng.integers(1, 10**9))
        quotas = proportional_quotas(sizes, total)
        assert int(quotas.sum()) == total
        for q, s in zip(quotas.tolist(), sizes.tolist(), strict=True):
            share = Fraction(s * total, n)
            assert abs(q - share) < 1
            if s == 0:
                assert q == 0
            if total <= n:
                assert q <= s
        assert quotas.tolist() == hamilton(sizes.tolist(), total)


def test_proportional_quotas_huge_token_budgets_are_exact() -> None:
    """Token-sized totals do not overflow or lose precision."""
    sizes = np.array([3, 3, 1])
    quotas = proportional_quotas(sizes, 10**15 + 1)
    assert int(quotas.sum()) == 10**15 + 1
    assert quotas.tolist() == hamilton([3, 3, 1], 10**15 + 1)


def test_within_clusters_hand_example() -> None:
    """Sizes 5/3/2, budget 7 -> quotas 4/2/1, filled with each cluster's top scores."""
    clusters = [0, 1, 0, 2, 0, 1, 0, 2, 1, 0]
    scores = [5.0, 1.0, 4.0, 7.0, 3.0, 9.0, 2.0, 8.0, 1.0, 1.0]
    pool = Dataset.from_dict({"cluster": clusters, "s": scores})
    sel = within_clusters(pool, "cluster", "s", 7)
    # cluster 0: rows 0,2,4,6,9 -> top 4 = 0,2,4,6; cluster 1: rows 1,5,8 -> 5 then tie 1/8 -> 1;
    # cluster 2: rows 3,7 -> 7
    assert sel.indices.tolist() == [0, 1, 2, 4, 5, 6, 7]
    assert sel.record.parameters["quotas"] == {"0": 4, "1": 2, "2": 1}
    assert sel.record.parameters["n_clusters"] == 3
    assert sel.record.method == "within-clusters"
    assert_subset_consistent(pool, sel)


def test_within_clusters_remainder_tie_goes_to_first_sorted_label() -> None:
    """Equal remainders: the extra row goes to the earlier label in sorted order, not pool order."""
    pool = Dataset.from_dict({"c": ["b", "b", "a", "a", "c"], "s": [1.0, 2.0, 3.0, 4.0, 5.0]})
    sel = within_clusters(pool, "c", "s", 2)  # shares .8, .8, .4 -> tie between "a" and "b": "a"
    assert sel.record.parameters["quotas"] == {"a": 1, "b": 1}
    sel3 = within_clusters(pool, "c", "s", 3)  # 1.2, 1.2, .6 -> floor 1, 1, 0; "c" has the largest rest
    assert sel3.record.parameters["quotas"] == {"a": 1, "b": 1, "c": 1}
    tie = Dataset.from_dict({"c": ["b", "a", "b", "a"], "s": [1.0, 2.0, 3.0, 4.0]})
    one = within_clusters(tie, "c", "s", 1)  # .5, .5 -> "a"
    assert one.record.parameters["quotas"] == {"a": 1}
    assert one.indices.tolist() == [3]
    ints = Dataset.from_dict({"c": [10, 10, 2, 2], "s": [1.0, 2.0, 3.0, 4.0]})
    numeric = within_clusters(ints, "c", "s", 1)  # labels sort numerically: 2 before 10
    assert numeric.record.parameters["quotas"] == {"2": 1}
    assert numeric.indices.tolist() == [3]


def test_within_clusters_matches_brute_force() -> None:
    """On 40 random pools (int or string labels, nulls, NaN scores, ties) the result equals a reference."""
    rng = pyrandom.Random(7)
    for case in range(40):
        n = rng.randint(3, 40)
        names: list[Any] = ["alpha", "beta", "gamma", "delta"] if case % 2 else [0, 1, 2, 3, 4]
        clusters = [None if rng.random() < 0.1 else rng.choice(names) for _ in range(n)]
        scores = [NAN if rng.random() < 0.15 else float(rng.randint(0, 6)) for _ in range(n)]
        usable = [i for i in range(n) if clusters[i] is not None and not is_missing(scores[i])]
        if not usable:
            continue
        budget = rng.randint(1, len(usable))
        largest = rng.random() < 0.6
        pool = Dataset.from_dict({"c": clusters, "s": scores})
        sel = within_clusters(pool, "c", "s", budget, largest=largest)
        expected, quotas = brute_within_clusters(clusters, scores, budget, largest=largest)
        assert sel.indices.tolist() == expected
        assert sel.record.parameters["quotas"] == {str(c): q for c, q in quotas.items() if q}
        assert sum(sel.record.parameters["quotas"].values()) == budget
        assert_subset_consistent(pool, sel)


def test_within_clusters_string_labels_and_null_cluster() -> None:
    """String labels work; rows with a null cluster are never selected, whatever their score."""
    pool = Dataset.from_dict(
        {
            "c": ["x", None, "y", "x", None, "y", "x"],
            "s": [1.0, 100.0, 2.0, 3.0, 99.0, 4.0, 5.0],
        }
    )
    sel = within_clusters(pool, "c", "s", 5)  # x has 3, y has 2: all of them
    assert sel.indices.tolist() == [0, 2, 3, 5, 6]
    assert sel.record.parameters["quotas"] == {"x": 3, "y": 2}
    assert within_clusters(pool, "c", "s", 2).indices.tolist() == [5, 6]  # 1.2/.8 -> x 1, y 1
    with pytest.raises(BudgetError):
        within_clusters(pool, "c", "s", 6)


def test_within_clusters_quotas_from_selectable_rows_only() -> None:
    """NaN-score rows never selected and do not count toward a cluster's size."""
    # cluster a: 6 rows, 4 NaN (2 selectable); cluster b: 2 rows. Counting all rows would give a 2, b 0.
    pool = Dataset.from_dict(
        {
            "c": ["a", "a", "a", "a", "a", "a", "b", "b"],
            "s": [NAN, 5.0, NAN, NAN, 6.0, NAN, 1.0, 2.0],
        }
    )
    sel = within_clusters(pool, "c", "s", 2)
    assert sel.record.parameters["quotas"] == {"a": 1, "b": 1}
    assert sel.indices.tolist() == [4, 7]
    assert within_clusters(pool, "c", "s", 2, largest=False).indices.tolist() == [1, 6]


def test_within_clusters_fraction_budget() -> None:
    """A fraction budget is of the whole pool, split by quota."""
    pool = Dataset.from_dict({"c": [0, 0, 0, 0, 1, 1, 1, 1], "s": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, NAN]})
    sel = within_clusters(pool, "c", "s", 0.5)  # 4 rows; sizes 4, 3 -> 2.29, 1.71 -> 2, 2
    assert sel.record.parameters["quotas"] == {"0": 2, "1": 2}
    assert sel.indices.tolist() == [2, 3, 5, 6]


def test_within_clusters_token_budget() -> None:
    """Token shares are proportional to cluster sizes, sum to the budget, and no cluster exceeds its share."""
    pool = Dataset.from_dict(
        {
            "c": [0, 0, 0, 1, 1, 1, 1, 0],
            "s": [4.0, 3.0, 2.0, 9.0, 8.0, 7.0, 6.0, 1.0],
            "n_tokens": [10, 30, 5, 20, 20, 1, 50, 5],
        }
    )
    sel = within_clusters(pool, "c", "s", "60 tokens")
    # sizes 4/4 -> shares 30/30; cluster 0 in score order: 0 (10), 1 (30) -> stops at 10;
    # cluster 1: 3 (20), 4 (20) would be 40 -> 3 only
    assert sel.record.parameters["quotas"] == {"0": 30, "1": 30}
    assert sel.indices.tolist() == [0, 3]
    assert sel.record.kept["tokens"] == 30
    assert sel.record.budget["requested"] == {"kind": "tokens", "value": 60}
    exact = within_clusters(pool, "c", "s", "80 tokens")  # shares 40/40: 0 -> 10+30 = 40; 1 -> 20+20 = 40
    assert exact.indices.tolist() == [0, 1, 3, 4]
    assert exact.record.kept["tokens"] == 80
    with pytest.raises(BudgetError):
        within_clusters(pool, "c", "s", "142 tokens")
    with pytest.raises(InputError):
        within_clusters(Dataset.from_dict({"c": [0], "s": [1.0]}), "c", "s", "1 tokens")


def test_within_clusters_token_budget_matches_brute_force() -> None:
    """On random pools, each cluster takes its score-order prefix within its proportional token share."""
    rng = pyrandom.Random(31)
    for _ in range(30):
        n = rng.randint(3, 30)
        clusters = [rng.choice(["p", "q", "r"]) for _ in range(n)]
        scores = [NAN if rng.random() < 0.1 else float(rng.randint(0, 5)) for _ in range(n)]
        tokens = [rng.randint(1, 20) for _ in range(n)]
        usable = [i for i in range(n) if not is_missing(scores[i])]
        if not usable:
            continue
        budget = rng.randint(1, sum(tokens[i] for i in usable))
        pool = Dataset.from_dict({"c": clusters, "s": scores, "n_tokens": tokens})
        sel = within_clusters(pool, "c", "s", f"{budget} tokens")
        labels = sorted({clusters[i] for i in usable})
        sizes = [sum(clusters[i] == c for i in usable) for c in labels]
        shares = hamilton(sizes, budget)
        expected: list[int] = []
        for c, share in zip(labels, shares, strict=True):
            sub = [scores[i] if clusters[i] == c else None for i in range(n)]
            taken = token_prefix(brute_order(sub), [float(t) for t in tokens], share)
            assert sum(tokens[i] for i in taken) <= share
            expected += taken
        assert sel.indices.tolist() == sorted(expected)
        assert sel.record.kept["tokens"] == sum(tokens[i] for i in expected) <= budget
        assert sel.record.parameters["quotas"] == {c: q for c, q in zip(labels, shares, strict=True) if q}
        assert sum(sel.record.parameters["quotas"].values()) == budget


def test_within_clusters_errors() -> None:
    """Budget above eligible rows raises BudgetError with the numbers; missing columns raise InputError."""
    pool = Dataset.from_dict({"c": [0, 0, 1, None], "s": [1.0, NAN, 2.0, 3.0]})
    with pytest.raises(BudgetError) as info:
        within_clusters(pool, "c", "s", 3)
    assert "3" in str(info.value) and "2" in str(info.value)
    with pytest.raises(InputError, match="cluster"):
        within_clusters(pool, "nope", "s", 1)
    with pytest.raises(InputError):
        within_clusters(pool, "c", "nope", 1)
    all_nan = Dataset.from_dict({"c": [0, 1], "s": [NAN, NAN]})
    with pytest.raises(BudgetError):
        within_clusters(all_nan, "c", "s", 1)


def test_within_clusters_on_concatenated_and_reindexed_pools() -> None:
    """Labels are decoded correctly across chunks and through an indices mapping."""
    a = Dataset.from_dict({"c": ["x", "y", "x"], "s": [1.0, 2.0, 3.0]})
    b = Dataset.from_dict({"c": ["z", "x", None], "s": [4.0, 5.0, 6.0]})
    pool = concatenate_datasets([a, b])
    clusters = pool["c"]
    scores = pool["s"]
    for budget in range(1, 6):
        expected, _ = brute_within_clusters(list(clusters), list(scores), budget)
        assert within_clusters(pool, "c", "s", budget).indices.tolist() == expected
    view = pool.select([5, 4, 3, 0, 2])  # c = None, x, z, x, x
    sel = within_clusters(view, "c", "s", 2)  # sizes x 3, z 1 -> 1.5, .5 -> x 2, z 0
    assert sel.record.parameters["quotas"] == {"x": 2}
    assert sel.indices.tolist() == [1, 4]


# ---------------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------------


def test_every_selector_is_deterministic() -> None:
    """Running each selector twice gives identical indices, subsets and records (except created_at)."""
    rng = pyrandom.Random(5)
    n = 200
    pool = Dataset.from_dict(
        {
            "c": [rng.choice(["a", "b", "c", None]) for _ in range(n)],
            "s": [NAN if rng.random() < 0.1 else float(rng.randint(0, 9)) for _ in range(n)],
            "n_tokens": [rng.randint(1, 100) for _ in range(n)],
        }
    )
    runs = [
        lambda: top_k(pool, "s", 30),
        lambda: top_k(pool, "s", "2000 tokens", largest=False),
        lambda: top_k(pool, "s", 0.1, min_value=2.0, max_value=7.0),
        lambda: threshold(pool, "s", min_value=3.0, max_value=6.0),
        lambda: random(pool, 25, seed=42),
        lambda: random(pool, "1500 tokens", seed=42, column="s"),
        lambda: within_clusters(pool, "c", "s", 40),
        lambda: within_clusters(pool, "c", "s", "3000 tokens", largest=False),
    ]
    for run in runs:
        first, second = run(), run()
        assert first.indices.tolist() == second.indices.tolist()
        assert record_without_time(first) == record_without_time(second)
        assert plain_rows(first.dataset) == plain_rows(second.dataset)
        assert_subset_consistent(pool, first)


def test_budget_errors_say_each_number_once() -> None:
    """A count budget is not repeated in rows; a fraction budget says how many rows it came to."""
    from hf_select import select

    ds = Dataset.from_dict({"x": [1.0, 2.0, float("nan"), 4.0]})
    with pytest.raises(BudgetError) as count:
        select.top_k(ds, "x", 5)
    assert str(count.value) == "budget of 5 rows exceeds the 3 rows with a usable 'x'"
    with pytest.raises(BudgetError) as fraction:
        select.top_k(ds, "x", 1.0)
    assert str(fraction.value) == "budget of 1 of the pool (4 rows) exceeds the 3 rows with a usable 'x'"
