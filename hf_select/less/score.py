"""LESS scores of pool rows against prepared target means: `sum_i w_i <unit g_i(z), mean_v unit g_i(v)>`,
the max over target sets (METHODS.md, "LESS"), for rows already encoded as token units.

Example:
    >>> lm = WarmupModel("path/to/warmup")  # doctest: +SKIP
    >>> means = target_means(lm, [target_units])  # doctest: +SKIP
    >>> pool_scores(lm, means, pool_units)  # doctest: +SKIP
    array([0.0132, -0.0071, ...])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..encoding import Units
from .projection import RademacherProjection


def pool_scores(
    lm: Any,
    means: torch.Tensor,
    units: Sequence[Units],
    *,
    projection: RademacherProjection | None = None,
    batch_tokens: int = 4096,
    on_vectors: Callable[[int, list[int], torch.Tensor], None] | None = None,
) -> np.ndarray:
    """[rows] float64 LESS scores of `units` for a `WarmupModel` `lm` and target means [sets, checkpoints, dim]
    (on `lm`'s device); NaN where a row's gradient is not finite. `on_vectors(checkpoint, positions, vectors)`
    sees every micro-batch's unit vectors (to store them)."""
    scores = torch.zeros((len(units), means.shape[0]), dtype=torch.float64)
    for i, weight in enumerate(lm.weights):
        target = means[:, i, :].double().T  # [dim, sets]
        for batch, vectors in lm.vectors(units, checkpoint=i, adam=True, projection=projection,
                                         batch_tokens=batch_tokens):  # fmt: skip
            scores[batch] += weight * (vectors.double() @ target).cpu()
            if on_vectors is not None:
                on_vectors(i, batch, vectors)
    return scores.max(dim=1).values.numpy()
