"""Cross-entropy / perplexity of the response given the history under the base model."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import InputError
from .lm import LMResources, LMScorer


@dataclass(kw_only=True)
class CrossEntropyScorer(LMScorer):
    """Adds `ce` (mean next-token NLL over the response tokens given the history) and `ppl = exp(ce)`.

    Long rows are cut to `max_length` keeping the start of the response; a row whose prompt alone
    reaches `max_length` gets NaN and a reason. `turns="all"` scores every assistant turn in one
    sequence (token-weighted mean). `shift=False` reproduces the study's code, which forgot the
    one-token shift: do not use it otherwise.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"prompt": ["What is 2+2?"], "response": ["4."]})
        >>> ds = ds.map(CrossEntropyScorer(model="embedded:smollm2"), batched=True)  # doctest: +SKIP
        >>> ds[0]["ce"] > 0  # doctest: +SKIP
        True
    """

    shift: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.shift and self.backend != "local":
            raise InputError("shift=False (the study's bug) needs backend='local'")

    method: ClassVar[str] = "ce"
    score_columns: ClassVar[tuple[str, ...]] = ("ce", "ppl")
    error_column: ClassVar[str] = "ce_error"

    def score(self, batch: Mapping[str, Sequence[Any]], resources: LMResources) -> tuple[dict[str, list], list]:
        kept, units, errors = self.units(batch, resources.encoder)
        n = len(errors)
        ce: list[float | None] = [None] * n
        ppl: list[float | None] = [None] * n
        for i, stats in zip(
            kept, resources.engine.nll(units, shift=self.shift, batch_tokens=self.batch_tokens), strict=True
        ):
            if stats.error is not None:
                errors[i] = stats.error
                continue
            ce[i] = stats.mean
            ppl[i] = math.exp(stats.mean) if stats.mean < 700 else math.inf
        return {"ce": ce, "ppl": ppl}, errors
