"""The `Selector` base class: a selector is a dataclass of configuration with a registry, the twin of `Scorer`.

A subclass declares its configuration as fields (documented by the string under each field: the CLI's
`--help`, `hf-select methods` and the card read it) and implements `pick`, which returns the chosen pool
indices. The base class owns everything else, once: the budget (`Budget.cut` / `Budget.quotas`), the token
column, the provenance (read from the scored pool's, see `hf_select.provenance`), the record (its
`parameters` are the selector's fields, plus what `pick` reports) and the `Selection`.

`SELECTORS[method](**params)` rebuilds any selector from its name and fields; `Selector.from_record`
rebuilds the one a `selection.json` describes.

Example:
    >>> from datasets import Dataset
    >>> from hf_select.select import SELECTORS, TopK
    >>> pool = Dataset.from_dict({"n_tokens": [120.0, 40.0, 300.0, 80.0]})
    >>> selection = TopK(column="n_tokens", budget=2).fit(pool)
    >>> selection.indices.tolist()
    [0, 2]
    >>> SELECTORS["top-k"] is TopK
    True
    >>> list(pool.filter(selection.keep, with_indices=True, batched=True)["n_tokens"])
    [120.0, 300.0]
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar

import numpy as np
from datasets import Dataset

from ..errors import InputError
from ..provenance import provenance_of
from ..record import SelectionRecord
from .budget import Budget, BudgetSpec
from .selection import TOKEN_COLUMN, Selection, finish, token_values

SELECTORS: dict[str, type[Selector]] = {}
"""Every selector class by its `method` name (`hf-select select --method NAME`)."""

_NOT_PARAMETERS = ("budget", "seed", "token_column")
FIELD_ORDER = {"budget": 0, "token_column": 2}
"""Where fields are listed (options, reproduce snippets): the budget first, the base's token column last."""
"""Fields the record keeps elsewhere: `budget.requested`, `seed`, and `token_column` (named only when not default)."""


def unrecorded(default: Any, **kwargs: Any) -> Any:
    """A field that does not change which rows are picked (workers, chunk sizes): not in the record."""
    return field(default=default, metadata={"record": False}, **kwargs)


@dataclass
class Picked:
    """What `Selector.pick` returns: the chosen pool indices (in pick order for greedy selectors), what the
    record should add to the selector's fields (quotas, resolved devices, ...), and extra attributes for
    the `Selection` (e.g. DiverseEvol's trained `model_state`)."""

    indices: np.ndarray | Sequence[int]
    details: dict[str, Any] = field(default_factory=dict)
    pool: Dataset | None = None
    """The pool the subset is cut from when `pick` added columns to it (k-means select's clusters)."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Selector(ABC):
    """Base class of every selector: configuration only; `fit(pool)` selects.

    Subclasses set `method` (their registry name) and implement `pick`. Class attributes: `ordered`
    (the pick order is kept as `Selection.order`), `cli` (offered by `hf-select select`).
    """

    method: ClassVar[str] = ""
    ordered: ClassVar[bool] = False
    cli: ClassVar[bool] = True

    token_column: str = TOKEN_COLUMN
    """Column of per-row token counts: a token budget is counted in it, and the record sums it."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("method"):
            SELECTORS[cls.method] = cls

    # ---- what a subclass provides

    @abstractmethod
    def pick(self, pool: Dataset, budget: Budget | None, tokens: np.ndarray | None) -> Picked:
        """The chosen pool indices for `pool` under `budget` (None for selectors without one); `tokens` is
        the token column as float64 (NaN where missing), or None when the pool has none."""

    def requested_budget(self) -> Budget | None:
        """The budget this selector works to (parsed `budget` field; None where the selector has none)."""
        return None

    def parameters(self, details: Mapping[str, Any]) -> dict[str, Any]:
        """The record's `parameters`: the recorded fields in declaration order, then `details` (a detail
        named like a field replaces its value in place)."""
        return {**self.recorded_fields(), **details}

    def record_seed(self) -> int | None:
        return getattr(self, "seed", None)

    def scored_column(self) -> str | None:
        """The score column whose NaN rows this selector never picks (random controls draw from the same
        rows), if it ranks by one."""
        return None

    # ---- the one entry point

    def fit(
        self, pool: Dataset, *, source: Mapping[str, Any] | None = None, scorers: Sequence[Any] | None = None
    ) -> Selection:
        """Select from `pool`. `source` and `scorers` default to the pool's provenance (recorded when it was
        loaded with `hf_select.pool.load_pool`, scored with `Scorer.map` or clustered with `KMeans.fit`)."""
        if not isinstance(pool, Dataset):
            hint = ""
            if isinstance(pool, Mapping):
                hint = f": pick a split first (it has {list(pool)}), e.g. pool[{next(iter(pool), 'train')!r}]"
            elif type(pool).__name__ == "IterableDataset":  # a selector needs every row's score at once
                hint = ": a streaming dataset must be scored and saved first (score it, then load the saved pool)"
            raise InputError(f"{self.method} selects from a datasets.Dataset, got {type(pool).__name__}{hint}")
        budget = self.requested_budget()
        tokens = token_values(pool, budget, self.token_column)
        return self.complete(pool, self.pick(pool, budget, tokens), budget, tokens, source=source, scorers=scorers)

    def fit_sharded(
        self,
        scores: Any,
        *,
        pool: Dataset | None = None,
        ray: bool = False,
        source: Mapping[str, Any] | None = None,
        scorers: Sequence[Any] | None = None,
    ) -> Selection:
        """Select from sharded scores: `scores` is a folder of score sidecars (or their paths, or a
        `hf_select.distributed.ShardedScores`), `pool` the whole pool's rows for the subset (without it
        the subset holds the columns read from the sidecars). The same indices and record as `fit` on
        the merged pool, plus a `shards` parameter (paths and fingerprints); `ray=True` runs the
        per-shard steps as Ray tasks. See `hf_select.distributed.sharded_select`."""
        from ..distributed.sharded_select import fit_sharded

        return fit_sharded(self, scores, pool=pool, ray=ray, source=source, scorers=scorers)

    def complete(
        self,
        pool: Dataset,
        picked: Picked,
        budget: Budget | None,
        tokens: np.ndarray | None,
        *,
        source: Mapping[str, Any] | None = None,
        scorers: Sequence[Any] | None = None,
    ) -> Selection:
        """The `Selection` of what `pick` chose from `pool` (its subset, record and provenance)."""
        known_source, known_scorers = provenance_of(pool)
        return finish(
            picked.pool if picked.pool is not None else pool,
            np.asarray(picked.indices, dtype=np.int64),
            method=self.method,
            parameters=self.parameters(picked.details),
            budget=budget,
            seed=self.record_seed(),
            tokens=tokens,
            source=dict(source) if source is not None else known_source,
            scorers=scorers if scorers is not None else known_scorers,
            ordered=self.ordered,
            token_column=self.token_column,
            extra=picked.extra,
        )

    # ---- configuration

    def config(self) -> dict[str, Any]:
        """The constructor's arguments: `type(self)(**self.config())` is the same selector."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def recorded_fields(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in _NOT_PARAMETERS and f.metadata.get("record", True)
        }

    @classmethod
    def from_record(cls, record: SelectionRecord) -> Selector:
        """The selector that made `record` (`SELECTORS[record.method]`), with the fields its record holds."""
        selector_cls = SELECTORS.get(record.method)
        if selector_cls is None:
            raise InputError(f"unknown selector {record.method!r}: expected one of {sorted(SELECTORS)}")
        return selector_cls(**selector_cls.arguments_from_record(record))

    @classmethod
    def arguments_from_record(cls, record: SelectionRecord) -> dict[str, Any]:
        """Constructor arguments from a record: its parameters named like init fields, its seed, its budget
        and token column. Selectors whose record names a field differently override this."""
        params = dict(record.parameters or {})
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        arguments = {name: params[name] for name in names if name in params and name not in _NOT_PARAMETERS}
        if "seed" in names and record.seed is not None:
            arguments["seed"] = record.seed
        if "budget" in names:
            arguments["budget"] = budget_argument((record.budget or {}).get("requested"))
        if "token_column" in params:
            arguments["token_column"] = params["token_column"]
        ordered = sorted((name for name in names if name in arguments), key=lambda n: FIELD_ORDER.get(n, 1))
        return {name: arguments[name] for name in ordered}


@dataclass(kw_only=True)
class BudgetedSelector(Selector):
    """A selector that cuts to a budget."""

    budget: BudgetSpec
    """How much to select: a row count (`1000`), a fraction of the pool (`0.01`, `"1%"`) or tokens (`"5M tokens"`)."""

    def __post_init__(self) -> None:
        Budget.parse(self.budget)  # a bad budget fails when the selector is made, not after the scoring

    def requested_budget(self) -> Budget:
        return Budget.parse(self.budget)


def budget_argument(requested: Mapping[str, Any] | None) -> BudgetSpec | None:
    """The `budget=` argument that parses to a recorded `budget.requested` (`"5000 tokens"` for tokens)."""
    if not requested:
        return None
    return f"{requested['value']} tokens" if requested["kind"] == "tokens" else requested["value"]


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The string written under each field of `cls` and its bases (attribute docstrings), by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (e.g. a class made at run time)
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


__all__ = ["SELECTORS", "BudgetedSelector", "Picked", "Selector", "budget_argument", "field_docs", "unrecorded"]
