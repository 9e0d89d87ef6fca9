"""Escaping for the card: every value the template prints is a `Markdown` string made by these helpers.

Nothing from the data (rows, column names, source names, the command) can break the front matter, the
tables, the HTML blocks or the code fences: inline text is one line, HTML-escaped and backslash-escaped;
code goes in a fence longer than any backtick run it holds.

Example:
    >>> from hf_select.card.escape import code, fence, text
    >>> text("a | b <i>")
    'a \\\\| b &lt;i&gt;'
    >>> code("n_tokens"), code("not code!")
    ('`n_tokens`', 'not code!')
    >>> print(fence("x = '```'", "python"))
    ````python
    x = '```'
    ````
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import numpy as np

from ..reproduce import LINE_BREAKS

CELL_MAX_CHARS = 300
_CODE_SAFE = re.compile(r"[A-Za-z0-9_.:/@+=,-]{1,120}")
# Control characters and those that reorder text visually (line breaks: `reproduce.LINE_BREAKS`, which
# covers what ends a line in CommonMark, Python's splitlines and YAML).
INVISIBLE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


class Markdown(str):
    """Text that may go into the card as is: escaped data, or hf-select's own Markdown."""

    __slots__ = ()


def text(value: Any, max_chars: int = CELL_MAX_CHARS) -> Markdown:
    """Data as inline Markdown: one line, HTML-escaped, Markdown punctuation and `|` backslash-escaped."""
    s = INVISIBLE.sub("", LINE_BREAKS.sub(" ", str(value)))
    if len(s) > max_chars:
        s = s[: max_chars - 1] + "…"
    return Markdown(_MD_SPECIAL.sub(r"\\\1", html.escape(s, quote=False)))


def code(value: Any) -> Markdown:
    """An identifier (column, model id, revision) as inline code when it is plainly one, else as `text`."""
    s = str(value)
    return Markdown(f"`{s}`") if _CODE_SAFE.fullmatch(s) else text(s)


def html_text(value: Any) -> Markdown:
    """Data inside an HTML element (`<summary>`): one line, quotes escaped too."""
    return Markdown(html.escape(INVISIBLE.sub("", LINE_BREAKS.sub(" ", str(value))), quote=True))


def url(path: str) -> Markdown:
    """A relative link target (a figure under `assets/`)."""
    return Markdown(quote(path))


def fence(content: str, info: str = "") -> Markdown:
    """A fenced code block that nothing in `content` can close: its fence is longer than any backtick run."""
    body = INVISIBLE.sub("", content.replace("\r\n", "\n").replace("\r", "\n")).rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    marks = "`" * max(3, longest + 1)
    return Markdown(f"{marks}{info}\n{body}\n{marks}")


def table(headers: Sequence[Markdown], rows: Sequence[Sequence[Markdown]], *, numeric: bool = True) -> Markdown:
    """A GFM table of escaped cells; the first column is left-aligned, the others right-aligned if numeric."""
    for cell in [*headers, *(c for row in rows for c in row)]:
        if not isinstance(cell, Markdown):
            raise TypeError(f"table cell {cell!r:.80} was not escaped")
    align = "---:" if numeric else "---"
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "".join(f"{align}|" for _ in headers[1:])]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def num(value: float | int | None, decimals: int | None = None) -> Markdown:
    """A number for a table: integers with thousands separators, floats with `decimals` (default: 4
    significant digits below 1,000, one decimal above); None and NaN are `–`."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return Markdown("–")
    if isinstance(value, int | np.integer):
        return Markdown(f"{int(value):,}")
    if decimals is None:
        return Markdown(f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}")
    return Markdown(f"{value:,.{decimals}f}")


def percent(value: float) -> Markdown:
    """A share already in percent: `12.5%`."""
    return Markdown(f"{value:.1f}%")


def metadata_text(value: Any, max_chars: int = 120) -> str:
    """A single-line, printable string for the YAML metadata."""
    chars = (" " if unicodedata.category(c)[0] in "CZ" else c for c in str(value))
    s = " ".join("".join(chars).split())
    return s if len(s) <= max_chars else s[: max_chars - 1] + "…"


def only_markdown(value: Any) -> Any:
    """The template's `finalize`: a value printed without going through an escaping filter is an error."""
    if isinstance(value, Markdown):
        return value
    raise TypeError(f"card template value {value!r:.80} was not escaped (wrap it with hf_select.card helpers)")
