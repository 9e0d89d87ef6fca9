"""hf-select: fast, exact data selection for instruction-tuning pools on Hugging Face datasets."""

__version__ = "0.1.0"

from . import select  # noqa: E402
from .errors import BudgetError, FormatError, HFSelectError, InputError, RowError  # noqa: E402
from .record import SelectionRecord  # noqa: E402
from .save import save_selection  # noqa: E402
from .scorers import SCORERS, Scorer, TokenLengthScorer  # noqa: E402

__all__ = [
    "SCORERS",
    "BudgetError",
    "FormatError",
    "HFSelectError",
    "InputError",
    "RowError",
    "Scorer",
    "SelectionRecord",
    "TokenLengthScorer",
    "__version__",
    "save_selection",
    "select",
]
