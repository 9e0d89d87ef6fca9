"""k-means select: cluster an embedding column, then fill proportional quotas by a score or by centroid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from datasets import Dataset

from .base import BudgetedSelector, Picked
from .budget import Budget, BudgetSpec
from .selection import TOKEN_COLUMN, Selection
from .within_clusters import Centroid, WithinClusters

if TYPE_CHECKING:
    from ..cluster import KMeans


@dataclass(kw_only=True)
class KMeansSelect(BudgetedSelector):
    """Cluster `column` (embeddings) with k-means, then give each cluster a quota proportional to its size,
    filled by `score_column` (the study's "token length + k-means" with `n_tokens`, "quality + k-means"
    with CE/IFD/SelectIT) or, without one, by the rows nearest the centroid. The subset keeps the
    `cluster` and `cluster_distance` columns. To cluster once and select many times, use `hf-select
    cluster` (or `hf_select.cluster.KMeans`) and then `within-clusters` or `centroid`.

    Example:
        >>> selector = KMeansSelect(column="embedding", budget=1000, n_clusters=100, score_column="n_tokens")
        >>> sel = selector.fit(scored)  # doctest: +SKIP
    """

    method = "kmeans"

    column: str
    """Embedding column (a list of numbers per row) to cluster."""
    n_clusters: int
    """Number of k-means clusters (K)."""
    score_column: str | None = None
    """Score that fills each cluster's quota; none: the rows nearest the centroid."""
    largest: bool = True
    """Fill quotas with the largest scores (`--no-largest`: the smallest)."""
    seed: int = 0
    """k-means seed."""
    niter: int = 20
    """k-means iterations."""
    spherical: bool = False
    """Cosine clusters (for normalised embeddings)."""

    def pick(self, pool: Dataset, budget: Budget, tokens: np.ndarray | None) -> Picked:
        km = self.kmeans()
        return self.pick_clustered(km.fit(pool), km, budget, tokens)

    def kmeans(self) -> KMeans:
        """The clustering this selector runs (`hf_select.cluster.KMeans`)."""
        from ..cluster import KMeans

        return KMeans(
            n_clusters=self.n_clusters, column=self.column, seed=self.seed, niter=self.niter, spherical=self.spherical
        )

    def pick_clustered(self, clustered: Dataset, km: KMeans, budget: Budget, tokens: np.ndarray | None) -> Picked:
        """The quotas filled from `clustered`, the pool with `km`'s cluster columns (sharded selection
        clusters shard by shard, then picks here)."""
        inner: WithinClusters
        if self.score_column is None:
            inner = Centroid(budget=self.budget, clustering=km.describe(), token_column=self.token_column)
        else:
            inner = WithinClusters(
                cluster_column=km.output_column, score_column=self.score_column, budget=self.budget,
                largest=self.largest, token_column=self.token_column,
            )  # fmt: skip
        picked = inner.pick(clustered, budget, tokens)
        parameters = inner.parameters(picked.details)
        if self.score_column is not None:
            parameters.update(mode="score", clustering=km.describe())
        parameters.update(embedding_column=self.column, n_clusters=self.n_clusters, seed=self.seed)
        return Picked(picked.indices, parameters, pool=clustered)

    def parameters(self, details: dict[str, Any]) -> dict[str, Any]:
        return dict(details)  # `pick` records the clustering and the quotas it filled, in the inner selector's shape

    def record_seed(self) -> None:
        return None  # the seed is the clustering's, recorded in the parameters

    @classmethod
    def arguments_from_record(cls, record: Any) -> dict[str, Any]:
        params = record.parameters or {}
        config = (params.get("clustering") or {}).get("config") or {}
        by_score = params.get("mode") == "score"
        arguments = {
            "column": params.get("embedding_column"),
            "n_clusters": params.get("n_clusters"),
            "score_column": params.get("score_column") if by_score else None,
            "largest": params.get("largest", True),
            "seed": params.get("seed", 0),
            "niter": config.get("niter", 20),
            "spherical": config.get("spherical", False),
        }
        base = super().arguments_from_record(record)
        return {
            "budget": base["budget"],
            **arguments,
            **({"token_column": base["token_column"]} if "token_column" in base else {}),
        }


def kmeans_select(
    pool: Dataset,
    column: str,
    budget: BudgetSpec,
    *,
    n_clusters: int,
    score_column: str | None = None,
    largest: bool = True,
    seed: int = 0,
    niter: int = 20,
    spherical: bool = False,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Any = None,
) -> Selection:
    """`KMeansSelect(...).fit(pool)`: k-means of `column`, then proportional quotas by score or by centroid.

    Example:
        >>> sel = kmeans_select(scored, "embedding", 1000, n_clusters=100, score_column="n_tokens")  # doctest: +SKIP
    """
    selector = KMeansSelect(
        column=column, budget=budget, n_clusters=n_clusters, score_column=score_column, largest=largest, seed=seed,
        niter=niter, spherical=spherical, token_column=token_column,
    )  # fmt: skip
    return selector.fit(pool, source=source, scorers=scorers)
