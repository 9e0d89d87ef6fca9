"""Conversation formats: detect a dataset's format, normalise rows to `(role, text)` turns, render them.

Four formats are read, each into turns with roles `system`, `user`, `assistant` and `tool` (a tool's
output, kept as context like any earlier turn):

- ShareGPT: a `conversations` column of `{"from", "value"}` turns.
- OpenAI messages: a `messages` column of `{"role", "content"}` turns; an assistant turn's `tool_calls`
  become its text (one `{"name", "arguments"}` JSON object per call).
- Alpaca: `instruction`, optional `input`, `output` columns.
- Prompt/response pairs: two string columns such as `prompt`/`response`.

A bad row raises `RowError` with a reason; scorers turn it into NaN plus that reason. A file whose rows
mix formats (some ShareGPT, some `messages`, some Alpaca) is read row by row: a row without the first
format's columns is read by the next format whose columns it has.

Example:
    >>> spec = detect_format(["id", "conversations"])
    >>> turns = row_turns({"conversations": [{"from": "human", "value": "Hi"},
    ...                                      {"from": "gpt", "value": "Hello!"}]}, spec)
    >>> history, response = split_last(turns)
    >>> render_paper_prompt(history)
    'Human: Hi\\nAssistant: '
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from .errors import FormatError, RowError

Role = Literal["system", "user", "assistant", "tool"]
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
    "tool": "tool",
    "observation": "tool",  # what ShareGPT-style tool datasets (glaive, LLaMA-Factory) call tool output
}
MESSAGES_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "ipython": "tool",  # Llama 3's name for tool output
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
    fallbacks: tuple[FormatSpec, ...] = ()
    """Formats for rows that have none of `columns` (a file mixing formats), tried in order."""

    def describe(self) -> str:
        own = f"{self.name} ({', '.join(self.columns)})"
        return own + "".join(f", else {f.describe()}" for f in self.fallbacks)

    @property
    def read_columns(self) -> tuple[str, ...]:
        """Every column a row may be read from (its own, then the fallbacks')."""
        return tuple(dict.fromkeys([*self.columns, *(c for f in self.fallbacks for c in f.columns)]))


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
    if format is not None:
        return candidates[0]
    first, fallbacks, used = candidates[0], [], set(candidates[0].columns)
    for other in candidates[1:]:  # formats on columns of their own: rows of a mixed file
        if used.isdisjoint(other.columns):
            fallbacks.append(other)
            used.update(other.columns)
    return FormatSpec(first.name, first.columns, tuple(fallbacks))


def _unicode(text: str, where: str) -> str:
    """`text` if it is valid Unicode; a lone surrogate (possible in Python objects, never in Arrow data) would
    make the tokenizer fail for the whole batch, so the row fails alone."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise RowError(
                f"invalid Unicode in {where}: a lone surrogate {text[err.start]!r} at character {err.start}"
            ) from None
    return text


def _text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return _unicode(value, where)
    # OpenAI content parts: [{"type": "text", "text": ...}, ...]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(p, Mapping) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in value)
    ):
        return _unicode("".join(p["text"] for p in value), where)
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
        where = f"turn {i} of '{column}'"
        calls = turn.get("tool_calls") if role == "assistant" else None
        if calls:
            content = turn.get(text_key)
            text = _tool_calls_text(calls, where)
            turns.append(Turn(role, text if content in (None, "") else f"{_text(content, where)}\n{text}"))
        else:
            turns.append(Turn(role, _text(turn.get(text_key), where)))
    return turns


def _tool_calls_text(calls: Any, where: str) -> str:
    """An assistant turn's OpenAI `tool_calls` as text, one JSON object `{"name", "arguments"}` per line: the
    call is what the model was trained to produce, so it is scored like any response (content is often None)."""
    if not isinstance(calls, Sequence) or isinstance(calls, str | bytes):
        raise RowError(f"'tool_calls' of {where} is not a list: {type(calls).__name__}")
    lines = []
    for call in calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise RowError(f"a tool call of {where} has no function name")
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            with contextlib.suppress(json.JSONDecodeError):  # else kept as the string the dataset holds
                arguments = json.loads(arguments)
        lines.append(json.dumps({"name": function["name"], "arguments": arguments}, ensure_ascii=False))
    return _unicode("\n".join(lines), where)


def row_turns(row: Mapping[str, Any], spec: FormatSpec) -> list[Turn]:
    """Normalise one row to turns. Raises `RowError` for a malformed row. A row with none of the format's
    columns (all null) is read by the first of `spec.fallbacks` whose columns it has."""
    if spec.fallbacks and all(row.get(c) is None for c in spec.columns):
        for fallback in spec.fallbacks:
            if any(row.get(c) is not None for c in fallback.columns):
                return row_turns(row, FormatSpec(fallback.name, fallback.columns))
        every = ", ".join(repr(c) for c in spec.read_columns)
        raise RowError(f"no conversation in this row: {every} are all empty")
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
    columns = {c: batch[c] for c in spec.read_columns if c in batch}
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


PAPER_HEADERS: dict[Role, str] = {"system": "", "user": "Human: ", "assistant": "Assistant: ", "tool": "Tool: "}
"""The study's format has no tool turns; a tool's output is shown as `Tool: ...` context."""


def render_paper_prompt(history: Sequence[Turn]) -> str:
    """The study's fine-tuning format: `[system\\n]Human: q1\\nAssistant: a1\\nHuman: q2\\nAssistant: `
    (its scoring scripts built a slightly different text: `hf_select.study.render_study_prompt`)."""
    return "".join(f"{PAPER_HEADERS[t.role]}{t.text}\n" for t in history) + PAPER_HEADERS["assistant"]


def to_messages(turns: Sequence[Turn]) -> list[dict[str, str]]:
    """Turns as OpenAI / TRL `messages`: `[{"role": ..., "content": ...}, ...]`."""
    return [{"role": t.role, "content": t.text} for t in turns]


MESSAGES_COLUMN = "messages"


def as_messages(dataset: Any, format: FormatName | None = None, columns: Sequence[str] | None = None) -> Any:
    """The dataset with its conversations in one TRL-ready `messages` column (a list of `{"role",
    "content"}` with string contents, roles system/user/assistant/tool) in place of the columns they were
    read from (ShareGPT, messages, Alpaca or prompt/response, detected per row as the scorers read them);
    the other columns (ids, scores) are kept, rows keep their order. A row that cannot be read raises
    `InputError` naming it: no row is dropped or left without messages.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"instruction": ["Add 2 and 2."], "input": [""], "output": ["4"], "n": [7]})
        >>> out = as_messages(ds)
        >>> out.column_names, out[0]["messages"]
        (['n', 'messages'], [{'role': 'user', 'content': 'Add 2 and 2.'}, {'role': 'assistant', 'content': '4'}])
    """
    from datasets import Features, List, Value

    from .errors import InputError

    spec = detect_format(dataset.column_names, format, columns)
    read = list(spec.read_columns)

    def convert(batch: Mapping[str, Sequence[Any]], indices: Sequence[int]) -> dict[str, list[Any]]:
        out = []
        for i, turns in zip(indices, batch_turns(batch, spec), strict=True):
            if isinstance(turns, RowError):
                raise InputError(f"row {i} cannot be written as messages: {turns.reason}")
            out.append(to_messages(turns))
        return {MESSAGES_COLUMN: out}

    kept = [c for c in dataset.column_names if c not in read and c != MESSAGES_COLUMN]
    message = {"role": Value("string"), "content": Value("string")}
    features = Features({**{c: dataset.features[c] for c in kept}, MESSAGES_COLUMN: List(message)})
    return dataset.map(
        convert, batched=True, with_indices=True, remove_columns=[c for c in dataset.column_names if c not in kept],
        features=features, desc="hf-select messages",
    )  # fmt: skip
