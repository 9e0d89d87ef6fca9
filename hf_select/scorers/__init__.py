"""Scorers: callables for `Dataset.map(scorer, batched=True)` that add score columns."""

from .base import Scorer, device_for
from .cross_entropy import CrossEntropyScorer
from .embedding import EmbeddingScorer, PromptPerplexityScorer
from .ifd import IFDScorer
from .less import LESSScorer
from .selectit import SelectITScorer
from .token_length import TokenLengthScorer

SCORERS: dict[str, type[Scorer]] = {
    cls.method: cls
    for cls in (
        TokenLengthScorer,
        CrossEntropyScorer,
        IFDScorer,
        SelectITScorer,
        EmbeddingScorer,
        PromptPerplexityScorer,
        LESSScorer,
    )
}

__all__ = [
    "SCORERS",
    "CrossEntropyScorer",
    "EmbeddingScorer",
    "IFDScorer",
    "LESSScorer",
    "PromptPerplexityScorer",
    "Scorer",
    "SelectITScorer",
    "TokenLengthScorer",
    "device_for",
]
