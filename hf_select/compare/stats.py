"""The study's statistics: one selection's scores against its random controls' scores, per metric.

A one-sided Mann-Whitney U test (`scipy.stats.mannwhitneyu`: "is the selection better than random?"),
a percentile bootstrap interval of the difference of means (selection minus controls, oriented so that
positive means better) and a verdict line. With one score per subset the test is coarse: with `m` selection
scores and `n` control scores the smallest p-value it can give is 1 / C(m + n, m) (1/6 for the study's
1 vs 5), so the verdict says so whenever that floor is above `alpha`.

Example:
    >>> result = compare_scores("loss", [1.0], [2.0, 2.1, 2.2, 2.3, 2.4], higher_is_better=False)
    >>> round(result.p_value, 4), result.min_p_value == result.p_value
    (0.1667, True)
    >>> print(result.verdict)
    loss: not distinguishable from random (p = 0.167; with 1 vs 5 scores no p below 0.167 is possible)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InputError


@dataclass
class MetricComparison:
    """One metric's comparison; `difference` and its interval are oriented so that positive is better."""

    metric: str
    higher_is_better: bool
    selection: list[float]
    controls: list[float]
    controls_mean: float
    controls_std: float
    difference: float
    interval: tuple[float, float]
    u_statistic: float
    p_value: float
    min_p_value: float
    alpha: float
    beats_random: bool
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def min_p_value(m: int, n: int) -> float:
    """The smallest one-sided exact Mann-Whitney p-value with `m` and `n` untied scores: 1 / C(m + n, m)."""
    return 1.0 / math.comb(m + n, m)


def bootstrap_interval(
    selection: Sequence[float],
    controls: Sequence[float],
    *,
    level: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(selection) - mean(controls), each group resampled with
    replacement (a single selection score stays fixed: the interval then reflects the controls' spread)."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(selection, dtype=np.float64), np.asarray(controls, dtype=np.float64)
    diffs = rng.choice(a, size=(resamples, a.size)).mean(1) - rng.choice(b, size=(resamples, b.size)).mean(1)
    low, high = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def compare_scores(
    metric: str,
    selection: Sequence[float],
    controls: Sequence[float],
    *,
    higher_is_better: bool,
    alpha: float = 0.05,
    seed: int = 0,
) -> MetricComparison:
    """Test whether `selection`'s scores are better than `controls`' (one-sided Mann-Whitney U)."""
    from scipy.stats import mannwhitneyu

    sel = [float(x) for x in selection]
    ctl = [float(x) for x in controls]
    if not sel or not ctl:
        raise InputError(f"{metric}: need at least one selection score and one control score")
    if not all(math.isfinite(x) for x in sel + ctl):
        raise InputError(f"{metric}: scores must be finite, got selection {sel} and controls {ctl}")
    test = mannwhitneyu(sel, ctl, alternative="greater" if higher_is_better else "less")
    sign = 1.0 if higher_is_better else -1.0
    low, high = bootstrap_interval(sel, ctl, seed=seed)
    interval = (low, high) if higher_is_better else (-high, -low)
    floor = min_p_value(len(sel), len(ctl))
    p = float(test.pvalue)
    beats = p < alpha
    if beats:
        verdict = f"{metric}: beats random at p = {p:.3g}"
    else:
        verdict = f"{metric}: not distinguishable from random (p = {p:.3g}"
        if floor >= alpha:
            verdict += f"; with {len(sel)} vs {len(ctl)} scores no p below {floor:.3g} is possible"
        verdict += ")"
    return MetricComparison(
        metric=metric, higher_is_better=higher_is_better, selection=sel, controls=ctl,
        controls_mean=float(np.mean(ctl)), controls_std=float(np.std(ctl, ddof=1)) if len(ctl) > 1 else 0.0,
        difference=sign * (float(np.mean(sel)) - float(np.mean(ctl))), interval=interval,
        u_statistic=float(test.statistic), p_value=p, min_p_value=floor, alpha=alpha, beats_random=beats,
        verdict=verdict,
    )  # fmt: skip
