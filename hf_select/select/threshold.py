"""Threshold: every row whose score lies in a range. Needs no fitting: it is a `Dataset.filter` callable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset

from ..errors import BudgetError, InputError
from .base import Picked, Selector
from .budget import Budget
from .selection import TOKEN_COLUMN, Selection, column_values


def in_range(values: np.ndarray, min_value: float | None, max_value: float | None) -> np.ndarray:
    """Finite-or-infinite, non-NaN values within [min_value, max_value] (bounds optional)."""
    if min_value is not None and max_value is not None and min_value > max_value:
        raise InputError(f"min_value {min_value} is above max_value {max_value}")
    mask = ~np.isnan(values)
    if min_value is not None:
        mask &= values >= min_value
    if max_value is not None:
        mask &= values <= max_value
    return mask


@dataclass(kw_only=True)
class Threshold(Selector):
    """Keep every row with `min_value <= column <= max_value` (either bound optional; NaN never kept).

    It needs no fitting: `pool.filter(Threshold(column="ifd", max_value=1.0))` keeps the same rows as
    `Threshold(...).fit(pool).dataset` (without a record).

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"ifd": [0.4, 1.2, float("nan"), 0.9]})
        >>> Threshold(column="ifd", max_value=1.0).fit(ds).indices.tolist()
        [0, 3]
        >>> list(ds.filter(Threshold(column="ifd", max_value=1.0))["ifd"])
        [0.4, 0.9]
    """

    method = "threshold"

    column: str
    """Score column to test."""
    min_value: float | None = None
    """Keep rows whose score is at least this."""
    max_value: float | None = None
    """Keep rows whose score is at most this."""

    def __post_init__(self) -> None:
        if self.min_value is None and self.max_value is None:
            raise InputError("threshold needs min_value, max_value or both")
        in_range(np.empty(0), self.min_value, self.max_value)  # min above max fails here

    def scored_column(self) -> str:
        return self.column

    def pick(self, pool: Dataset, budget: Budget | None, tokens: np.ndarray | None) -> Picked:
        chosen = np.flatnonzero(in_range(column_values(pool, self.column), self.min_value, self.max_value))
        if len(chosen) == 0:
            raise BudgetError(f"no row has {self.column!r} within [{self.min_value}, {self.max_value}]")
        return Picked(chosen)

    def __call__(self, row_or_batch: dict[str, Any], *_: Any) -> bool | list[bool]:
        """For `Dataset.filter`: a row gives a bool, a batch (`batched=True`) a list of bools."""
        value = row_or_batch[self.column]
        batched = isinstance(value, list | tuple | np.ndarray)
        values = np.array([np.nan if v is None else v for v in (value if batched else [value])], dtype=np.float64)
        keep = in_range(values, self.min_value, self.max_value).tolist()
        return keep if batched else keep[0]


def threshold(
    pool: Dataset,
    column: str,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Any = None,
) -> Selection:
    """`Threshold(...).fit(pool)`: every row with `min_value <= column <= max_value`.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"ifd": [0.4, 1.2, float("nan"), 0.9]})
        >>> threshold(ds, "ifd", max_value=1.0).indices.tolist()
        [0, 3]
    """
    selector = Threshold(column=column, min_value=min_value, max_value=max_value, token_column=token_column)
    return selector.fit(pool, source=source, scorers=scorers)
