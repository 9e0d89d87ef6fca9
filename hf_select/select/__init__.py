"""Selectors: cut a subset of a scored pool by a budget (a count, a fraction of the pool, or tokens).

Each selector is a function `Dataset -> Selection` (the subset in pool order, its pool indices, and a
`SelectionRecord`), deterministic given its arguments and seed, ties broken by pool order, never
selecting a row whose score is NaN.

Example:
    >>> from datasets import Dataset
    >>> from hf_select import select
    >>> ds = Dataset.from_dict({"n_tokens": [120.0, 40.0, 300.0, 80.0]})
    >>> select.top_k(ds, "n_tokens", 2).indices.tolist()
    [0, 2]
"""

from ..cluster import centroids, kmeans_select
from .budget import Budget
from .diverse_evol import diverse_evol
from .kcenter import kcenter_greedy, kcenter_indices
from .pre_experience import pre_experience_subset
from .random import random, random_controls
from .selection import Selection, source_info
from .threshold import threshold
from .top_k import ifd_top_k, top_k
from .within_clusters import proportional_quotas, within_clusters
from .zip import zip_indices, zip_select

SELECTORS = {
    "top-k": top_k,
    "ifd": ifd_top_k,
    "threshold": threshold,
    "random": random,
    "within-clusters": within_clusters,
    "zip": zip_select,
    "kcenter": kcenter_greedy,
    "centroid": centroids,
    "kmeans": kmeans_select,
}

__all__ = [
    "SELECTORS",
    "Budget",
    "Selection",
    "centroids",
    "diverse_evol",
    "ifd_top_k",
    "kmeans_select",
    "kcenter_greedy",
    "kcenter_indices",
    "pre_experience_subset",
    "proportional_quotas",
    "random",
    "random_controls",
    "source_info",
    "threshold",
    "top_k",
    "within_clusters",
    "zip_indices",
    "zip_select",
]
