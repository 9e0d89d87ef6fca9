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
