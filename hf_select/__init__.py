"""hf-select: fast, exact data selection for instruction-tuning pools on Hugging Face datasets."""

__version__ = "0.1.0"

from . import select  # noqa: E402
from .card import build_card  # noqa: E402
from .errors import BudgetError, FormatError, HFSelectError, InputError, RowError  # noqa: E402
from .record import SelectionRecord  # noqa: E402
from .save import save_selection  # noqa: E402
from .scorers import (  # noqa: E402
    SCORERS,
    CrossEntropyScorer,
    EmbeddingScorer,
    IFDScorer,
    PromptPerplexityScorer,
    Scorer,
    SelectITScorer,
    TokenLengthScorer,
)
from .select import SELECTORS, Selector  # noqa: E402

__all__ = [
    "SCORERS",
    "SELECTORS",
    "Selector",
    "BudgetError",
    "FormatError",
    "HFSelectError",
    "InputError",
    "RowError",
    "CrossEntropyScorer",
    "EmbeddingScorer",
    "IFDScorer",
    "PromptPerplexityScorer",
    "Scorer",
    "SelectITScorer",
    "SelectionRecord",
    "TokenLengthScorer",
    "__version__",
    "build_card",
    "save_selection",
    "select",
]
