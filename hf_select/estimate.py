"""`hf-select score --dry-run`: rows, tokens and an estimated run time from a short timed probe, before
committing hours of GPU.

Example:
    >>> from hf_select.estimate import estimate, format_estimate
    >>> print(format_estimate(estimate(IFDScorer(model="embedded:smollm2"), pool)))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from datasets import Dataset

from .errors import InputError
from .scorers import Scorer, TokenLengthScorer


def estimate(
    scorer: Scorer, pool: Dataset, *, probe_rows: int = 64, num_proc: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """Score a seeded random sample of `probe_rows` rows, at most half the pool (after loading and a
    2-row warm-up), and extrapolate to the pool: tokens from the probe's mean tokens per row, time from the
    probe's rows per second, divided across `num_proc` workers (one per GPU)."""
    n = len(pool)
    if n < 4:
        raise InputError(f"the pool has {n} rows: too few to estimate from a probe; score it without --dry-run")
    # at most half the pool: a dry run never scores (and throws away) the whole of a small pool
    size = min(probe_rows, n // 2)
    picked = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    probe = pool.select(picked)[:]
    t = time.perf_counter()
    scorer.prepare_pool(pool)  # part of the job (LESS: the target gradients), so part of the estimate
    scorer.resources(0)
    load_s = time.perf_counter() - t
    scorer(pool.select(picked[:2])[:], 0)  # warm-up: first kernels, caches
    t = time.perf_counter()
    out = scorer(probe, 0)
    probe_s = time.perf_counter() - t
    failed = int(sum(1 for e in out[scorer.error_column] if e))

    tokenizer = getattr(scorer, "tokenizer", None) or getattr(scorer, "model", None)
    revision = getattr(scorer, "revision", None)
    if tokenizer is None and hasattr(scorer, "token_source"):  # scorers whose model comes from elsewhere (LESS)
        tokenizer, revision = scorer.token_source()
    counter = TokenLengthScorer(
        tokenizer=tokenizer, revision=revision, template=getattr(scorer, "template", None) or "auto",
        format=getattr(scorer, "format", None), columns=getattr(scorer, "columns", None),
    )  # fmt: skip
    counts = counter(probe)["n_tokens"]
    mean_tokens = float(np.nanmean(counts)) if np.isfinite(counts).any() else math.nan
    workers = max(1, num_proc or 1)
    seconds = probe_s / len(picked) * n / workers
    return {
        "method": scorer.method,
        "rows": n,
        "probe_rows": len(picked),
        "probe_failed_rows": failed,
        "mean_tokens_per_row": mean_tokens,
        "estimated_tokens": mean_tokens * n if math.isfinite(mean_tokens) else None,
        "load_seconds": load_s,
        "probe_seconds": probe_s,
        "probe_tokens_per_second": float(np.nansum(counts)) / probe_s if probe_s > 0 else None,
        "workers": workers,
        "estimated_seconds": seconds,
    }


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_estimate(e: dict[str, Any]) -> str:
    tokens = f"~{e['estimated_tokens']:,.0f}" if e["estimated_tokens"] is not None else "unknown"
    return "\n".join(
        [
            f"{e['method']} on {e['rows']:,} rows, {tokens} tokens ({e['mean_tokens_per_row']:,.0f} per row)",
            f"probe: {e['probe_rows']} random rows in {e['probe_seconds']:.2f} s "
            f"({e['probe_tokens_per_second']:,.0f} tokens/s; {e['probe_failed_rows']} rows would get NaN), "
            f"model load {e['load_seconds']:.1f} s",
            f"estimated time: {_duration(e['estimated_seconds'])} with {e['workers']} worker(s), plus loading",
        ]
    )
