"""Scorers: callables for `Dataset.map(scorer, batched=True)` that add score columns."""

from .base import Scorer, device_for
from .token_length import TokenLengthScorer

SCORERS: dict[str, type[Scorer]] = {cls.method: cls for cls in (TokenLengthScorer,)}

__all__ = ["SCORERS", "Scorer", "TokenLengthScorer", "device_for"]
