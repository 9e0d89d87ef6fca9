"""Conversation formats: detect a dataset's format, normalise rows to `(role, text)` turns, render them.

Four formats are read, each into turns with roles `system`, `user` and `assistant`:

- ShareGPT: a `conversations` column of `{"from", "value"}` turns.
- OpenAI messages: a `messages` column of `{"role", "content"}` turns.
- Alpaca: `instruction`, optional `input`, `output` columns.
- Prompt/response pairs: two string columns such as `prompt`/`response`.

A bad row raises `RowError` with a reason; scorers turn it into NaN plus that reason.

Example:
    >>> spec = detect_format(["id", "conversations"])
    >>> turns = row_turns({"conversations": [{"from": "human", "value": "Hi"},
    ...                                      {"from": "gpt", "value": "Hello!"}]}, spec)
    >>> history, response = split_last(turns)
    >>> render_paper_prompt(history)
    'Human: Hi\\nAssistant: '
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from .errors import FormatError, RowError

Role = Literal["system", "user", "assistant"]
FormatName = Literal["sharegpt", "messages", "alpaca", "prompt_response"]

SHAREGPT_ROLES: dict[str, Role] = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
}
MESSAGES_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
# Checked in this order; the first pair whose both columns exist wins.
PROMPT_RESPONSE_PAIRS: tuple[tuple[str, str], ...] = (
    ("prompt", "response"),
    ("prompt", "completion"),
    ("question", "answer"),
    ("query", "response"),
    ("instruction", "response"),
    ("input", "output"),
)


# How many columns each format reads when they are named explicitly.
COLUMN_COUNTS: dict[str, tuple[int, ...]] = {
    "sharegpt": (1,),
    "messages": (1,),
    "alpaca": (2, 3),
    "prompt_response": (2,),
}


class Turn(NamedTuple):
    role: Role
    text: str


@dataclass(frozen=True)
class FormatSpec:
    """Which format a dataset is in and which columns hold it."""

    name: FormatName
    columns: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.name} ({', '.join(self.columns)})"


def detect_format(
    column_names: Iterable[str],
    format: FormatName | None = None,
    columns: Sequence[str] | None = None,
) -> FormatSpec:
    """Find the conversation format of a dataset from its column names.

    `format` forces a format; `columns` names the columns for it (for `prompt_response`, the
    prompt then the response column; for `alpaca`, instruction, input, output).
    Raises `FormatError` naming the columns it saw when nothing fits.
    """
    names = list(column_names)
    present = set(names)
    if format is not None and format not in COLUMN_COUNTS:
        raise FormatError(f"unknown format {format!r}: expected one of {sorted(COLUMN_COUNTS)}")
    if columns is not None:
        if format is None:
            raise FormatError("columns= needs format= to say how to read them")
        if len(columns) not in COLUMN_COUNTS[format]:
            counts = " or ".join(str(c) for c in COLUMN_COUNTS[format])
            raise FormatError(f"format {format!r} reads {counts} columns, got {list(columns)}")
        missing = [c for c in columns if c not in present]
        if missing:
            raise FormatError(f"columns {missing} are not in the dataset; it has {names}")
        return FormatSpec(format, tuple(columns))

    candidates: list[FormatSpec] = []
    if "conversations" in present:
        candidates.append(FormatSpec("sharegpt", ("conversations",)))
    if "messages" in present:
        candidates.append(FormatSpec("messages", ("messages",)))
    if "instruction" in present and "output" in present:
        cols = ("instruction", "input", "output") if "input" in present else ("instruction", "output")
        candidates.append(FormatSpec("alpaca", cols))
    for prompt, response in PROMPT_RESPONSE_PAIRS:
        if prompt in present and response in present:
            candidates.append(FormatSpec("prompt_response", (prompt, response)))
            break
    if format is not None:
        candidates = [c for c in candidates if c.name == format]
        if not candidates:
            raise FormatError(f"the dataset's columns {names} do not fit format {format!r}")
    if not candidates:
        raise FormatError(
            f"cannot find conversations in columns {names}: expected ShareGPT 'conversations', "
            "OpenAI 'messages', Alpaca 'instruction'/'input'/'output', or a prompt/response pair "
            f"({', '.join('/'.join(p) for p in PROMPT_RESPONSE_PAIRS)}); pass format= and columns= otherwise"
        )
    return candidates[0]


def _text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    # OpenAI content parts: [{"type": "text", "text": ...}, ...]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(p, Mapping) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in value)
    ):
        return "".join(p["text"] for p in value)
    raise RowError(f"non-string text in {where}: {type(value).__name__}")


def _turn_list(value: Any, role_key: str, text_key: str, roles: Mapping[str, Role], column: str) -> list[Turn]:
    if value is None or (isinstance(value, Sequence) and not isinstance(value, str | bytes) and len(value) == 0):
        raise RowError(f"empty conversation in '{column}'")
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise RowError(f"'{column}' is not a list of turns: {type(value).__name__}")
    turns: list[Turn] = []
    for i, turn in enumerate(value):
        if not isinstance(turn, Mapping):
            raise RowError(f"turn {i} of '{column}' is not a mapping: {type(turn).__name__}")
        raw_role = turn.get(role_key)
        role = roles.get(raw_role.lower()) if isinstance(raw_role, str) else None
        if role is None:
            raise RowError(f"unknown role {raw_role!r} in turn {i} of '{column}'")
        turns.append(Turn(role, _text(turn.get(text_key), f"turn {i} of '{column}'")))
    return turns


def row_turns(row: Mapping[str, Any], spec: FormatSpec) -> list[Turn]:
    """Normalise one row to turns. Raises `RowError` for a malformed row."""
    if spec.name == "sharegpt":
        return _turn_list(row[spec.columns[0]], "from", "value", SHAREGPT_ROLES, spec.columns[0])
    if spec.name == "messages":
        return _turn_list(row[spec.columns[0]], "role", "content", MESSAGES_ROLES, spec.columns[0])
    if spec.name == "alpaca":
        instruction_col, output_col = spec.columns[0], spec.columns[-1]
        instruction = _text(row[instruction_col], f"'{instruction_col}'")
        if len(spec.columns) == 3 and row[spec.columns[1]] is not None:
            extra = _text(row[spec.columns[1]], f"'{spec.columns[1]}'")
            if extra.strip():
                instruction = f"{instruction}\n\n{extra}"
        return [Turn("user", instruction), Turn("assistant", _text(row[output_col], f"'{output_col}'"))]
    prompt_col, response_col = spec.columns
    return [
        Turn("user", _text(row[prompt_col], f"'{prompt_col}'")),
        Turn("assistant", _text(row[response_col], f"'{response_col}'")),
    ]


def batch_turns(batch: Mapping[str, Sequence[Any]], spec: FormatSpec) -> list[list[Turn] | RowError]:
    """Normalise every row of a `datasets` batch; a bad row yields its `RowError` in place."""
    columns = {c: batch[c] for c in spec.columns}
    n = len(next(iter(columns.values())))
    out: list[list[Turn] | RowError] = []
    for i in range(n):
        try:
            out.append(row_turns({c: v[i] for c, v in columns.items()}, spec))
        except RowError as err:
            out.append(err)
    return out


def split_last(turns: Sequence[Turn]) -> tuple[list[Turn], str]:
    """Split turns into (history, last response). The last turn must be a non-empty assistant turn."""
    if not turns:
        raise RowError("empty conversation")
    if not any(t.role == "assistant" for t in turns):
        raise RowError("no assistant turn")
    if turns[-1].role != "assistant":
        raise RowError(f"last turn is not an assistant turn (it is {turns[-1].role!r})")
    if not turns[-1].text.strip():
        raise RowError("empty response")
    return list(turns[:-1]), turns[-1].text


def assistant_splits(turns: Sequence[Turn]) -> list[tuple[list[Turn], str]]:
    """Every (history, response) pair of a conversation, one per non-empty assistant turn (`turns="all"`)."""
    split_last(turns)  # same validity rules as the default unit
    return [(list(turns[:i]), t.text) for i, t in enumerate(turns) if t.role == "assistant" and t.text.strip()]


PAPER_HEADERS: dict[Role, str] = {"system": "", "user": "Human: ", "assistant": "Assistant: "}


def render_paper_prompt(history: Sequence[Turn]) -> str:
    """The study's fine-tuning format: `[system\\n]Human: q1\\nAssistant: a1\\nHuman: q2\\nAssistant: `
    (its scoring scripts built a slightly different text: `hf_select.study.render_study_prompt`)."""
    return "".join(f"{PAPER_HEADERS[t.role]}{t.text}\n" for t in history) + PAPER_HEADERS["assistant"]


def to_messages(turns: Sequence[Turn]) -> list[dict[str, str]]:
    return [{"role": t.role, "content": t.text} for t in turns]
