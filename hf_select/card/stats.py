"""The numbers of a card: score statistics, histograms, the subset against a random subset, the source mix.

Each function returns plain numbers and names (JSON-able: they are kept in the card's context); the
template formats them.

Example:
    >>> import numpy as np
    >>> from hf_select.card.stats import score_stats
    >>> score_stats(np.array([1.0, 2.0, np.nan, 3.0]))[:3]
    [3, 1, 2.0]
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from ..errors import HFSelectError, InputError
from ..select.selection import column_values
from ..summary import describe

MIX_MAX_VALUES = 10

ColumnValues = dict[str, tuple[np.ndarray, np.ndarray | None]]
"""Per score column: its values in the subset and in the pool (None without a pool), read once."""


def values(ds: Dataset | None, column: str | None) -> np.ndarray | None:
    """A numeric column as float64 (None when absent or not numeric)."""
    if ds is None or column is None or column not in ds.column_names:
        return None
    try:
        return column_values(ds, column)
    except InputError:  # not numeric
        return None


def column_values_of(columns: Sequence[str], subset: Dataset, pool: Dataset | None) -> ColumnValues:
    out: ColumnValues = {}
    for column in columns:
        sub = values(subset, column)
        if sub is not None:
            out[column] = (sub, values(pool, column))
    return out


def decimals(x: np.ndarray) -> int:
    """Decimals that show a column's values to about 4 significant digits (1 for whole numbers like token counts)."""
    finite = x[np.isfinite(x)]
    if not len(finite) or np.all(finite == np.round(finite)):
        return 1
    scale = float(np.median(np.abs(finite))) or float(np.max(np.abs(finite))) or 1.0
    return int(min(6, max(1, 3 - math.floor(math.log10(scale)))))


def score_stats(x: np.ndarray) -> list[float | int | None]:
    """count, missing (NaN), mean, std, min, 25%, 50%, 75%, max."""
    finite = x[~np.isnan(x)]
    if not len(finite):
        return [0, int(len(x))] + [None] * 7
    q25, q50, q75 = np.quantile(finite, [0.25, 0.5, 0.75])
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
    return [
        int(len(finite)), int(len(x) - len(finite)), float(finite.mean()), std,
        float(finite.min()), float(q25), float(q50), float(q75), float(finite.max()),
    ]  # fmt: skip


def stats_tables(col_values: ColumnValues) -> list[dict[str, Any]]:
    """Per column: `{"column", "decimals", "subset": stats, "pool": stats | None}`."""
    tables = []
    for column, (sub, pool_values) in col_values.items():
        both = sub if pool_values is None else np.concatenate([sub, pool_values])
        tables.append(
            {
                "column": column,
                "decimals": decimals(both),
                "subset": score_stats(sub),
                "pool": score_stats(pool_values) if pool_values is not None else None,
            }
        )
    return tables


def histograms(col_values: ColumnValues, assets_dir: Path | None) -> list[dict[str, Any]]:
    """Write a PNG per column under `assets_dir`; `[{"column", "path", "against_pool"}]`, paths relative
    to the card (`<assets_dir name>/hist-<column>.png`)."""
    if assets_dir is None:
        return []
    from ..plots import score_histogram

    plots = []
    for column, (sub, pool_values) in col_values.items():
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", column)[:60].strip("-.") or "score"
        if slug != column:
            slug += "-" + hashlib.sha256(column.encode()).hexdigest()[:8]
        path = assets_dir / f"hist-{slug}.png"
        try:
            score_histogram(sub, pool_values, path, column=column)
        except ValueError:  # nothing finite to plot
            continue
        plots.append(
            {"column": column, "path": f"{assets_dir.name}/{path.name}", "against_pool": pool_values is not None}
        )
    return plots


def _describe(ds: Dataset, token_column: str) -> dict[str, Any]:
    try:
        return describe(ds, token_column)
    except HFSelectError:  # a token column that is not numeric
        return describe(ds, token_column="\0none")


def comparison(subset: Dataset, baseline: Dataset, column: str | None, token_column: str) -> dict[str, Any]:
    """The subset against a random subset: `{"subset": {...}, "baseline": {...}, "score": {...} | None}`,
    each side with rows, tokens, mean/median tokens and mean turns; `score` the mean of the score column."""
    keys = ("rows", "tokens", "mean_tokens", "median_tokens", "mean_turns")
    ours, theirs = _describe(subset, token_column), _describe(baseline, token_column)
    out: dict[str, Any] = {
        "subset": {k: _plain_number(ours.get(k)) for k in keys},
        "baseline": {k: _plain_number(theirs.get(k)) for k in keys},
        "score": None,
    }
    if column and column != token_column:
        sub, base = values(subset, column), values(baseline, column)
        if sub is not None and base is not None:
            mean = [float(np.nanmean(v)) if np.isfinite(v).any() else None for v in (sub, base)]
            out["score"] = {
                "column": column, "subset": mean[0], "baseline": mean[1],
                "decimals": decimals(np.concatenate([sub, base])),
            }  # fmt: skip
    return out


def _plain_number(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _mix_key(value: Any) -> str:
    if value is None:
        return "(none)"
    return value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True, ensure_ascii=False)


def _value_counts(ds: Dataset, column: str) -> Counter[str]:
    array = ds.with_format("arrow")[column]
    if isinstance(array, pa.Table):
        array = array.column(0)
    counts: Counter[str] = Counter()
    try:
        vc = pc.value_counts(array)
        pairs = zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        pairs = ((v, 1) for v in array.to_pylist())
    for value, n in pairs:
        counts[_mix_key(value)] += n
    return counts


def source_mix(
    subset: Dataset, baseline: Dataset | None, pool: Dataset | None, column: str = "source"
) -> dict[str, Any] | None:
    """Shares (in percent) of the most common values of `column`: `{"column", "sides": ["subset",
    "baseline", "pool"] (those that have it), "rows": [{"value", "shares"}], "other": {"values", "shares"} | None}`."""
    if column not in subset.column_names:
        return None
    named = [("subset", subset), ("baseline", baseline), ("pool", pool)]
    named = [(name, ds) for name, ds in named if ds is not None and column in ds.column_names]
    counts = [_value_counts(ds, column) for _, ds in named]
    totals = [max(1, sum(c.values())) for c in counts]
    ranked = sorted(counts[0], key=lambda k: (-counts[0][k], -(counts[-1][k]), k))
    for key, _ in counts[-1].most_common():
        if len(ranked) >= MIX_MAX_VALUES * 2:
            break
        if key not in counts[0]:
            ranked.append(key)
    shown = ranked[:MIX_MAX_VALUES]
    rows = [{"value": key, "shares": [100 * c[key] / t for c, t in zip(counts, totals, strict=True)]} for key in shown]
    rest = [sum(n for k, n in c.items() if k not in shown) for c in counts]
    other = None
    if any(rest):
        other = {
            "values": len(set().union(*counts) - set(shown)),
            "shares": [100 * r / t for r, t in zip(rest, totals, strict=True)],
        }
    return {"column": column, "sides": [name for name, _ in named], "rows": rows, "other": other}
