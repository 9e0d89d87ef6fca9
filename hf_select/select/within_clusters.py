"""Score within clusters: a quota per cluster proportional to its size, the top rows by score inside each;
and its centroid preset (the rows nearest each centroid)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from ..errors import InputError
from .base import BudgetedSelector, Picked
from .budget import Budget, BudgetSpec, proportional_quotas
from .selection import TOKEN_COLUMN, Selection, column_values, ranked


def cluster_labels(pool: Dataset, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(cluster code per row, -1 where null; the distinct labels in sorted order)."""
    if column not in pool.column_names:
        raise InputError(f"cluster column {column!r} is not in the dataset; it has {pool.column_names}")
    array = pool.with_format("arrow")[column]
    if isinstance(array, pa.Table):
        array = array.column(0)
    encoded = pc.dictionary_encode(array).combine_chunks()
    labels = encoded.dictionary.to_pylist()
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    order = sorted(range(len(labels)), key=lambda i: labels[i])
    remap = np.full(len(labels) + 1, -1, dtype=np.int64)  # remap[-1] keeps null rows at -1
    remap[np.array(order, dtype=np.int64)] = np.arange(len(labels))
    return remap[codes], np.array([labels[i] for i in order], dtype=object)


@dataclass(kw_only=True)
class WithinClusters(BudgetedSelector):
    """The study's "score + k-means": each cluster gets a quota proportional to its number of selectable
    rows (largest-remainder rounding, quotas summing to the budget), filled with its top rows by score.

    With a token budget, the tokens are split the same way and each cluster takes its top rows until
    the next would exceed its share. Rows with a NaN score or a null cluster are never selected.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"cluster": [0, 0, 0, 1, 1], "n_tokens": [1.0, 3.0, 2.0, 5.0, 4.0]})
        >>> WithinClusters(score_column="n_tokens", budget=3).fit(ds).indices.tolist()
        [1, 2, 3]
    """

    method = "within-clusters"

    cluster_column: str = "cluster"
    """Cluster label column (e.g. from `hf-select cluster`); null labels are never selected."""
    score_column: str = field(metadata={"aliases": ("--column",)})
    """Score column that fills each cluster's quota."""
    largest: bool = True
    """Fill quotas with the largest scores (`--no-largest`: the smallest)."""

    def scored_column(self) -> str | None:
        return self.score_column

    def pick(self, pool: Dataset, budget: Budget, tokens: np.ndarray | None) -> Picked:
        codes, labels = cluster_labels(pool, self.cluster_column)
        values = column_values(pool, self.score_column)
        eligible = ~np.isnan(values) & (codes >= 0)
        if budget.kind == "tokens":
            eligible &= ~np.isnan(tokens)  # type: ignore[operator]
        shares = budget.quotas(
            np.bincount(codes[eligible], minlength=len(labels)), n_pool=len(pool),
            tokens=float(np.nansum(tokens[eligible])) if budget.kind == "tokens" else None,  # type: ignore[index]
            what=f"rows with a usable {self.score_column!r} and cluster",
        )  # fmt: skip
        order = ranked(values, eligible, largest=self.largest)
        by_cluster = codes[order]
        chosen: list[np.ndarray] = []
        for c, share in enumerate(shares):
            if share == 0:
                continue
            members = order[by_cluster == c]
            if budget.kind == "tokens":  # the cluster's top rows until the next would exceed its share
                n = int(np.searchsorted(np.cumsum(tokens[members]), share, side="right"))  # type: ignore[index]
            else:
                n = int(share)
            chosen.append(members[:n])
        details = {"n_clusters": len(labels), "quotas": {str(labels[c]): int(q) for c, q in enumerate(shares) if q}}
        return Picked(np.concatenate(chosen) if chosen else np.array([], dtype=np.int64), details)


@dataclass(kw_only=True)
class Centroid(WithinClusters):
    """Centroid mode: per cluster a quota proportional to its size (largest-remainder rounding), filled with
    its rows nearest the centroid (`cluster_distance` smallest first).

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"cluster": [0, 0, 0, 1, 1], "cluster_distance": [0.3, 0.1, 0.2, 0.5, 0.4]})
        >>> Centroid(budget=3).fit(ds).indices.tolist()
        [1, 2, 4]
    """

    method = "centroid"

    score_column: str = field(default="cluster_distance", init=False)
    largest: bool = field(default=False, init=False)
    distance_column: str = field(default="cluster_distance", metadata={"record": False, "aliases": ("--column",)})
    """Distance of each row to its cluster's centroid (from `hf-select cluster`)."""
    clustering: dict[str, Any] | None = field(default=None, metadata={"record": False, "cli": False})
    """The clustering's `describe()`, recorded when the clusters were made by the caller (k-means select)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.score_column = self.distance_column

    def scored_column(self) -> None:
        return None  # distances rank within clusters; controls draw from every row

    def pick(self, pool: Dataset, budget: Budget, tokens: np.ndarray | None) -> Picked:
        picked = super().pick(pool, budget, tokens)
        picked.details["mode"] = "centroid"
        if self.clustering is not None:
            picked.details["clustering"] = dict(self.clustering)
        return picked

    @classmethod
    def arguments_from_record(cls, record: Any) -> dict[str, Any]:
        arguments = super().arguments_from_record(record)
        arguments["distance_column"] = (record.parameters or {}).get("score_column", "cluster_distance")
        return arguments


def within_clusters(
    pool: Dataset,
    cluster_column: str,
    score_column: str,
    budget: BudgetSpec,
    *,
    largest: bool = True,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Any = None,
) -> Selection:
    """`WithinClusters(...).fit(pool)`: per cluster a proportional quota of its top rows by `score_column`.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"cluster": [0, 0, 0, 1, 1], "n_tokens": [1.0, 3.0, 2.0, 5.0, 4.0]})
        >>> within_clusters(ds, "cluster", "n_tokens", 3).indices.tolist()
        [1, 2, 3]
    """
    selector = WithinClusters(
        cluster_column=cluster_column, score_column=score_column, budget=budget, largest=largest,
        token_column=token_column,
    )  # fmt: skip
    return selector.fit(pool, source=source, scorers=scorers)


def centroids(
    pool: Dataset,
    budget: BudgetSpec,
    *,
    cluster_column: str = "cluster",
    distance_column: str = "cluster_distance",
    clustering: Any = None,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Any = None,
) -> Selection:
    """`Centroid(...).fit(pool)`: per cluster a proportional quota of its rows nearest the centroid.
    `clustering` (a `KMeans` or its `describe()`) is recorded when given.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"cluster": [0, 0, 0, 1, 1], "cluster_distance": [0.3, 0.1, 0.2, 0.5, 0.4]})
        >>> centroids(ds, 3).indices.tolist()
        [1, 2, 4]
    """
    described = clustering.describe() if hasattr(clustering, "describe") else clustering
    selector = Centroid(
        budget=budget, cluster_column=cluster_column, distance_column=distance_column, clustering=described,
        token_column=token_column,
    )  # fmt: skip
    return selector.fit(pool, source=source, scorers=scorers)


__all__ = ["Centroid", "WithinClusters", "centroids", "cluster_labels", "proportional_quotas", "within_clusters"]
