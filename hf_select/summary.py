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
    """Mean number of turns of the non-empty conversations, counted by Arrow (no rows turned into Python
    objects, so it stays fast on million-row pools). Alpaca and prompt/response rows have two turns."""
    if len(ds) == 0:
        return None
    if spec.name not in ("sharegpt", "messages"):
        return 2.0
    column = ds.with_format("arrow")[spec.columns[0]]
    if isinstance(column, pa.Table):
        column = column.column(0)
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.float64)
    lengths = lengths[lengths > 0]  # nulls are NaN (dropped by the comparison), empty lists are not conversations
    return float(lengths.mean()) if len(lengths) else None


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
