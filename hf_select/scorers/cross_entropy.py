"""Cross-entropy / perplexity of the response given the history under the base model."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .. import study
from ..engine import TargetNLL
from ..errors import InputError
from .lm import LMResources, LMScorer


def ce_and_ppl(
    rows: Sequence[int], stats: Sequence[TargetNLL], errors: list[str | None]
) -> tuple[list[float | None], list[float | None]]:
    """Per-row mean NLL and its exponential from engine results for `rows` (None elsewhere); a row the
    backend could not score gets its reason in `errors` instead."""
    ce: list[float | None] = [None] * len(errors)
    ppl: list[float | None] = [None] * len(errors)
    for i, s in zip(rows, stats, strict=True):
        if s.error is not None:
            errors[i] = s.error
            continue
        ce[i] = s.mean
        ppl[i] = math.exp(s.mean) if s.mean < 700 else math.inf  # exp overflows past ~709
    return ce, ppl


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

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.shift and self.backend != "local":
            raise InputError("shift=False (the study's bug) needs backend='local'")
        if self.template == "study" and self.turns != "last":
            raise InputError("template='study' scores the last turn only, as the study's scripts did: use turns='last'")

    method: ClassVar[str] = "ce"
    score_columns: ClassVar[tuple[str, ...]] = ("ce", "ppl")
    error_column: ClassVar[str] = "ce_error"

    def score(self, batch: Mapping[str, Sequence[Any]], resources: LMResources) -> tuple[dict[str, list], list]:
        encoder = resources.encoder
        if encoder.template == "study":  # the CE script's own ids and span
            kept, units, errors = study.ce_units(encoder.tokenizer, self.conversations(batch), self.max_length)
        else:
            kept, units, errors = self.units(batch, encoder)
        stats = resources.engine.nll(units, shift=self.shift, batch_tokens=self.batch_tokens)
        ce, ppl = ce_and_ppl(kept, stats, errors)
        return {"ce": ce, "ppl": ppl}, errors
