"""Figures for dataset cards: the distribution of a score in a subset against its pool.

Rendered with matplotlib's Agg canvas directly (no pyplot, no global backend switch) and saved as
PNG without the "Software" metadata, so the same values always give the same bytes.

Example:
    >>> from hf_select.plots import score_histogram
    >>> path = score_histogram([3.0, 4.0], [1.0, 2.0, 3.0, 4.0], "assets/hist.png", column="n_tokens")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FIGSIZE = (6.0, 3.5)
DPI = 100
BINS = 40
POOL_COLOR = "#8c8c8c"
SUBSET_COLOR = "#e8710a"


def _finite(values: Sequence[float] | np.ndarray | None) -> np.ndarray:
    if values is None:
        return np.empty(0)
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def _edges(values: np.ndarray, bins: int) -> tuple[np.ndarray, bool]:
    """Common bin edges; logarithmic when the values are positive and span more than two decades."""
    lo, hi = float(values.min()), float(values.max())
    if lo > 0:
        q_lo, q_hi = np.quantile(values, [0.005, 0.995])
        if q_hi / q_lo > 100:
            return np.geomspace(lo, hi, bins + 1), True
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1), False


def score_histogram(
    subset_values: Sequence[float] | np.ndarray,
    pool_values: Sequence[float] | np.ndarray | None,
    path: str | os.PathLike[str],
    *,
    column: str,
    bins: int = BINS,
) -> Path:
    """Overlaid histograms of `column` in the subset and in the pool (when given), on common bins.

    Each histogram is normalised to the share of its own rows per bin, so subsets and pools of any
    size compare directly. NaN and infinite values are ignored; the legend gives the rows plotted. The
    x-axis is logarithmic when the values are positive and span more than two decades (token counts).
    Raises `ValueError` when there is no finite value to plot.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    subset = _finite(subset_values)
    pool = _finite(pool_values)
    if not len(subset) and not len(pool):
        raise ValueError(f"no finite value of {column!r} to plot")
    edges, log_x = _edges(np.concatenate([subset, pool]), bins)

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if len(pool):
        ax.hist(
            pool, bins=edges, weights=np.full(len(pool), 1 / len(pool)), color=POOL_COLOR, alpha=0.55,
            label=f"pool ({len(pool):,} rows)",
        )  # fmt: skip
    if len(subset):
        ax.hist(
            subset, bins=edges, weights=np.full(len(subset), 1 / len(subset)), color=SUBSET_COLOR, alpha=0.6,
            label=f"subset ({len(subset):,} rows)",
        )  # fmt: skip
    if log_x:
        ax.set_xscale("log")
    label = column if len(column) <= 60 else column[:57] + "..."
    ax.set_xlabel(label + (" (log scale)" if log_x else ""), parse_math=False)
    ax.set_ylabel("share of rows")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path
