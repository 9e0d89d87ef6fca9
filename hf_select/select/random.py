"""Random: the baseline every method must beat. Uniform without replacement, seeded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset

from ..errors import InputError
from .base import BudgetedSelector, Picked
from .budget import Budget, BudgetSpec
from .selection import TOKEN_COLUMN, Selection, column_values


@dataclass(kw_only=True)
class Random(BudgetedSelector):
    """A uniform random subset (numpy's PCG64 seeded with `seed`).

    A token budget takes rows in random order until the next one would exceed it.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"text": list("abcdefgh")})
        >>> Random(budget=3, seed=0).fit(ds).indices.tolist() == Random(budget=3, seed=0).fit(ds).indices.tolist()
        True
    """

    method = "random"

    seed: int = 0
    """Seed of the permutation; controls use seed, seed + 1, ..."""
    column: str | None = None
    """Draw only from rows where this column is not NaN (e.g. `n_tokens`: the rows a score-based
    selection can pick from)."""

    def pick(self, pool: Dataset, budget: Budget, tokens: np.ndarray | None) -> Picked:
        eligible = np.ones(len(pool), dtype=bool)
        if self.column is not None:
            eligible &= ~np.isnan(column_values(pool, self.column))
        if budget.kind == "tokens":
            eligible &= ~np.isnan(tokens)  # type: ignore[operator]
        permutation = np.random.default_rng(self.seed).permutation(len(pool))
        order = permutation[eligible[permutation]]
        return Picked(budget.cut(order, n_pool=len(pool), tokens=tokens, what="rows to draw from"))


def random(
    pool: Dataset,
    budget: BudgetSpec,
    *,
    seed: int = 0,
    column: str | None = None,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Any = None,
) -> Selection:
    """`Random(...).fit(pool)`: a uniform random subset; `column` restricts the draw to rows where it is not NaN.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"text": list("abcdefgh")})
        >>> random(ds, 3, seed=0).indices.tolist() == random(ds, 3, seed=0).indices.tolist()
        True
    """
    selector = Random(budget=budget, seed=seed, column=column, token_column=token_column)
    return selector.fit(pool, source=source, scorers=scorers)


def random_controls(
    pool: Dataset, budget: BudgetSpec, *, n_controls: int = 5, seed: int = 0, **kwargs: Any
) -> list[Selection]:
    """`n_controls` random subsets with seeds `seed, seed + 1, ...`: the baselines of a comparison."""
    if n_controls < 1:
        raise InputError(f"n_controls must be at least 1, got {n_controls}")
    return [random(pool, budget, seed=seed + i, **kwargs) for i in range(n_controls)]
