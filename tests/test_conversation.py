"""Conversation formats: detection, normalisation to (role, text) turns, bad rows, paper rendering."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from hf_select.conversation import (
    PROMPT_RESPONSE_PAIRS,
    SHAREGPT_ROLES,
    FormatSpec,
    Turn,
    assistant_splits,
    batch_turns,
    detect_format,
    render_paper_prompt,
    row_turns,
    split_last,
    to_messages,
)
from hf_select.errors import FormatError, HFSelectError, RowError

SHAREGPT = FormatSpec("sharegpt", ("conversations",))
MESSAGES = FormatSpec("messages", ("messages",))


def sg(*turns: tuple[str, Any]) -> dict[str, Any]:
    """A ShareGPT row from (from, value) pairs."""
    return {"conversations": [{"from": role, "value": value} for role, value in turns]}


def msgs(*turns: tuple[str, Any]) -> dict[str, Any]:
    """A messages row from (role, content) pairs."""
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


def turns_of(row: dict[str, Any], spec: FormatSpec = SHAREGPT) -> list[Turn]:
    return row_turns(row, spec)


def scored_unit(row: dict[str, Any], spec: FormatSpec = SHAREGPT) -> tuple[list[Turn], str]:
    """What every reference scorer scores: row -> turns -> (history, last response)."""
    return split_last(row_turns(row, spec))


# --- format detection ----------------------------------------------------------------------------


def test_detect_sharegpt() -> None:
    """A `conversations` column is ShareGPT, whatever other columns exist (they serve rows without it)."""
    assert detect_format(["id", "conversations"]) == SHAREGPT
    spec = detect_format(["conversations", "source", "prompt", "response"])
    assert (spec.name, spec.columns) == ("sharegpt", ("conversations",))
    assert spec.fallbacks == (FormatSpec("prompt_response", ("prompt", "response")),)


def test_detect_messages() -> None:
    """A `messages` column is the OpenAI messages format."""
    assert detect_format(["messages"]) == MESSAGES
    assert detect_format(["id", "messages", "category"]) == MESSAGES


def test_detect_sharegpt_wins_over_messages() -> None:
    """With both columns, ShareGPT is picked (messages reads rows without it) unless `format=` forces messages."""
    assert detect_format(["messages", "conversations"]) == FormatSpec("sharegpt", ("conversations",), (MESSAGES,))
    assert detect_format(["messages", "conversations"], format="messages") == MESSAGES


def test_detect_alpaca_with_and_without_input() -> None:
    """Alpaca is instruction/output, with the input column only when the dataset has one."""
    assert detect_format(["instruction", "input", "output"]) == FormatSpec("alpaca", ("instruction", "input", "output"))
    assert detect_format(["output", "instruction", "text"]) == FormatSpec("alpaca", ("instruction", "output"))


@pytest.mark.parametrize("pair", PROMPT_RESPONSE_PAIRS, ids=lambda p: "/".join(p))
def test_detect_every_prompt_response_pair(pair: tuple[str, str]) -> None:
    """Every known prompt/response pair is detected, prompt first, and reads as one user and one
    assistant turn."""
    prompt, response = pair
    spec = detect_format(["id", response, prompt])
    assert spec == FormatSpec("prompt_response", (prompt, response))
    assert row_turns({"id": 1, prompt: "Q?", response: "A."}, spec) == [
        Turn("user", "Q?"),
        Turn("assistant", "A."),
    ]


def test_detect_prompt_response_pairs_in_declared_order() -> None:
    """When several pairs fit, the first of PROMPT_RESPONSE_PAIRS wins."""
    assert detect_format(["question", "answer", "prompt", "response"]) == FormatSpec(
        "prompt_response", ("prompt", "response")
    )
    assert detect_format(["completion", "prompt", "answer", "question"]) == FormatSpec(
        "prompt_response", ("prompt", "completion")
    )


def test_alpaca_wins_over_input_output_pair() -> None:
    """instruction/input/output is Alpaca, not the input/output pair; forcing the pair still works."""
    assert detect_format(["instruction", "input", "output"]).name == "alpaca"
    assert detect_format(["instruction", "input", "output"], format="prompt_response") == FormatSpec(
        "prompt_response", ("input", "output")
    )


def test_forced_format_and_columns() -> None:
    """`format=` with `columns=` reads any column names, in the order given."""
    spec = detect_format(["q", "a", "id"], format="prompt_response", columns=["q", "a"])
    assert spec == FormatSpec("prompt_response", ("q", "a"))
    assert row_turns({"q": "Why?", "a": "Because.", "id": 0}, spec) == [
        Turn("user", "Why?"),
        Turn("assistant", "Because."),
    ]
    spec = detect_format(["chat"], format="sharegpt", columns=["chat"])
    assert row_turns({"chat": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]}, spec) == [
        Turn("user", "x"),
        Turn("assistant", "y"),
    ]
    spec = detect_format(["task", "ctx", "out"], format="alpaca", columns=("task", "ctx", "out"))
    assert row_turns({"task": "Do", "ctx": "this", "out": "Done"}, spec) == [
        Turn("user", "Do\n\nthis"),
        Turn("assistant", "Done"),
    ]


def test_forced_format_that_does_not_fit_raises() -> None:
    """A forced format the columns do not fit raises FormatError naming the columns seen."""
    with pytest.raises(FormatError, match="prompt") as info:
        detect_format(["prompt", "response"], format="alpaca")
    assert "response" in str(info.value)


def test_columns_without_format_raises() -> None:
    """`columns=` alone is ambiguous and raises FormatError."""
    with pytest.raises(FormatError, match="format="):
        detect_format(["q", "a"], columns=["q", "a"])


def test_missing_forced_columns_raise_naming_them() -> None:
    """Forced columns that do not exist raise FormatError naming the missing ones and those present."""
    with pytest.raises(FormatError) as info:
        detect_format(["q", "answer_text"], format="prompt_response", columns=["q", "a"])
    message = str(info.value)
    assert "'a'" in message and "answer_text" in message


def test_unknown_schema_raises_naming_columns() -> None:
    """A schema that fits no format raises FormatError (an HFSelectError) naming every column seen."""
    with pytest.raises(FormatError) as info:
        detect_format(["text", "label", "meta_source"])
    message = str(info.value)
    assert isinstance(info.value, HFSelectError)
    for name in ("text", "label", "meta_source"):
        assert name in message
    # A lone half of a pair is not a format either.
    with pytest.raises(FormatError, match="'prompt'"):
        detect_format(["prompt"])


def test_forced_columns_must_match_the_format() -> None:
    """The wrong number of forced columns, or an unknown format name, is a FormatError up front, not a
    crash (or a silently ignored column) when rows are read."""
    with pytest.raises(FormatError):
        detect_format(["p", "r", "x"], format="prompt_response", columns=["p", "r", "x"])
    with pytest.raises(FormatError):
        detect_format(["p"], format="prompt_response", columns=["p"])
    with pytest.raises(FormatError):
        detect_format(["a", "b"], format="sharegpt", columns=["a", "b"])
    with pytest.raises(FormatError):
        detect_format(["p", "r"], format="chatml", columns=["p", "r"])  # type: ignore[arg-type]


# --- normalisation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("alias", "role"), sorted(SHAREGPT_ROLES.items()))
def test_every_sharegpt_role_alias(alias: str, role: str) -> None:
    """Each ShareGPT role alias maps to system, user, assistant or tool, case-insensitively."""
    expected = {
        "human": "user",
        "user": "user",
        "gpt": "assistant",
        "assistant": "assistant",
        "chatgpt": "assistant",
        "bing": "assistant",
        "bard": "assistant",
        "system": "system",
        "tool": "tool",
        "observation": "tool",
    }
    assert set(SHAREGPT_ROLES) == set(expected)
    assert role == expected[alias]
    for spelling in (alias, alias.upper(), alias.capitalize()):
        assert turns_of(sg((spelling, "text"))) == [Turn(expected[alias], "text")]  # type: ignore[arg-type]


def test_sharegpt_multi_turn_with_system() -> None:
    """A ShareGPT conversation keeps every turn, in order, with normalised roles."""
    row = sg(("system", "Be brief."), ("human", "q1"), ("gpt", "a1"), ("user", "q2"), ("chatgpt", "a2"))
    assert turns_of(row) == [
        Turn("system", "Be brief."),
        Turn("user", "q1"),
        Turn("assistant", "a1"),
        Turn("user", "q2"),
        Turn("assistant", "a2"),
    ]


def test_messages_roles_and_content_parts() -> None:
    """OpenAI messages: string content, content-part lists (text parts joined), and developer=system."""
    row = {
        "messages": [
            {"role": "developer", "content": "Rules."},
            {"role": "system", "content": [{"type": "text", "text": "More rules."}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "world"}],
            },
            {"role": "assistant", "content": "Hi!"},
        ]
    }
    assert row_turns(row, MESSAGES) == [
        Turn("system", "Rules."),
        Turn("system", "More rules."),
        Turn("user", "Hello, world"),
        Turn("assistant", "Hi!"),
    ]


def test_messages_non_text_content_parts_are_bad_rows() -> None:
    """Content parts that are not all text (an image) or an empty parts list are a RowError."""
    image = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}
    with pytest.raises(RowError, match="non-string text in turn 0 of 'messages'"):
        row_turns(image, MESSAGES)
    empty_parts = {"messages": [{"role": "user", "content": []}, {"role": "assistant", "content": "a"}]}
    with pytest.raises(RowError, match="non-string text"):
        row_turns(empty_parts, MESSAGES)


def test_alpaca_input_handling() -> None:
    """Alpaca: a non-blank input joins the instruction after a blank line; empty, blank or null input
    leaves the instruction alone; without an input column the instruction stands alone."""
    with_input = FormatSpec("alpaca", ("instruction", "input", "output"))
    row = {"instruction": "Translate.", "input": "chat", "output": "cat"}
    assert row_turns(row, with_input) == [Turn("user", "Translate.\n\nchat"), Turn("assistant", "cat")]
    for blank in ("", "  \n", None):
        row = {"instruction": "Say hi.", "input": blank, "output": "Hi"}
        assert row_turns(row, with_input) == [Turn("user", "Say hi."), Turn("assistant", "Hi")]
    no_input = FormatSpec("alpaca", ("instruction", "output"))
    assert row_turns({"instruction": "Say hi.", "output": "Hi"}, no_input) == [
        Turn("user", "Say hi."),
        Turn("assistant", "Hi"),
    ]


def test_to_messages() -> None:
    """Turns become chat-template messages with the normalised roles."""
    assert to_messages([Turn("system", "s"), Turn("user", "u"), Turn("assistant", "a")]) == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
    ]


# --- bad rows --------------------------------------------------------------------------------------

BAD_ROWS: list[tuple[str, FormatSpec, dict[str, Any], str]] = [
    ("empty list", SHAREGPT, {"conversations": []}, "empty conversation in 'conversations'"),
    ("null conversation", SHAREGPT, {"conversations": None}, "empty conversation"),
    ("empty messages", MESSAGES, {"messages": []}, "empty conversation in 'messages'"),
    ("no assistant turn", SHAREGPT, sg(("system", "s"), ("human", "q")), "no assistant turn"),
    (
        "last turn not assistant",
        SHAREGPT,
        sg(("human", "q"), ("gpt", "a"), ("human", "q2")),
        "last turn is not an assistant turn (it is 'user')",
    ),
    ("last turn system", SHAREGPT, sg(("human", "q"), ("gpt", "a"), ("system", "s")), "it is 'system'"),
    ("unknown role", SHAREGPT, sg(("human", "q"), ("robot", "beep")), "unknown role 'robot' in turn 1"),
    ("missing role", SHAREGPT, {"conversations": [{"value": "q"}]}, "unknown role None in turn 0"),
    ("only a tool turn", MESSAGES, {"messages": [{"role": "tool", "content": "{}"}]}, "no assistant turn"),
    ("last turn a tool's", MESSAGES, msgs(("user", "q"), ("assistant", "a"), ("tool", "{}")), "it is 'tool'"),
    ("non-string int", SHAREGPT, sg(("human", 42), ("gpt", "a")), "turn 0 of 'conversations': int"),
    ("non-string null", SHAREGPT, sg(("human", "q"), ("gpt", None)), "non-string text in turn 1 .*NoneType"),
    ("non-string null content", MESSAGES, {"messages": [{"role": "assistant", "content": None}]}, "NoneType"),
    (
        "alpaca null output",
        FormatSpec("alpaca", ("instruction", "output")),
        {"instruction": "q", "output": None},
        "non-string text in 'output'",
    ),
    (
        "pair int prompt",
        FormatSpec("prompt_response", ("prompt", "response")),
        {"prompt": 1, "response": "r"},
        "non-string text in 'prompt': int",
    ),
    ("empty response", SHAREGPT, sg(("human", "q"), ("gpt", "")), "empty response"),
    ("blank response", SHAREGPT, sg(("human", "q"), ("gpt", " \n\t ")), "empty response"),
    (
        "alpaca empty output",
        FormatSpec("alpaca", ("instruction", "output")),
        {"instruction": "q", "output": ""},
        "empty response",
    ),
    ("not a list (str)", SHAREGPT, {"conversations": "human: hi"}, "is not a list of turns: str"),
    (
        "not a list (dict)",
        SHAREGPT,
        {"conversations": {"from": "human", "value": "q"}},
        "not a list of turns: dict",
    ),
    ("not a list (int)", MESSAGES, {"messages": 3}, "'messages' is not a list of turns: int"),
    ("turn not a mapping", SHAREGPT, {"conversations": ["hi", "there"]}, "turn 0 of 'conversations' is not"),
]


@pytest.mark.parametrize(("spec", "row", "reason"), [r[1:] for r in BAD_ROWS], ids=[r[0] for r in BAD_ROWS])
def test_bad_rows_raise_row_error_with_reason(spec: FormatSpec, row: dict[str, Any], reason: str) -> None:
    """Every kind of bad row is a RowError (not a crash) whose reason says what is wrong."""
    with pytest.raises(RowError) as info:
        scored_unit(row, spec)
    err = info.value
    assert err.index is None
    assert isinstance(err.reason, str) and str(err) == err.reason
    assert re.search(reason if ".*" in reason else re.escape(reason), err.reason), err.reason


def test_row_error_with_index_names_it() -> None:
    """A RowError given an index puts it in the message and keeps the bare reason."""
    err = RowError("empty response", 17)
    assert str(err) == "row 17: empty response"
    assert (err.reason, err.index) == ("empty response", 17)


def test_split_last() -> None:
    """history = every turn but the last; response = the last (assistant) turn's text, even when earlier
    assistant turns are empty or the conversation starts with the assistant."""
    turns = [
        Turn("system", "s"),
        Turn("user", "q1"),
        Turn("assistant", ""),
        Turn("user", "q2"),
        Turn("assistant", "a2"),
    ]
    assert split_last(turns) == (turns[:-1], "a2")
    assert split_last([Turn("assistant", "only")]) == ([], "only")
    assert split_last([Turn("assistant", "a0"), Turn("user", "q"), Turn("assistant", "a")]) == (
        [Turn("assistant", "a0"), Turn("user", "q")],
        "a",
    )


def test_batch_turns_keeps_errors_in_place() -> None:
    """A batch normalises row by row; a bad row yields its RowError at its own position."""
    batch = {
        "conversations": [
            [{"from": "human", "value": "q0"}, {"from": "gpt", "value": "a0"}],
            [],
            [{"from": "alien", "value": "?"}],
            [{"from": "human", "value": "q3"}, {"from": "gpt", "value": "a3"}],
        ],
        "id": [0, 1, 2, 3],
    }
    out = batch_turns(batch, SHAREGPT)
    assert len(out) == 4
    assert out[0] == [Turn("user", "q0"), Turn("assistant", "a0")]
    assert isinstance(out[1], RowError) and "empty conversation" in out[1].reason
    assert isinstance(out[2], RowError) and "unknown role 'alien'" in out[2].reason
    assert out[3] == [Turn("user", "q3"), Turn("assistant", "a3")]
    assert batch_turns({"conversations": [], "id": []}, SHAREGPT) == []


# --- the paper template ------------------------------------------------------------------------------


def test_render_paper_single_turn() -> None:
    """Single turn: `Human: q\\nAssistant: `."""
    history, response = scored_unit(sg(("human", "What is 2+2?"), ("gpt", "4")))
    assert render_paper_prompt(history) == "Human: What is 2+2?\nAssistant: "
    assert response == "4"


def test_render_paper_multi_turn() -> None:
    """Multi turn: every earlier exchange, then the last question and an open `Assistant: `."""
    history, response = scored_unit(
        sg(("human", "q1"), ("gpt", "a1"), ("human", "q2"), ("gpt", "a2"), ("human", "q3"), ("gpt", "a3"))
    )
    assert render_paper_prompt(history) == "Human: q1\nAssistant: a1\nHuman: q2\nAssistant: a2\nHuman: q3\nAssistant: "
    assert response == "a3"


def test_render_paper_system_turn() -> None:
    """A system turn is written bare, followed by a newline, before the first `Human: `."""
    history, response = scored_unit(
        sg(("system", "You are terse."), ("human", "q1"), ("gpt", "a1"), ("human", "q2"), ("gpt", "a2"))
    )
    assert render_paper_prompt(history) == "You are terse.\nHuman: q1\nAssistant: a1\nHuman: q2\nAssistant: "
    assert response == "a2"


def test_render_paper_keeps_text_verbatim() -> None:
    """Multi-line, unicode and whitespace-padded text is copied verbatim, never stripped."""
    history, _ = scored_unit(sg(("human", "  Line 1\nLine 2 — café 👋🏽\n"), ("gpt", "ok")))
    assert render_paper_prompt(history) == "Human:   Line 1\nLine 2 — café 👋🏽\n\nAssistant: "


def test_render_paper_empty_history() -> None:
    """With no history the prompt is the bare assistant header."""
    assert render_paper_prompt([]) == "Assistant: "


def test_render_paper_from_every_format_is_identical() -> None:
    """The same single-turn exchange renders the same prompt from all four formats."""
    rows = [
        (SHAREGPT, sg(("human", "Name a colour."), ("gpt", "Blue."))),
        (
            MESSAGES,
            {
                "messages": [
                    {"role": "user", "content": "Name a colour."},
                    {"role": "assistant", "content": "Blue."},
                ]
            },
        ),
        (
            FormatSpec("alpaca", ("instruction", "input", "output")),
            {"instruction": "Name a colour.", "input": "", "output": "Blue."},
        ),
        (
            FormatSpec("prompt_response", ("prompt", "response")),
            {"prompt": "Name a colour.", "response": "Blue."},
        ),
    ]
    for spec, row in rows:
        history, response = scored_unit(row, spec)
        assert (render_paper_prompt(history), response) == ("Human: Name a colour.\nAssistant: ", "Blue.")


# --- assistant_splits (turns="all") ------------------------------------------------------------------


def test_assistant_splits_one_pair_per_assistant_turn() -> None:
    """Every non-empty assistant turn is a (history, response) pair with everything before it as history."""
    turns = turns_of(sg(("system", "s"), ("human", "q1"), ("gpt", "a1"), ("human", "q2"), ("gpt", "a2")))
    assert assistant_splits(turns) == [
        ([Turn("system", "s"), Turn("user", "q1")], "a1"),
        ([Turn("system", "s"), Turn("user", "q1"), Turn("assistant", "a1"), Turn("user", "q2")], "a2"),
    ]
    rendered = [render_paper_prompt(h) for h, _ in assistant_splits(turns)]
    assert rendered == ["s\nHuman: q1\nAssistant: ", "s\nHuman: q1\nAssistant: a1\nHuman: q2\nAssistant: "]


def test_assistant_splits_skips_empty_assistant_turns() -> None:
    """An empty earlier assistant turn is not a unit, but stays in the later units' history."""
    turns = turns_of(sg(("human", "q1"), ("gpt", "  "), ("human", "q2"), ("gpt", "a2")))
    assert assistant_splits(turns) == [
        ([Turn("user", "q1"), Turn("assistant", "  "), Turn("user", "q2")], "a2"),
    ]


def test_assistant_splits_last_split_equals_split_last() -> None:
    """The last pair of `turns="all"` is the default `turns="last"` unit."""
    turns = turns_of(sg(("human", "q1"), ("gpt", "a1"), ("human", "q2"), ("bard", "a2")))
    assert assistant_splits(turns)[-1] == split_last(turns)


@pytest.mark.parametrize(
    "row",
    [
        sg(("human", "q1"), ("gpt", "a1"), ("human", "q2")),
        sg(("human", "q1")),
        sg(("human", "q1"), ("gpt", "a1"), ("human", "q2"), ("gpt", "")),
    ],
    ids=["last not assistant", "no assistant", "empty last response"],
)
def test_assistant_splits_same_validity_as_split_last(row: dict[str, Any]) -> None:
    """`turns="all"` rejects the rows the default unit rejects, even if an earlier turn could be scored."""
    with pytest.raises(RowError):
        assistant_splits(turns_of(row))
    with pytest.raises(RowError):
        assistant_splits([])


# --- issue #10: mixed files, tool turns, TRL-ready messages ----------------------------------------


def _mixed_file(tmp_path: Path) -> Path:
    rows = [
        sg(("human", "q0"), ("gpt", "a0")),
        msgs(("system", "s"), ("user", "q1"), ("assistant", "a1")),
        {"instruction": "q2", "input": "ctx", "output": "a2"},
        {"id": 3},  # no conversation at all
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_file_mixing_formats_is_read_row_by_row(tmp_path: Path) -> None:
    """ShareGPT, messages and Alpaca rows in one JSONL file: each row is read in its own format. Before,
    every non-ShareGPT row failed with the misleading "empty conversation in 'conversations'"."""
    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(_mixed_file(tmp_path)), split="train")
    spec = detect_format(ds.column_names)
    assert spec.describe() == (
        "sharegpt (conversations), else messages (messages), else alpaca (instruction, input, output)"
    )
    out = batch_turns(ds[:], spec)
    assert out[:3] == [
        [Turn("user", "q0"), Turn("assistant", "a0")],
        [Turn("system", "s"), Turn("user", "q1"), Turn("assistant", "a1")],
        [Turn("user", "q2\n\nctx"), Turn("assistant", "a2")],
    ]
    assert isinstance(out[3], RowError)
    assert out[3].reason == (
        "no conversation in this row: 'conversations', 'messages', 'instruction', 'input', 'output' are all empty"
    )


def test_a_forced_format_reads_only_its_columns() -> None:
    spec = detect_format(["conversations", "messages"], format="sharegpt")
    assert spec.fallbacks == ()
    with pytest.raises(RowError, match="empty conversation in 'conversations'"):
        row_turns({"conversations": None, **msgs(("user", "q"), ("assistant", "a"))}, spec)


def test_tool_turns_are_context() -> None:
    """`role: "tool"` (and Llama 3's `ipython`, ShareGPT's `observation`) is a turn of the history, not an
    unknown-role error; the last turn must still be the assistant's."""
    row = msgs(
        ("user", "weather?"), ("assistant", "calling"), ("tool", '{"t": 21}'), ("ipython", "ok"), ("assistant", "21")
    )
    history, response = scored_unit(row, MESSAGES)
    assert [t.role for t in history] == ["user", "assistant", "tool", "tool"] and response == "21"
    assert render_paper_prompt(history[2:3]) == 'Tool: {"t": 21}\nAssistant: '
    assert turns_of(sg(("human", "q"), ("observation", "42"), ("gpt", "a")))[1] == Turn("tool", "42")


def test_openai_tool_calls_with_null_content_are_read_from_arrow(tmp_path: Path) -> None:
    """An OpenAI assistant turn that only calls a tool has `content: None` and a `tool_calls` list; read back
    from a JSONL file through Arrow (which adds `tool_calls: None` to every other turn), the call becomes the
    turn's text, one JSON object per call, with `arguments` parsed from their JSON string. Before, such rows
    failed with "non-string text"."""
    from datasets import load_dataset

    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    rows = [
        {"messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "content": '{"t": 3}'},
            {"role": "assistant", "content": "3 degrees."},
        ]},
        {"messages": [
            {"role": "user", "content": "Call it."},
            {"role": "assistant", "content": "Sure.", "tool_calls": [call, call]},
        ]},
    ]  # fmt: skip
    path = tmp_path / "tools.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_dataset("json", data_files=str(path), split="train")
    spec = detect_format(ds.column_names)
    first = row_turns(ds[0], spec)
    assert first[1] == Turn("assistant", '{"name": "weather", "arguments": {"city": "Oslo"}}')
    assert first[3] == Turn("assistant", "3 degrees.")
    history, response = scored_unit(ds[1], spec)
    line = '{"name": "weather", "arguments": {"city": "Oslo"}}'
    assert response == f"Sure.\n{line}\n{line}"
    bad = msgs(("user", "q"))
    bad["messages"].append({"role": "assistant", "content": None, "tool_calls": [{"function": {"arguments": "{}"}}]})
    with pytest.raises(RowError, match="a tool call of turn 1 of 'messages' has no function name"):
        row_turns(bad, MESSAGES)


def test_as_messages_writes_every_format_as_trl_messages(tmp_path: Path, tiny_tokenizer: str) -> None:
    """An Alpaca subset (or any format, here a mixed file) becomes a `messages` column of {role, content}
    that TRL-style code consumes: `tokenizer.apply_chat_template(row["messages"])` with the tiny tokenizer.
    Before, an Alpaca subset had no `messages` and TRL failed with KeyError: 'text'."""
    from datasets import Dataset, load_dataset
    from transformers import AutoTokenizer

    from hf_select.conversation import as_messages

    alpaca = Dataset.from_dict(
        {"instruction": ["Add 2 and 2.", "Name a colour."], "input": ["", "not red"], "output": ["4", "Blue."],
         "n_tokens": [5.0, 7.0]}
    )  # fmt: skip
    out = as_messages(alpaca)
    assert out.column_names == ["n_tokens", "messages"] and out["n_tokens"] == [5.0, 7.0]
    assert out[1]["messages"] == [
        {"role": "user", "content": "Name a colour.\n\nnot red"},
        {"role": "assistant", "content": "Blue."},
    ]
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer)
    text = tokenizer.apply_chat_template(out[0]["messages"], tokenize=False)
    assert text == "<|im_start|>user\nAdd 2 and 2.<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
    ids = tokenizer.apply_chat_template(out[1]["messages"], tokenize=True)
    assert len(ids) > 0

    mixed = load_dataset("json", data_files=str(_mixed_file(tmp_path)), split="train").select(range(3))
    assert [len(m) for m in as_messages(mixed)["messages"]] == [2, 3, 2]
    with pytest.raises(HFSelectError, match=r"row 3 cannot be written as messages: no conversation"):
        as_messages(load_dataset("json", data_files=str(_mixed_file(tmp_path)), split="train"))


def test_save_selection_writes_an_alpaca_subset_as_messages(tmp_path: Path, tiny_tokenizer: str) -> None:
    """`save_selection(..., output_format="messages")`: the selection folder's data/ is TRL-ready."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from hf_select import select
    from hf_select.save import load_selection_folder, save_selection

    pool = Dataset.from_dict(
        {"instruction": [f"task {i}" for i in range(6)], "output": ["done " * (i + 1) for i in range(6)],
         "n_tokens": [float(i) for i in range(6)]}
    )  # fmt: skip
    sel = select.top_k(pool, "n_tokens", 2)
    save_selection(sel.dataset, tmp_path / "sel", sel.record, pool=pool, output_format="messages")
    data = load_selection_folder(tmp_path / "sel")
    assert data.column_names == ["n_tokens", "messages"]
    assert [m[0]["content"] for m in data["messages"]] == ["task 4", "task 5"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer)
    assert all(tokenizer.apply_chat_template(row["messages"], tokenize=True) for row in data)
    with pytest.raises(HFSelectError, match="unknown output format 'chatml'"):
        save_selection(sel.dataset, tmp_path / "x", sel.record, output_format="chatml")
