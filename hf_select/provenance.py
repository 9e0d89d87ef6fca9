"""What a pool in memory came from: its source and the scorers (and clustering) that made its columns.

`hf_select.pool.load_pool`, `Scorer.map` and `KMeans.fit` remember the provenance of the datasets they
return, keyed by the dataset's fingerprint, so that a selector reads it from the pool it is given
(`Selector.fit(pool)`) instead of having it passed by hand. A dataset made any other way has no remembered
provenance: its source is described from the dataset itself and no scorers are recorded.

Example:
    >>> from datasets import Dataset
    >>> from hf_select.provenance import provenance_of, remember
    >>> ds = Dataset.from_dict({"n_tokens": [1.0, 2.0]})
    >>> _ = remember(ds, {"dataset": "pool.jsonl"}, [{"method": "token-length"}])
    >>> provenance_of(ds)[0]["dataset"], provenance_of(ds)[1]
    ('pool.jsonl', [{'method': 'token-length'}])
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from datasets import Dataset

_KNOWN: dict[str, tuple[dict[str, Any], list[Any]]] = {}


def remember(ds: Dataset, source: Mapping[str, Any] | None, scorers: Sequence[Any] = ()) -> Dataset:
    """Remember `ds`'s provenance (a copy: later edits of the arguments do not change it); returns `ds`."""
    if source is not None:
        _KNOWN[ds._fingerprint] = (copy.deepcopy(dict(source)), copy.deepcopy(list(scorers)))
    return ds


def provenance_of(ds: Dataset) -> tuple[dict[str, Any], list[Any]]:
    """(source, scorers) remembered for `ds`, else (`source_info(ds)`, [])."""
    known = _KNOWN.get(ds._fingerprint)
    if known is not None:
        return copy.deepcopy(known[0]), copy.deepcopy(known[1])
    from .select.selection import source_info

    return source_info(ds), []


def derived(ds: Dataset, parent: Dataset, *scorers: Any) -> Dataset:
    """Remember for `ds` the provenance of `parent` (when known) with `scorers` appended: a pool made from
    `parent` by adding columns (scoring, clustering)."""
    known = _KNOWN.get(parent._fingerprint)
    if known is not None:
        remember(ds, known[0], [*known[1], *scorers])  # the source stays where the rows came from
    return ds


__all__ = ["derived", "provenance_of", "remember"]
