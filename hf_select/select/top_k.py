"""Top-k: the rows with the largest (or smallest) score, within a budget; and IFD's and LESS's presets of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasets import Dataset

from .base import BudgetedSelector, Picked
from .budget import Budget, BudgetSpec
from .selection import TOKEN_COLUMN, Selection, column_values, ranked
from .threshold import in_range


@dataclass(kw_only=True)
class TopK(BudgetedSelector):
    """Keep the rows with the largest (or smallest) score, ties in pool order.

    NaN scores are never selected; `min_value`/`max_value` (inclusive) restrict the candidates first. A
    token budget takes rows in score order until the next one would exceed it.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"n_tokens": [5.0, 9.0, float("nan"), 9.0, 1.0]})
        >>> TopK(column="n_tokens", budget=2).fit(ds).indices.tolist()
        [1, 3]
        >>> TopK(column="n_tokens", budget="14 tokens").fit(ds).indices.tolist()
        [1]
    """

    method = "top-k"

    column: str
    """Score column to rank by."""
    largest: bool = True
    """Keep the largest scores (`--no-largest`: the smallest)."""
    min_value: float | None = None
    """Only rows whose score is at least this are candidates."""
    max_value: float | None = None
    """Only rows whose score is at most this are candidates (e.g. 1.0 for IFD)."""

    def scored_column(self) -> str:
        return self.column

    def pick(self, pool: Dataset, budget: Budget, tokens: np.ndarray | None) -> Picked:
        values = column_values(pool, self.column)
        eligible = in_range(values, self.min_value, self.max_value)
        if budget.kind == "tokens":
            eligible &= ~np.isnan(tokens)  # type: ignore[operator]
        order = ranked(values, eligible, largest=self.largest)
        return Picked(budget.cut(order, n_pool=len(pool), tokens=tokens, what=f"rows with a usable {self.column!r}"))


@dataclass(kw_only=True)
class PresetTopK(TopK):
    """A method's preset of `TopK`: its own score column, the highest scores kept, no range of its own
    (a subclass may set one in `__post_init__`)."""

    largest: bool = field(default=True, init=False)
    min_value: float | None = field(default=None, init=False)
    max_value: float | None = field(default=None, init=False)


@dataclass(kw_only=True)
class IFDTopK(PresetTopK):
    """Cherry LLM's IFD selector: rows with IFD > 1 (the instruction does not help the model predict the
    response) are dropped unless `keep_above_one`, then the highest IFD are kept.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"ifd": [0.5, 1.3, 0.9, 0.7]})
        >>> IFDTopK(budget=2).fit(ds).indices.tolist()
        [2, 3]
    """

    method = "ifd"

    column: str = "ifd"
    """IFD score column."""
    keep_above_one: bool = False
    """Keep rows with IFD > 1 as candidates too."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.max_value = None if self.keep_above_one else 1.0


@dataclass(kw_only=True)
class LESSTopK(PresetTopK):
    """LESS (Xia et al. 2024): keep the rows whose LoRA gradients are most like the target set's, i.e. the
    highest `less` score (`hf-select score --method less --warmup DIR`). "LESS within clusters" is
    `WithinClusters(score_column="less", ...)`: `hf-select select --method within-clusters --column less`.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"less": [0.02, -0.01, float("nan"), 0.05]})
        >>> LESSTopK(budget=2).fit(ds).indices.tolist()
        [0, 3]
    """

    method = "less"

    column: str = "less"
    """LESS score column."""


def top_k(
    pool: Dataset,
    column: str,
    budget: BudgetSpec,
    *,
    largest: bool = True,
    min_value: float | None = None,
    max_value: float | None = None,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Any = None,
) -> Selection:
    """`TopK(...).fit(pool)`: keep the rows with the largest (`largest=False`: smallest) `column`.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"n_tokens": [5.0, 9.0, float("nan"), 9.0, 1.0]})
        >>> top_k(ds, "n_tokens", 2).indices.tolist()
        [1, 3]
    """
    selector = TopK(
        column=column, budget=budget, largest=largest, min_value=min_value, max_value=max_value,
        token_column=token_column,
    )  # fmt: skip
    return selector.fit(pool, source=source, scorers=scorers)


def ifd_top_k(
    pool: Dataset,
    budget: BudgetSpec,
    *,
    column: str = "ifd",
    keep_above_one: bool = False,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Any = None,
) -> Selection:
    """`IFDTopK(...).fit(pool)`: drop IFD > 1 unless `keep_above_one`, then keep the highest IFD.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"ifd": [0.5, 1.3, 0.9, 0.7]})
        >>> ifd_top_k(ds, 2).indices.tolist()
        [2, 3]
    """
    selector = IFDTopK(budget=budget, column=column, keep_above_one=keep_above_one, token_column=token_column)
    return selector.fit(pool, source=source, scorers=scorers)


def less_top_k(
    pool: Dataset,
    budget: BudgetSpec,
    *,
    column: str = "less",
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Any = None,
) -> Selection:
    """`LESSTopK(...).fit(pool)`: keep the rows with the highest LESS score.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"less": [0.02, -0.01, float("nan"), 0.05]})
        >>> less_top_k(ds, 1).indices.tolist()
        [3]
    """
    selector = LESSTopK(budget=budget, column=column, token_column=token_column)
    return selector.fit(pool, source=source, scorers=scorers)
