"""Selectors: cut a subset of a scored pool by a budget (a count, a fraction of the pool, or tokens).

Each selector is a dataclass of configuration (`Selector`, in `base.py`) registered in `SELECTORS` by its
method name; `selector.fit(pool)` returns a `Selection` (the subset in pool order, its pool indices, and a
`SelectionRecord`), deterministic given its fields, ties broken by pool order, never selecting a row whose
score is NaN. `selection.keep` is the same cut as a `Dataset.filter` callable. The functions (`top_k`,
`random`, ...) are thin wrappers that build the selector and fit it.

Example:
    >>> from datasets import Dataset
    >>> from hf_select import select
    >>> ds = Dataset.from_dict({"n_tokens": [120.0, 40.0, 300.0, 80.0]})
    >>> select.top_k(ds, "n_tokens", 2).indices.tolist()
    [0, 2]
    >>> select.SELECTORS["top-k"](column="n_tokens", budget=2).fit(ds).indices.tolist()
    [0, 2]
"""

import importlib
import pkgutil

from .base import SELECTORS, BudgetedSelector, Picked, Selector
from .budget import Budget, proportional_quotas
from .diverse_evol import DiverseEvol, diverse_evol
from .kcenter import KCenter, kcenter_greedy, kcenter_indices
from .kmeans import KMeansSelect, kmeans_select
from .pre_experience import PreExperience, pre_experience_subset
from .random import Random, random, random_controls
from .selection import KeepRows, Selection, source_info
from .threshold import Threshold, threshold
from .top_k import IFDTopK, LESSTopK, TopK, ifd_top_k, less_top_k, top_k
from .within_clusters import Centroid, WithinClusters, centroids, within_clusters
from .zip import ZIP, zip_indices, zip_select

for _module in pkgutil.iter_modules(__path__):  # a selector module added here registers with no other change
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "SELECTORS",
    "ZIP",
    "Budget",
    "BudgetedSelector",
    "Centroid",
    "DiverseEvol",
    "IFDTopK",
    "KCenter",
    "KMeansSelect",
    "KeepRows",
    "LESSTopK",
    "Picked",
    "PreExperience",
    "Random",
    "Selection",
    "Selector",
    "Threshold",
    "TopK",
    "WithinClusters",
    "centroids",
    "diverse_evol",
    "ifd_top_k",
    "kcenter_greedy",
    "kcenter_indices",
    "kmeans_select",
    "less_top_k",
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
