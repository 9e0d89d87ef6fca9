"""Side-by-side summaries of a pool and its subsets: rows, tokens, mean turns."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset

from .conversation import FormatSpec, detect_format
from .errors import FormatError
from .select.selection import column_values


def describe(ds: Dataset, token_column: str = "n_tokens") -> dict[str, float | int | None]:
    """Rows, total/mean/median tokens over the rows that have a count (when `token_column` exists), how
    many have none, and mean turns of well-formed rows."""
    out: dict[str, float | int | None] = {
        "rows": len(ds),
        "tokens": None,
        "mean_tokens": None,
        "median_tokens": None,
    }
    if token_column in ds.column_names:
        tokens = column_values(ds, token_column, what="token")
        finite = tokens[~np.isnan(tokens)]
        out["rows_without_tokens"] = len(tokens) - len(finite)
        if len(finite):
            out.update(
                tokens=int(finite.sum()),
                mean_tokens=float(finite.mean()),
                median_tokens=float(np.median(finite)),
            )
    try:
        spec = detect_format(ds.column_names)
    except FormatError:
        out["mean_turns"] = None
        return out
    out["mean_turns"] = mean_turns(ds, spec)
    return out


def mean_turns(ds: Dataset, spec: FormatSpec) -> float | None:
    """Mean number of turns of the non-empty conversations (`turn_counts`). Alpaca and prompt/response
    rows have two turns."""
    counts = turn_counts(ds, spec)
    counts = counts[counts > 0]  # NaN (no conversation) fails the comparison; empty lists are not conversations
    return float(counts.mean()) if len(counts) else None


def turn_counts(ds: Dataset, spec: FormatSpec) -> np.ndarray:
    """Turns per row as float64, NaN where a row has no conversation; a row of a mixed file is counted in
    the format it is read in (`FormatSpec.fallbacks`). Counted by Arrow where the column is a list (no
    rows turned into Python objects, so it stays fast on million-row pools); a column of mixed shapes,
    which datasets stores as a `Json` column, is decoded row by row, and a value that is not a list of
    turns (a string, a number) counts as no conversation.

    Example:
        >>> from datasets import Dataset
        >>> from hf_select.conversation import detect_format
        >>> ds = Dataset.from_dict({"conversations": [[{"from": "human", "value": "q"}], None]})
        >>> turn_counts(ds, detect_format(ds.column_names)).tolist()
        [1.0, nan]
    """
    counts = np.full(len(ds), np.nan)
    for fmt in (FormatSpec(spec.name, spec.columns), *spec.fallbacks):
        todo = np.isnan(counts)
        if not todo.any():
            break
        counts[todo] = _format_counts(ds, fmt)[todo]
    return counts


def _format_counts(ds: Dataset, spec: FormatSpec) -> np.ndarray:
    arrow = ds.with_format("arrow")
    if spec.name not in ("sharegpt", "messages"):  # two turns wherever the row has its columns
        present = np.ones(len(ds), dtype=bool)
        for name in spec.columns[::2] if len(spec.columns) == 3 else spec.columns:  # alpaca's input may be null
            present &= ~_column(arrow, name).is_null().to_numpy(zero_copy_only=False)
        return np.where(present, 2.0, np.nan)
    column = _column(arrow, spec.columns[0])
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.float64)
    name, counts = spec.columns[0], []
    for batch in ds.select_columns([name]).iter(batch_size=10_000):  # decoded by the column's feature
        counts += [float(len(v)) if isinstance(v, list) else np.nan for v in batch[name]]
    return np.asarray(counts, dtype=np.float64)


def _column(arrow: Dataset, name: str) -> pa.ChunkedArray:
    column = arrow[name]
    return column.column(0) if isinstance(column, pa.Table) else column


def _fmt(value: float | int | None, decimals: int) -> str:
    if value is None:
        return "-"
    return f"{value:,.{decimals}f}" if isinstance(value, float) else f"{value:,}"


def table(summaries: Mapping[str, Mapping[str, float | int | None]]) -> str:
    """A plain-text table, one row per named summary."""
    headers = ["", "rows", "tokens", "mean tokens", "median tokens", "mean turns"]
    keys = ["rows", "tokens", "mean_tokens", "median_tokens", "mean_turns"]
    rows = [[name] + [_fmt(s.get(k), 2 if k == "mean_turns" else 1) for k in keys] for name, s in summaries.items()]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    ]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        )
    uncounted = {name: s["rows_without_tokens"] for name, s in summaries.items() if s.get("rows_without_tokens")}
    if uncounted:  # otherwise "tokens / rows" and "mean tokens" disagree with no explanation
        listed = ", ".join(f"{name} {n:,}" for name, n in uncounted.items())
        lines.append(f"(tokens, mean and median count the rows that have a token count; rows without one: {listed})")
    return "\n".join(lines)
