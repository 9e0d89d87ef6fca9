"""LESS's target side: the mean of the target rows' normalised gradients, per target set and checkpoint,
computed once and cached on disk.

With a mean over target rows, `mean_v cos(g(z), g(v)) = <g(z)/|g(z)|, mean_v g(v)/|g(v)|>`: one dot product
per pool row and checkpoint with this mean, so target gradients are never kept row by row. The cache file
is written under a lock: whichever process comes first computes it, every other one waits and reads it.

Example:
    >>> import tempfile, torch
    >>> path = Path(tempfile.mkdtemp()) / "targets.safetensors"
    >>> cached(path, lambda: torch.ones(1, 2, 3)).shape
    torch.Size([1, 2, 3])
    >>> cached(path, lambda: 1 / 0).sum().item()  # read back, not computed again
    6.0
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..encoding import Units
from ..errors import InputError
from .model import WarmupModel
from .projection import RademacherProjection


def target_means(
    lm: WarmupModel,
    sets: Sequence[Sequence[Units]],
    *,
    projection: RademacherProjection | None = None,
    batch_tokens: int = 4096,
) -> torch.Tensor:
    """[sets, checkpoints, dim] float32: per set and checkpoint, the mean over its rows of their unit plain
    (SGD) gradients, projected when `projection` is given. Rows with a non-finite gradient are left out."""
    means = []
    for k, units in enumerate(sets):
        if not units:
            raise InputError(f"target set {k} has no row that can be scored")
        per_checkpoint = []
        for i in range(len(lm.checkpoints)):
            total, count = None, 0
            for _, vectors in lm.vectors(units, checkpoint=i, adam=False, projection=projection,
                                         batch_tokens=batch_tokens):  # fmt: skip
                good = vectors[torch.isfinite(vectors).all(dim=1)]
                total = good.sum(0) if total is None else total + good.sum(0)
                count += len(good)
            if not count:
                raise InputError(f"target set {k}: every row's gradient is non-finite")
            per_checkpoint.append((total / count).float().cpu())
        means.append(torch.stack(per_checkpoint))
    return torch.stack(means)


def cached(path: str | os.PathLike[str], compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The tensor at `path` (safetensors), computing and writing it first if it is not there; under a file
    lock, so that concurrent processes compute it once."""
    from filelock import FileLock
    from safetensors.torch import load_file, save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.is_file():
            tmp = path.with_name(f".{path.name}.tmp")
            save_file({"means": compute().contiguous()}, str(tmp))
            os.replace(tmp, path)
    return load_file(str(path))["means"]
