"""The IFD pre-experience subset (Cherry LLM, as run by Xia et al. 2024): a small, diverse, typical set
to fine-tune the base model on briefly before computing IFD with it.

Per METHODS.md: cluster the instruction embeddings with k-means (1,000 clusters), then in each cluster
keep the rows whose instruction perplexity lies between the cluster's `low`-th and `high`-th percentiles
(25 and 75), and take `per_cluster` (10) evenly spaced ones among them: about 10,000 rows.

Exactly:
- the percentiles are numpy's default (`method="linear"`) over the perplexities of the cluster's rows
  that have a finite perplexity; the band is every such row with `p_low <= ppl <= p_high`;
- the band is sorted by perplexity (ties by pool index); with `m` rows in it, the picks are the rows at
  positions `unique(rint(linspace(0, m - 1, per_cluster)))` (round half to even): the band's lowest and
  highest perplexity rows and evenly spaced ones between them (with `per_cluster=1`, the lowest). When
  `m <= per_cluster`, the whole band is taken;
- rows without a usable embedding (a NaN vector or null) or without a finite perplexity are never picked
  (nor do they count towards the percentiles).

The inputs come from two scorers on the same rendered prompt: `EmbeddingScorer(text="instruction")` and
`PromptPerplexityScorer` (renamed to `instruction_embedding` / `instruction_ppl`, or pass the column
names); `examples/ifd_pre_experience.py` runs the whole step, fine-tune and IFD included. `PreExperience`'s
docstring shows a runnable example.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset

from ..errors import InputError
from .base import Picked, Selector
from .budget import Budget
from .selection import TOKEN_COLUMN, Selection, column_values
from .within_clusters import cluster_labels


def band_picks(ppl: np.ndarray, per_cluster: int, low: float = 25.0, high: float = 75.0) -> np.ndarray:
    """Positions (into `ppl`) of one cluster's picks: the rows between the `low` and `high` percentiles,
    sorted by perplexity (ties by position), `per_cluster` evenly spaced among them (see the module doc).

    Example:
        >>> ppl = np.arange(1.0, 21.0)  # percentiles 5.75 and 15.25: the band is 6..15 (positions 5..14)
        >>> band_picks(ppl, 3).tolist()  # band positions rint([0, 4.5, 9]) = [0, 4, 9]
        [5, 9, 14]
    """
    ppl = np.asarray(ppl, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(ppl))
    if len(finite) == 0:
        return np.empty(0, dtype=np.int64)
    values = ppl[finite]
    p_low, p_high = np.percentile(values, [low, high])
    order = finite[np.lexsort((finite, values))]  # by perplexity, then position
    sorted_values = ppl[order]
    band = order[(sorted_values >= p_low) & (sorted_values <= p_high)]
    if len(band) <= per_cluster:
        return band.astype(np.int64)
    positions = np.unique(np.rint(np.linspace(0, len(band) - 1, per_cluster)).astype(np.int64))
    return band[positions].astype(np.int64)


@dataclass(kw_only=True)
class PreExperience(Selector):
    """The pre-experience subset (see the module doc). k-means runs on `embedding_column` with
    `hf_select.cluster.KMeans(n_clusters, seed=seed, niter=niter)` unless `cluster_column` names an
    existing cluster column (then `n_clusters`, `seed` and `niter` are unused). The record holds the
    clustering's description and the band and pick counts.

    Example:
        >>> import numpy as np
        >>> from datasets import Dataset
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(0, 1, (40, 4)), rng.normal(9, 1, (40, 4))]).astype(np.float32)
        >>> ds = Dataset.from_dict({"instruction_embedding": X.tolist(), "instruction_ppl": rng.uniform(2, 50, 80)})
        >>> len(PreExperience(n_clusters=2, per_cluster=5).fit(ds))
        10
    """

    method = "ifd-pre-experience"

    embedding_column: str = "instruction_embedding"
    """Instruction embeddings to cluster (e.g. `embed --text instruction`)."""
    ppl_column: str = "instruction_ppl"
    """Instruction perplexity (e.g. `prompt-ppl`'s `prompt_ppl`)."""
    n_clusters: int = 1000
    """k-means clusters."""
    per_cluster: int = 10
    """Evenly spaced rows taken from each cluster's band."""
    low: float = 25.0
    """Lower percentile of the band."""
    high: float = 75.0
    """Upper percentile of the band."""
    seed: int = 0
    """k-means seed."""
    niter: int = 20
    """k-means iterations."""
    cluster_column: str | None = None
    """An existing cluster column to use instead of k-means."""

    def __post_init__(self) -> None:
        if self.per_cluster < 1:
            raise InputError(f"per_cluster must be at least 1, got {self.per_cluster}")
        if not 0 <= self.low <= self.high <= 100:
            raise InputError(f"percentiles must satisfy 0 <= low <= high <= 100, got low={self.low}, high={self.high}")

    def pick(self, pool: Dataset, budget: Budget | None, tokens: np.ndarray | None) -> Picked:
        ppl = column_values(pool, self.ppl_column, what="perplexity")
        details: dict[str, Any] = {}
        if self.cluster_column is None:
            from ..cluster import KMeans, embedding_array

            km = KMeans(n_clusters=self.n_clusters, column=self.embedding_column, seed=self.seed, niter=self.niter)
            X, rows = embedding_array(pool, self.embedding_column)
            _, labels, _ = km.cluster_matrix(X)
            codes = np.full(len(pool), -1, dtype=np.int64)
            codes[rows] = labels
            km.stats["rows_clustered"] = int(len(rows))
            km.stats["rows_unclustered"] = int(len(pool) - len(rows))
            details["clustering"] = km.describe()
            n_groups = self.n_clusters
        else:
            codes, names = cluster_labels(pool, self.cluster_column)
            details["cluster_column"] = self.cluster_column
            n_groups = len(names)
        usable = (codes >= 0) & np.isfinite(ppl)
        idx = np.flatnonzero(usable)
        idx = idx[np.argsort(codes[idx], kind="stable")]
        bounds = np.searchsorted(codes[idx], np.arange(n_groups + 1))
        chosen, taken, band_sizes = [], np.zeros(n_groups, dtype=np.int64), np.zeros(n_groups, dtype=np.int64)
        for c in range(n_groups):
            members = idx[bounds[c] : bounds[c + 1]]
            if len(members) == 0:
                continue
            values = ppl[members]
            p_low, p_high = np.percentile(values, [self.low, self.high])
            band_sizes[c] = int(((values >= p_low) & (values <= p_high)).sum())
            picks = members[band_picks(values, self.per_cluster, self.low, self.high)]
            taken[c] = len(picks)
            chosen.append(picks)
        details.update(
            n_clusters=int(n_groups),
            rows_usable=int(usable.sum()),
            clusters_with_rows=int((np.bincount(codes[usable], minlength=n_groups) > 0).sum()),
            clusters_short=int(((taken < self.per_cluster) & (band_sizes > 0)).sum()),
            band_rows={
                "min": int(band_sizes.min()), "median": float(np.median(band_sizes)), "max": int(band_sizes.max())
            } if n_groups else None,
        )  # fmt: skip
        return Picked(np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64), details)

    def parameters(self, details: dict[str, Any]) -> dict[str, Any]:
        return {
            "embedding_column": self.embedding_column if self.cluster_column is None else None,
            "ppl_column": self.ppl_column, "per_cluster": self.per_cluster, "low": self.low, "high": self.high,
            "percentile_method": "linear",
            "spacing": "unique(rint(linspace(0, band - 1, per_cluster))) over the band sorted by perplexity",
            **details,
        }  # fmt: skip

    @classmethod
    def arguments_from_record(cls, record: Any) -> dict[str, Any]:
        arguments = super().arguments_from_record(record)
        params = record.parameters or {}
        if params.get("cluster_column") is not None:  # an existing cluster column: no k-means
            for name in ("embedding_column", "n_clusters", "seed", "niter"):
                arguments.pop(name, None)
        else:
            config = (params.get("clustering") or {}).get("config") or {}
            arguments.update(n_clusters=config.get("n_clusters"), niter=config.get("niter", 20))
        return arguments


def pre_experience_subset(
    pool: Dataset,
    *,
    embedding_column: str = "instruction_embedding",
    ppl_column: str = "instruction_ppl",
    n_clusters: int = 1000,
    per_cluster: int = 10,
    low: float = 25.0,
    high: float = 75.0,
    seed: int = 0,
    niter: int = 20,
    cluster_column: str | None = None,
    token_column: str = TOKEN_COLUMN,
    source: dict[str, Any] | None = None,
    scorers: Any = None,
) -> Selection:
    """`PreExperience(...).fit(pool)`: the pre-experience subset for IFD (see the module doc)."""
    selector = PreExperience(
        embedding_column=embedding_column, ppl_column=ppl_column, n_clusters=n_clusters, per_cluster=per_cluster,
        low=low, high=high, seed=seed, niter=niter, cluster_column=cluster_column, token_column=token_column,
    )  # fmt: skip
    return selector.fit(pool, source=source, scorers=scorers)
