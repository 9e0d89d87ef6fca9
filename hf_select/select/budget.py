"""Budgets: how much to select. A count (`1000`), a fraction of the pool (`0.01`, `"1%"`), or tokens (`"5M tokens"`)."""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal, Union

import numpy as np

from ..errors import BudgetError

BudgetKind = Literal["count", "fraction", "tokens"]
BudgetSpec = Union["Budget", int, float, str]
"""What a budget can be given as: a `Budget`, a row count, a fraction of the pool, or a string (`"5M tokens"`)."""
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

    def check(self, n_rows: int, *, n_pool: int, tokens: float | None = None, what: str = "selectable rows") -> int:
        """Raise `BudgetError` when the budget asks for more than `n_rows` selectable rows (for a token
        budget: more than their `tokens`); else return the rows asked for (a token budget: the tokens).
        Every selector words these errors through here."""
        if self.kind != "tokens":
            n = self.rows(n_pool)
            if n > n_rows:
                raise BudgetError(f"budget of {self.describe(n)} exceeds the {n_rows:,} {what}")
            return n
        if tokens is None:
            raise BudgetError("a token budget needs a token count column (run the token-length scorer first)")
        if self.value > tokens:
            raise BudgetError(f"budget of {self.describe()} exceeds the {tokens:,.0f} tokens of the {n_rows:,} {what}")
        return int(self.value)

    def cut(
        self, order: np.ndarray, *, n_pool: int, tokens: np.ndarray | None, what: str = "selectable rows"
    ) -> np.ndarray:
        """The prefix of `order` (pool indices in priority order) that the budget allows.

        A token budget keeps the longest prefix whose `tokens` sum does not exceed it. Raises `BudgetError`
        when the budget asks for more than `order` holds.

        Example:
            >>> Budget.parse("6 tokens").cut(np.array([2, 0, 1]), n_pool=3, tokens=np.array([1.0, 2.0, 4.0])).tolist()
            [2, 0]
        """
        if self.kind != "tokens":
            return order[: self.check(len(order), n_pool=n_pool, what=what)]
        if tokens is None:
            self.check(len(order), n_pool=n_pool, what=what)  # raises: no token column
        cumulative = np.cumsum(tokens[order])  # type: ignore[index]
        self.check(len(order), n_pool=n_pool, tokens=float(cumulative[-1]) if len(cumulative) else 0.0, what=what)
        n = int(np.searchsorted(cumulative, self.value, side="right"))
        if n == 0:
            raise BudgetError(
                f"budget of {self.describe()} is smaller than the first row ({int(tokens[order[0]]):,} tokens)"  # type: ignore[index]
            )
        return order[:n]

    def quotas(
        self, sizes: np.ndarray, *, n_pool: int, tokens: float | None = None, what: str = "selectable rows"
    ) -> np.ndarray:
        """The budget split across groups of `sizes` selectable rows in proportion to their sizes
        (largest-remainder rounding): rows per group, or tokens per group for a token budget (`tokens`: the
        selectable rows' total)."""
        total = self.check(int(np.sum(sizes)), n_pool=n_pool, tokens=tokens, what=what)
        return proportional_quotas(sizes, total)


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
