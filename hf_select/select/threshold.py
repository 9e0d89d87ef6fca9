"""Threshold: every row whose score lies in a range."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from datasets import Dataset

from ..errors import BudgetError, InputError
from .selection import TOKEN_COLUMN, Selection, column_values, finish


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


def threshold(
    pool: Dataset,
    column: str,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Sequence[Any] = (),
) -> Selection:
    """Keep every row with `min_value <= column <= max_value` (either bound optional; NaN never kept).

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"ifd": [0.4, 1.2, float("nan"), 0.9]})
        >>> threshold(ds, "ifd", max_value=1.0).indices.tolist()
        [0, 3]
    """
    if min_value is None and max_value is None:
        raise InputError("threshold needs min_value, max_value or both")
    values = column_values(pool, column)
    chosen = np.flatnonzero(in_range(values, min_value, max_value))
    if len(chosen) == 0:
        raise BudgetError(f"no row has {column!r} within [{min_value}, {max_value}]")
    tokens = column_values(pool, token_column, what="token") if token_column in pool.column_names else None
    parameters = {"column": column, "min_value": min_value, "max_value": max_value}
    return finish(
        pool, chosen, method="threshold", parameters=parameters, budget=None, seed=None,
        tokens=tokens, source=source, scorers=scorers, token_column=token_column,
    )  # fmt: skip
