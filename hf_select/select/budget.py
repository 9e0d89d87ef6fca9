"""Budgets: how much to select. A count (`1000`), a fraction of the pool (`0.01`, `"1%"`), or tokens (`"5M tokens"`)."""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from ..errors import BudgetError

BudgetKind = Literal["count", "fraction", "tokens"]
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}
_PATTERN = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([kmb]?)\s*(%|tokens?|rows?)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """A parsed budget.

    Example:
        >>> Budget.parse("5M tokens")
        Budget(kind='tokens', value=5000000)
        >>> Budget.parse(0.01).rows(17_671)
        177
    """

    kind: BudgetKind
    value: int | float

    @classmethod
    def parse(cls, spec: Budget | int | float | str) -> Budget:
        if isinstance(spec, Budget):
            return spec
        if isinstance(spec, bool):
            raise BudgetError(f"invalid budget {spec!r}")
        if isinstance(spec, numbers.Integral):
            return cls._count(int(spec), spec)
        if isinstance(spec, numbers.Real):
            spec = float(spec)
            if 0 < spec <= 1:
                return cls("fraction", spec)
            raise BudgetError(f"a float budget is a fraction in (0, 1], got {spec}; pass an int for a row count")
        if not isinstance(spec, str):
            raise BudgetError(f"invalid budget {spec!r}: expected a count, a fraction or a string like '5M tokens'")
        match = _PATTERN.match(spec)
        if not match:
            raise BudgetError(f"invalid budget {spec!r}: expected e.g. '1000', '0.01', '1%', '10k' or '5M tokens'")
        number, suffix, unit = (
            match.group(1).replace("_", ""),
            match.group(2).lower(),
            (match.group(3) or "").lower(),
        )
        value = Decimal(number) * _SUFFIX[suffix]  # exact: "16.1k" is 16100, not 16100.000000000002
        if unit == "%":
            if suffix or not 0 < value <= 100:
                raise BudgetError(f"invalid budget {spec!r}: a percentage is in (0, 100]")
            return cls("fraction", float(value / 100))
        if unit.startswith("token"):
            if value != int(value) or value <= 0:
                raise BudgetError(f"invalid budget {spec!r}: a token budget is a positive whole number")
            return cls("tokens", int(value))
        if "." in number and not suffix and not unit:
            return cls.parse(float(value))  # "0.01" is a fraction
        return cls._count(value, spec)

    @classmethod
    def _count(cls, value: float | Decimal, spec: Any) -> Budget:
        if value != int(value) or value <= 0:
            raise BudgetError(f"invalid budget {spec!r}: a row count is a positive whole number")
        return cls("count", int(value))

    def rows(self, n_pool: int) -> int:
        """Rows asked for, for count and fraction budgets (a fraction of the whole pool, rounded half up)."""
        if self.kind == "tokens":
            raise BudgetError("a token budget has no row count")
        if self.kind == "count":
            n = int(self.value)
        else:  # exact arithmetic: 0.29 * 50 is 14.499999999999998 in floats, but rounds half up to 15
            n = math.floor(Fraction(repr(self.value)) * n_pool + Fraction(1, 2))
        if n < 1:
            raise BudgetError(f"budget {self.describe()} of a {n_pool}-row pool selects no rows")
        return n

    def describe(self, rows: int | None = None) -> str:
        """ "1,000 rows", "0.01 of the pool" (with `rows`: "0.01 of the pool (177 rows)") or "5,000,000 tokens"."""
        if self.kind == "count":
            return f"{self.value:,} rows"
        if self.kind == "fraction":
            return f"{self.value:.6g} of the pool" + (f" ({rows:,} rows)" if rows is not None else "")
        return f"{self.value:,} tokens"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value}


def take(
    order: np.ndarray,
    budget: Budget,
    *,
    n_pool: int,
    tokens: np.ndarray | None,
    what: str = "selectable rows",
) -> np.ndarray:
    """The prefix of `order` (pool indices in priority order) that the budget allows.

    A token budget keeps the longest prefix whose `tokens` sum does not exceed it. Raises
    `BudgetError` when the budget asks for more than `order` holds.
    """
    if budget.kind != "tokens":
        n = budget.rows(n_pool)
        if n > len(order):
            raise BudgetError(f"budget of {budget.describe(n)} exceeds the {len(order):,} {what}")
        return order[:n]
    if tokens is None:
        raise BudgetError("a token budget needs a token count column (run the token-length scorer first)")
    cumulative = np.cumsum(tokens[order])
    available = int(cumulative[-1]) if len(cumulative) else 0
    if budget.value > available:
        raise BudgetError(
            f"budget of {budget.describe()} exceeds the {available:,} tokens of the {len(order):,} {what}"
        )
    n = int(np.searchsorted(cumulative, budget.value, side="right"))
    if n == 0:
        raise BudgetError(
            f"budget of {budget.describe()} is smaller than the first row ({int(tokens[order[0]]):,} tokens)"
        )
    return order[:n]
