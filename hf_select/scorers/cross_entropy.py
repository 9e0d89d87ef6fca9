"""Cross-entropy / perplexity of the response given the history under the base model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .. import study
from ..conversation import Turn
from ..encoding import Units
from ..engine import TargetNLL
from ..errors import InputError, RowError
from .lm import LMResources, LMScorer


def ce_and_ppl(stats: Sequence[TargetNLL]) -> tuple[list[float | None], list[float | None], list[str | None]]:
    """Per-row mean NLL, its exponential (None where the row failed) and the reason a row the backend could
    not score failed (None elsewhere), from engine results."""
    ce: list[float | None] = [None] * len(stats)
    ppl: list[float | None] = [None] * len(stats)
    errors: list[str | None] = [s.error for s in stats]
    for k, s in enumerate(stats):
        if s.error is None:
            ce[k] = s.mean
            ppl[k] = math.exp(s.mean) if s.mean < 700 else math.inf  # exp overflows past ~709
    return ce, ppl, errors


@dataclass(kw_only=True)
class CrossEntropyScorer(LMScorer):
    """Adds `ce` (mean next-token NLL over the response tokens given the history) and `ppl = exp(ce)`.

    Long rows are cut to `max_length` keeping the start of the response; a row whose prompt alone
    reaches `max_length` gets NaN and a reason. `turns="all"` scores every assistant turn in one
    sequence (token-weighted mean). `shift=False` scores each response token with the logits at its own
    position, as the study's code did (it forgot the one-token shift): only to reproduce it. With
    `template="study"` the ids are those of the study's CE script (`hf_select.study.ce_units`), so
    `template="study", shift=False` gives the study's numbers.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"prompt": ["What is 2+2?"], "response": ["4."]})
        >>> ds = ds.map(CrossEntropyScorer(model="embedded:smollm2"), batched=True)  # doctest: +SKIP
        >>> ds[0]["ce"] > 0  # doctest: +SKIP
        True
    """

    shift: bool = True
    """False reproduces the study's missing one-token shift (token t scored with the logits at t): only to
    reproduce it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.shift and self.backend != "local":
            raise InputError("shift=False (the study's bug) needs backend='local'")
        if self.template == "study" and self.turns != "last":
            raise InputError("template='study' scores the last turn only, as the study's scripts did: use turns='last'")

    method: ClassVar[str] = "ce"
    score_columns: ClassVar[tuple[str, ...]] = ("ce", "ppl")
    error_column: ClassVar[str] = "ce_error"

    def prepare(self, turns: list[Turn], resources: LMResources) -> Any:
        if self.template == "study":  # the CE script tokenises the batch its own way, in `encode`
            return turns
        return super().prepare(turns, resources)

    def encode(self, prepared: list[Any], resources: LMResources) -> list[Units | RowError]:
        if self.template == "study":  # the CE script's own ids and span
            return study.per_row(*study.ce_units(resources.encoder.tokenizer, prepared, self.max_length))
        return super().encode(prepared, resources)

    def compute(self, units: list[Units], resources: LMResources) -> tuple[dict[str, list], list[str | None]]:
        ce, ppl, errors = ce_and_ppl(resources.engine.nll(units, shift=self.shift, batch_tokens=self.batch_tokens))
        return {"ce": ce, "ppl": ppl}, errors
