"""hf-select: fast, exact data selection for instruction-tuning pools on Hugging Face datasets.

The public names below are imported on first use (PEP 562), so that `import hf_select` and
`hf-select --help` do not pay for importing `datasets`, `torch` and `transformers`.

Example:
    >>> import hf_select
    >>> hf_select.InputError.__name__
    'InputError'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .interrupts import quiet_if_cli_worker  # noqa: E402

quiet_if_cli_worker()  # a spawned worker of the `hf-select` command: Ctrl-C exits it quietly

# public name -> the submodule that defines it (a name equal to its module is the submodule itself)
_LAZY: dict[str, str] = {
    "select": "select",
    "SELECTORS": "select",
    "Selector": "select",
    "build_card": "card",
    "BudgetError": "errors",
    "FormatError": "errors",
    "HFSelectError": "errors",
    "InputError": "errors",
    "RowError": "errors",
    "SelectionRecord": "record",
    "save_selection": "save",
    **{
        name: "scorers"
        for name in (
            "SCORERS",
            "CrossEntropyScorer",
            "EmbeddingScorer",
            "IFDScorer",
            "PromptPerplexityScorer",
            "Scorer",
            "SelectITScorer",
            "TokenLengthScorer",
        )
    },
}

__all__ = [
    "SCORERS",
    "SELECTORS",
    "Selector",
    "BudgetError",
    "CrossEntropyScorer",
    "EmbeddingScorer",
    "FormatError",
    "HFSelectError",
    "IFDScorer",
    "InputError",
    "PromptPerplexityScorer",
    "RowError",
    "Scorer",
    "SelectITScorer",
    "SelectionRecord",
    "TokenLengthScorer",
    "__version__",
    "build_card",
    "save_selection",
    "select",
]

if TYPE_CHECKING:
    from . import select
    from .card import build_card
    from .errors import BudgetError, FormatError, HFSelectError, InputError, RowError
    from .record import SelectionRecord
    from .save import save_selection
    from .scorers import (
        SCORERS,
        CrossEntropyScorer,
        EmbeddingScorer,
        IFDScorer,
        PromptPerplexityScorer,
        Scorer,
        SelectITScorer,
        TokenLengthScorer,
    )
    from .select import SELECTORS, Selector


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hf_select' has no attribute {name!r}")
    loaded = importlib.import_module(f".{module}", __name__)
    value = loaded if module == name else getattr(loaded, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
