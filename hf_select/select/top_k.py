"""Top-k: the rows with the largest (or smallest) score, within a budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from datasets import Dataset

from .budget import Budget, take
from .selection import TOKEN_COLUMN, Selection, column_values, finish, ranked, token_values
from .threshold import in_range


def top_k(
    pool: Dataset,
    column: str,
    budget: Budget | int | float | str,
    *,
    largest: bool = True,
    min_value: float | None = None,
    max_value: float | None = None,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Sequence[Any] = (),
) -> Selection:
    """Keep the rows with the largest (`largest=False`: smallest) `column`, ties in pool order.

    NaN scores are never selected; `min_value`/`max_value` (inclusive) restrict the candidates first,
    e.g. `max_value=1.0` for IFD. A token budget takes rows in score order until the next one would
    exceed it.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"n_tokens": [5.0, 9.0, float("nan"), 9.0, 1.0]})
        >>> top_k(ds, "n_tokens", 2).indices.tolist()
        [1, 3]
        >>> top_k(ds, "n_tokens", "14 tokens").indices.tolist()
        [1]
    """
    budget = Budget.parse(budget)
    values = column_values(pool, column)
    tokens = token_values(pool, budget, token_column)
    eligible = in_range(values, min_value, max_value)
    if budget.kind == "tokens":
        eligible &= ~np.isnan(tokens)
    order = ranked(values, eligible, largest=largest)
    chosen = take(order, budget, n_pool=len(pool), tokens=tokens, what=f"rows with a usable {column!r}")
    parameters = {"column": column, "largest": largest, "min_value": min_value, "max_value": max_value}
    return finish(
        pool, chosen, method="top-k", parameters=parameters, budget=budget, seed=None,
        tokens=tokens, source=source, scorers=scorers, token_column=token_column,
    )  # fmt: skip


def ifd_top_k(
    pool: Dataset,
    budget: Budget | int | float | str,
    *,
    column: str = "ifd",
    keep_above_one: bool = False,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Sequence[Any] = (),
) -> Selection:
    """The IFD selector of Cherry LLM: rows with IFD > 1 (the instruction does not help the model predict
    the response) are dropped unless `keep_above_one`, then the highest IFD are kept.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"ifd": [0.5, 1.3, 0.9, 0.7]})
        >>> ifd_top_k(ds, 2).indices.tolist()
        [2, 3]
    """
    selection = top_k(
        pool, column, budget, largest=True, max_value=None if keep_above_one else 1.0,
        token_column=token_column, source=source, scorers=scorers,
    )  # fmt: skip
    selection.record.method = "ifd"
    selection.record.parameters["keep_above_one"] = keep_above_one
    return selection
