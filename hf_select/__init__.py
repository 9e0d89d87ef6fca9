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
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

CLI_PID_VARIABLE = "HF_SELECT_CLI_PID"
"""Set by the `hf-select` command to its pid, so that its worker processes know they are workers."""


def _quiet_ctrl_c_in_cli_workers() -> None:
    """In a worker process of the `hf-select` command (spawned by `datasets` for model scorers; it imports
    hf-select to unpickle the scorer), Ctrl-C exits quietly: the command itself reports it, once."""
    parent = os.environ.get(CLI_PID_VARIABLE)
    if parent and parent != str(os.getpid()) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda *_: sys.exit(130))


_quiet_ctrl_c_in_cli_workers()

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
            "LESSScorer",
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
    "BudgetError",
    "CrossEntropyScorer",
    "EmbeddingScorer",
    "FormatError",
    "HFSelectError",
    "IFDScorer",
    "LESSScorer",
    "InputError",
    "PromptPerplexityScorer",
    "RowError",
    "Scorer",
    "SelectITScorer",
    "SelectionRecord",
    "Selector",
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
        LESSScorer,
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
