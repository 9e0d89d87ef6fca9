"""Score within clusters: a quota per cluster proportional to its size, the top rows by score inside each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from ..errors import BudgetError, InputError
from .budget import Budget, take
from .selection import TOKEN_COLUMN, Selection, column_values, finish, ranked, token_values


def proportional_quotas(sizes: np.ndarray, total: int) -> np.ndarray:
    """Split `total` across groups in proportion to `sizes`, largest-remainder (Hamilton) rounding.

    Exact integer arithmetic; quotas sum to `total`; remainder ties go to the earlier group.

    Example:
        >>> proportional_quotas(np.array([5, 3, 2]), 7).tolist()
        [4, 2, 1]
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    n = int(sizes.sum())
    if n == 0:
        raise BudgetError("no cluster has a selectable row")
    scaled = sizes.astype(object) * total  # Python ints: no overflow for token budgets
    quotas = np.array([s // n for s in scaled], dtype=np.int64)
    remainders = np.array([s % n for s in scaled], dtype=object)
    missing = total - int(quotas.sum())
    if missing:
        order = sorted(range(len(sizes)), key=lambda i: (-remainders[i], i))
        quotas[order[:missing]] += 1
    return quotas


def cluster_labels(pool: Dataset, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(cluster code per row, -1 where null; the distinct labels in sorted order)."""
    if column not in pool.column_names:
        raise InputError(f"cluster column {column!r} is not in the dataset; it has {pool.column_names}")
    array = pool.with_format("arrow")[column]
    if isinstance(array, pa.Table):
        array = array.column(0)
    encoded = pc.dictionary_encode(array).combine_chunks()
    labels = encoded.dictionary.to_pylist()
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    order = sorted(range(len(labels)), key=lambda i: labels[i])
    remap = np.full(len(labels) + 1, -1, dtype=np.int64)  # remap[-1] keeps null rows at -1
    remap[np.array(order, dtype=np.int64)] = np.arange(len(labels))
    return remap[codes], np.array([labels[i] for i in order], dtype=object)


def within_clusters(
    pool: Dataset,
    cluster_column: str,
    score_column: str,
    budget: Budget | int | float | str,
    *,
    largest: bool = True,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Sequence[Any] = (),
) -> Selection:
    """The study's "score + k-means": each cluster gets a quota proportional to its number of selectable
    rows (largest-remainder rounding, quotas summing to the budget), filled with its top rows by score.

    With a token budget, the tokens are split the same way and each cluster takes its top rows until
    the next would exceed its share. Rows with a NaN score or a null cluster are never selected.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"cluster": [0, 0, 0, 1, 1], "n_tokens": [1.0, 3.0, 2.0, 5.0, 4.0]})
        >>> within_clusters(ds, "cluster", "n_tokens", 3).indices.tolist()
        [1, 2, 3]
    """
    budget = Budget.parse(budget)
    codes, labels = cluster_labels(pool, cluster_column)
    values = column_values(pool, score_column)
    tokens = token_values(pool, budget, token_column)
    eligible = ~np.isnan(values) & (codes >= 0)
    if budget.kind == "tokens":
        eligible &= ~np.isnan(tokens)
    sizes = np.bincount(codes[eligible], minlength=len(labels))
    if budget.kind == "tokens":
        available = int(np.nansum(tokens[eligible]))
        if budget.value > available:
            raise BudgetError(f"budget of {budget.describe()} exceeds the {available:,} tokens of the selectable rows")
        shares = proportional_quotas(sizes, int(budget.value))
    else:
        n = budget.rows(len(pool))
        if n > int(eligible.sum()):
            raise BudgetError(
                f"budget of {budget.describe(n)} exceeds the {int(eligible.sum()):,} rows "
                f"with a usable {score_column!r} and cluster"
            )
        shares = proportional_quotas(sizes, n)
    order = ranked(values, eligible, largest=largest)
    by_cluster = codes[order]
    chosen: list[np.ndarray] = []
    for c, share in enumerate(shares):
        if share == 0:
            continue
        members = order[by_cluster == c]
        if budget.kind == "tokens":
            cumulative = np.cumsum(tokens[members])
            chosen.append(members[: int(np.searchsorted(cumulative, share, side="right"))])
        else:
            chosen.append(take(members, Budget("count", int(share)), n_pool=len(pool), tokens=None))
    parameters = {
        "cluster_column": cluster_column,
        "score_column": score_column,
        "largest": largest,
        "n_clusters": len(labels),
        "quotas": {str(labels[c]): int(q) for c, q in enumerate(shares) if q},
    }
    return finish(
        pool, np.concatenate(chosen) if chosen else np.array([], dtype=np.int64), method="within-clusters",
        parameters=parameters, budget=budget, seed=None, tokens=tokens, source=source, scorers=scorers,
        token_column=token_column,
    )  # fmt: skip
