"""The result of a selector: the subset, the pool indices it keeps, and the record of what was done."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from ..errors import InputError
from ..record import SelectionRecord
from .budget import Budget

TOKEN_COLUMN = "n_tokens"
FILE_BUILDERS = ("json", "csv", "parquet")
"""`datasets` builders that read local data files: their name is not a dataset's."""


@dataclass
class Selection:
    """A selected subset. `dataset` keeps the pool's row order; `indices` are pool positions, ascending."""

    dataset: Dataset
    indices: np.ndarray
    record: SelectionRecord
    order: np.ndarray | None = None
    """Pool indices in the order a greedy selector picked them (ZIP, k-center); None for the others."""

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def keep(self) -> KeepRows:
        """A `Dataset.filter` callable that keeps exactly these rows of the pool:
        `pool.filter(selection.keep, with_indices=True, batched=True)` equals `selection.dataset`."""
        return KeepRows(self.indices)


class KeepRows:
    """`keep(batch, indices) -> [bool]`: whether each pool index is selected, for `Dataset.filter(...,
    with_indices=True, batched=True)` (or unbatched: `keep(row, index) -> bool`). Pickles as its indices,
    so `datasets` fingerprints and caches the filter by the selection.

    Example:
        >>> keep = KeepRows(np.array([1, 3]))
        >>> keep({"x": [0, 0, 0]}, [1, 2, 3])
        [True, False, True]
    """

    def __init__(self, indices: np.ndarray) -> None:
        self.indices = np.unique(np.asarray(indices, dtype=np.int64))

    def __call__(self, batch: Any, indices: int | Sequence[int], *_: Any) -> bool | list[bool]:
        if isinstance(indices, int | np.integer):
            return bool(self._member(np.array([indices]))[0])
        return self._member(np.asarray(indices, dtype=np.int64)).tolist()

    def _member(self, idx: np.ndarray) -> np.ndarray:
        if len(self.indices) == 0:
            return np.zeros(len(idx), dtype=bool)
        pos = np.searchsorted(self.indices, idx)
        return (pos < len(self.indices)) & (self.indices[np.minimum(pos, len(self.indices) - 1)] == idx)


def column_values(ds: Dataset, column: str, *, what: str = "score") -> np.ndarray:
    """A numeric column as float64, nulls as NaN; a clear error if it is missing or not numeric."""
    if column not in ds.column_names:
        raise InputError(f"{what} column {column!r} is not in the dataset; it has {ds.column_names}")
    array = ds.with_format("arrow")[column]
    if isinstance(array, pa.Table):
        array = array.column(0)
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_boolean(array.type)):
        raise InputError(f"{what} column {column!r} is {array.type}, not numeric")
    return pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def token_values(ds: Dataset, budget: Budget | None, token_column: str) -> np.ndarray | None:
    """The token column when it exists (needed by a token budget, recorded otherwise)."""
    if token_column in ds.column_names:
        return column_values(ds, token_column, what="token")
    if budget is not None and budget.kind == "tokens":
        raise InputError(
            f"a token budget needs the {token_column!r} column (run `hf-select score --method token-length` first); "
            f"the dataset has {ds.column_names}"
        )
    return None


def ranked(values: np.ndarray, eligible: np.ndarray, *, largest: bool) -> np.ndarray:
    """Eligible pool indices by value (largest or smallest first), ties in pool order."""
    idx = np.flatnonzero(eligible)
    keys = -values[idx] if largest else values[idx]
    return idx[np.argsort(keys, kind="stable")]


def shortfall(budget: Budget | None, tokens: np.ndarray | None, indices: np.ndarray) -> dict[str, str]:
    """`{"note": why}` when a token budget is underfilled by more than a row's worth (the mean tokens of a
    row), with a `UserWarning`; else `{}`. A token budget stops before the row that would exceed it, so a
    shortfall below a row's worth is expected; a larger one means long rows came next (or per-cluster
    shares each stopped short), which the user should know before comparing against a full budget."""
    if budget is None or budget.kind != "tokens" or tokens is None:
        return {}
    known = tokens[~np.isnan(tokens)]
    missing = float(budget.value) - float(np.nansum(tokens[indices]))
    row_worth = float(known.mean()) if len(known) else 0.0
    if missing <= row_worth:
        return {}
    note = (
        f"{missing:,.0f} tokens short of the budget, more than a row's worth ({row_worth:,.0f} tokens on "
        "average): the next rows in the selector's order were too long to fit"
    )
    warnings.warn(f"budget of {budget.describe()} underfilled: {note}", UserWarning, stacklevel=3)
    return {"note": note}


def indices_digest(indices: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(indices, dtype="<i8").tobytes()).hexdigest()


def source_info(
    ds: Dataset, name: str | None = None, revision: str | None = None, split: str | None = None
) -> dict[str, Any]:
    """Provenance of a pool: name (Hub id or path), revision, split, config, fingerprint, rows.

    A pool from `load_dataset("json" | "csv" | "parquet", data_files=...)` is recorded as `load_pool` records
    a file (its path, sha256 and the builder), so that `load_pool(record.source["dataset"])` reloads it; if
    its files cannot be identified, `dataset` is None (never the builder's name, which names no data)."""
    info: dict[str, Any] = {
        "dataset": name or ds.info.dataset_name,
        "revision": revision,
        "split": split or (str(ds.split) if ds.split is not None else None),
        "config": ds.info.config_name,
        "fingerprint": ds._fingerprint,
        "num_rows": len(ds),
    }
    if name is None and ds.info.builder_name in FILE_BUILDERS:
        from ..pool import data_files_source

        info.update(config=None, **(data_files_source(ds) or {"dataset": None, "builder": ds.info.builder_name}))
    return info


def scorer_entries(scorers: Sequence[Any]) -> list[dict[str, Any]]:
    """Record entries for scorer objects (or ready-made dicts)."""
    entries = []
    for scorer in scorers:
        if isinstance(scorer, dict):
            entries.append(scorer)
        else:
            entries.append({"method": scorer.method, "fingerprint": scorer.fingerprint(), "config": scorer.config()})
    return entries


def finish(
    pool: Dataset,
    chosen: np.ndarray,
    *,
    method: str,
    parameters: dict[str, Any],
    budget: Budget | None,
    seed: int | None,
    tokens: np.ndarray | None,
    source: dict[str, Any] | None,
    scorers: Sequence[Any],
    ordered: bool = False,
    token_column: str = TOKEN_COLUMN,
    extra: dict[str, Any] | None = None,
) -> Selection:
    """Build the `Selection` (subset in pool order) and its record from the chosen pool indices; with
    `ordered`, `chosen` is in pick order and is kept as `Selection.order` (greedy selectors).

    `token_column` is the column `tokens` came from: a token budget was counted in it, so the record's
    parameters name it when it is not the default `n_tokens` (records of the default case are unchanged)."""
    if token_column != TOKEN_COLUMN:
        parameters = {**parameters, "token_column": token_column}
    order = np.asarray(chosen, dtype=np.int64)
    indices = np.sort(order)
    kept_tokens = int(np.nansum(tokens[indices])) if tokens is not None else None
    pool_tokens = int(np.nansum(tokens)) if tokens is not None else None
    record = SelectionRecord(
        method=method,
        parameters=parameters,
        budget={
            "requested": budget.to_dict() if budget is not None else None,
            "achieved": {"rows": len(indices), "tokens": kept_tokens, **shortfall(budget, tokens, indices)},
        },
        seed=seed,
        pool={"rows": len(pool), "tokens": pool_tokens},
        kept={"rows": len(indices), "tokens": kept_tokens},
        indices_sha256=indices_digest(indices),
        source=source if source is not None else source_info(pool),
        scorers=scorer_entries(scorers),
    )
    selection = Selection(
        dataset=pool.select(indices), indices=indices, record=record, order=order if ordered else None
    )
    for name, value in (extra or {}).items():  # e.g. DiverseEvol's trained model_state
        setattr(selection, name, value)
    return selection
