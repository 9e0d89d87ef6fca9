"""Exceptions. Anything subclassing `HFSelectError` is a user mistake: the CLI prints it without a traceback."""

from __future__ import annotations


class HFSelectError(Exception):
    """Base class for errors caused by the input or the arguments, not by a bug."""


class FormatError(HFSelectError):
    """The dataset's columns fit none of the conversation formats."""


class RowError(HFSelectError):
    """One row cannot be scored. Scorers turn it into NaN plus a reason unless `strict=True`."""

    def __init__(self, reason: str, index: int | None = None) -> None:
        self.reason = reason
        self.index = index
        super().__init__(reason if index is None else f"row {index}: {reason}")


class BudgetError(HFSelectError):
    """A budget is malformed or asks for more than can be selected."""


class InputError(HFSelectError):
    """A dataset, file, column or option given by the user does not exist or does not fit."""


def load_error_reason(err: BaseException) -> str:
    """A one-line reason why a model or tokenizer could not be loaded. torch's safe loader
    (`torch.load(weights_only=True)`, used by transformers for `.bin`/`.pt` weights) refuses pickles that
    could run code; its message is a page long, so keep the refused global and say what to do.

    Example:
        >>> import pickle
        >>> load_error_reason(pickle.UnpicklingError("Weights only load failed. ...\\n\\n"
        ...     "Trying to load unsupported GLOBAL posix.getcwd whose module posix is blocked.\\n\\nCheck ..."))
        ... # doctest: +ELLIPSIS
        "torch's safe loader (weights_only=True) refused its pickled weights (Trying to load unsupported ...
    """
    import pickle

    text = str(err)
    if isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        detail = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), lines[-1] if lines else "")
        return (
            f"torch's safe loader (weights_only=True) refused its pickled weights ({detail.rstrip('.')}): "
            "use a safetensors checkpoint, or convert this one yourself only if you trust where it came from"
        )
    return text or type(err).__name__
