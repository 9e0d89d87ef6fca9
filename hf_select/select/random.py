"""Random: the baseline every method must beat. Uniform without replacement, seeded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from datasets import Dataset

from ..errors import InputError
from .budget import Budget, take
from .selection import TOKEN_COLUMN, Selection, column_values, finish, token_values


def random(
    pool: Dataset,
    budget: Budget | int | float | str,
    *,
    seed: int = 0,
    column: str | None = None,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Sequence[Any] = (),
) -> Selection:
    """A uniform random subset (numpy's PCG64 seeded with `seed`).

    `column`, when given, restricts the draw to rows where it is not NaN (e.g. `"n_tokens"`, so a
    control is drawn from the same well-formed rows a score-based selection can pick from). A token
    budget takes rows in random order until the next one would exceed it.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"text": list("abcdefgh")})
        >>> random(ds, 3, seed=0).indices.tolist() == random(ds, 3, seed=0).indices.tolist()
        True
    """
    budget = Budget.parse(budget)
    tokens = token_values(pool, budget, token_column)
    eligible = np.ones(len(pool), dtype=bool)
    if column is not None:
        eligible &= ~np.isnan(column_values(pool, column))
    if budget.kind == "tokens":
        eligible &= ~np.isnan(tokens)
    permutation = np.random.default_rng(seed).permutation(len(pool))
    order = permutation[eligible[permutation]]
    chosen = take(order, budget, n_pool=len(pool), tokens=tokens, what="rows to draw from")
    return finish(
        pool, chosen, method="random", parameters={"column": column}, budget=budget, seed=seed,
        tokens=tokens, source=source, scorers=scorers, token_column=token_column,
    )  # fmt: skip


def random_controls(
    pool: Dataset, budget: Budget | int | float | str, *, n_controls: int = 5, seed: int = 0, **kwargs: Any
) -> list[Selection]:
    """`n_controls` random subsets with seeds `seed, seed + 1, ...`: the baselines of a comparison."""
    if n_controls < 1:
        raise InputError(f"n_controls must be at least 1, got {n_controls}")
    return [random(pool, budget, seed=seed + i, **kwargs) for i in range(n_controls)]
