"""TokenLengthScorer: exact counts against independent tokenizer calls, bad rows, strict mode, pickling,
hashing and multiprocessing, on a tiny offline tokenizer and on the real embedded SmolLM2 tokenizer."""

from __future__ import annotations

import itertools
import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import Dataset, Value
from datasets.fingerprint import Hasher
from tiny_model import BOS, build_tiny_model, build_tiny_tokenizer
from transformers import AutoTokenizer

from hf_select import FormatError, InputError, RowError, TokenLengthScorer, embedded
from hf_select.encoding import ConversationEncoder, leading_special_ids, resolve_template

COUNT_COLUMNS = ("n_tokens_prompt", "n_tokens_response", "n_tokens")
SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}
# A template that refuses conversations whose roles do not alternate user/assistant (like Llama 2's).
STRICT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)

Turns = list[tuple[str, str]]  # (normalised role, text)


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chat_tok_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny byte-level BPE with a ChatML template and no BOS."""
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny_chat_tok"))


@pytest.fixture(scope="session")
def bos_tok_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny tokenizer without a chat template whose post-processor prepends `<s>`."""
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny_bos_tok"), chat_template=False, add_bos=True)


@pytest.fixture(scope="session")
def strict_tok_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny tokenizer with a chat template that raises on non-alternating roles."""
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny_strict_tok"), chat_template=STRICT_TEMPLATE)


@pytest.fixture(scope="session")
def chat_tok(chat_tok_path: str) -> Any:
    return AutoTokenizer.from_pretrained(chat_tok_path)


@pytest.fixture(scope="session")
def bos_tok(bos_tok_path: str) -> Any:
    return AutoTokenizer.from_pretrained(bos_tok_path)


@pytest.fixture(scope="session")
def smollm2_tok() -> Any:
    """The real SmolLM2-135M-Instruct tokenizer, unpacked once into the default hf_select cache."""
    return AutoTokenizer.from_pretrained(str(embedded.smollm2_path()))


# --- independent computations --------------------------------------------------------------------------


def ids(tok: Any, text: str) -> list[int]:
    """Token ids of text through the transformers call (not the backend), no special tokens."""
    return tok(text, add_special_tokens=False).input_ids


def paper_counts(tok: Any, prompt_text: str, response: str, bos: list[int]) -> tuple[int, int]:
    """Paper template: BOS (if the tokenizer adds one) + prompt text; the raw response text."""
    return len(bos) + len(ids(tok, prompt_text)), len(ids(tok, response))


def paper_prompt(history: Turns) -> str:
    """The study's prompt, written out independently of hf_select."""
    header = {"system": "", "user": "Human: ", "assistant": "Assistant: "}
    return "".join(header[role] + text + "\n" for role, text in history) + "Assistant: "


def messages(turns: Turns) -> list[dict[str, str]]:
    return [{"role": role, "content": text} for role, text in turns]


def chat_counts(tok: Any, turns: Turns) -> tuple[int, int]:
    """Chat template: the rendered history with the generation prompt, then the rest of the full rendering."""
    prompt = tok.apply_chat_template(messages(turns[:-1]), add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template(messages(turns), tokenize=False)
    assert full.startswith(prompt)
    return len(ids(tok, prompt)), len(ids(tok, full[len(prompt) :]))


def sharegpt(turns: Turns) -> list[dict[str, str]]:
    return [{"from": SHAREGPT_FROM[role], "value": text} for role, text in turns]


def assert_counts(row: dict[str, Any], expected: tuple[int, int]) -> None:
    """A good row: exact prompt/response counts, their sum, and an empty error."""
    prompt, response = expected
    got = (row["n_tokens_prompt"], row["n_tokens_response"], row["n_tokens"])
    assert got == (prompt, response, prompt + response), row
    assert row["n_tokens_error"] == ""


def assert_failed(row: dict[str, Any], reason: str) -> None:
    """A bad row: NaN in all three count columns and the reason in `n_tokens_error`."""
    for column in COUNT_COLUMNS:
        assert row[column] is None or math.isnan(row[column]), row
    assert reason in row["n_tokens_error"], row


def score(scorer: TokenLengthScorer, ds: Dataset, **kwargs: Any) -> Dataset:
    return ds.map(scorer, batched=True, **kwargs)


# --- cases ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    turns: Turns
    paper_prompt: str  # written by hand


CASES: dict[str, Case] = {
    "single-turn": Case(
        [("user", "What is the capital of France?"), ("assistant", "The capital of France is Paris.")],
        "Human: What is the capital of France?\nAssistant: ",
    ),
    "multi-turn": Case(
        [
            ("user", "Write a haiku about rain."),
            (
                "assistant",
                "Soft rain on the roof,\nthe gutters hum a low song,\nthe street shines like glass.",
            ),
            ("user", "Now one about snow."),
            (
                "assistant",
                "White hush on the hills,\nfootprints fill before morning,\nthe world holds its breath.",
            ),
        ],
        "Human: Write a haiku about rain.\n"
        "Assistant: Soft rain on the roof,\nthe gutters hum a low song,\nthe street shines like glass.\n"
        "Human: Now one about snow.\nAssistant: ",
    ),
    "system-turn": Case(
        [
            ("system", "You are a concise assistant."),
            ("user", "List three prime numbers."),
            ("assistant", "2, 3 and 5."),
            ("user", "And three more?"),
            ("assistant", "7, 11 and 13."),
        ],
        "You are a concise assistant.\nHuman: List three prime numbers.\nAssistant: 2, 3 and 5.\n"
        "Human: And three more?\nAssistant: ",
    ),
    "unicode-emoji": Case(
        [
            ("user", "Traduis « bonjour » en 日本語 et ajoute un emoji 👋🏽 s'il te plaît."),
            ("assistant", "こんにちは 👋🏽 — «bonjour» ≈ konnichiwa ✨🇫🇷 Übergröße naïve café"),
        ],
        "Human: Traduis « bonjour » en 日本語 et ajoute un emoji 👋🏽 s'il te plaît.\nAssistant: ",
    ),
    "code": Case(
        [
            ("user", "Fix this:\n```python\ndef f(x):\n  return x+1\n```"),
            ("assistant", "```python\ndef f(x: int) -> int:\n    return x + 1\n```\nIndent with 4 spaces.  "),
        ],
        "Human: Fix this:\n```python\ndef f(x):\n  return x+1\n```\nAssistant: ",
    ),
}


def case_dataset(names: list[str]) -> Dataset:
    return Dataset.from_dict(
        {"id": list(range(len(names))), "conversations": [sharegpt(CASES[n].turns) for n in names]}
    )


# --- templates and exact counts ---------------------------------------------------------------------------


def test_tiny_tokenizers_round_trip(chat_tok: Any, bos_tok: Any) -> None:
    """The tiny tokenizers reload with their special tokens, template and BOS behaviour intact."""
    for tok in (chat_tok, bos_tok):
        assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (BOS, "</s>", "<pad>", "<unk>")
        assert 1000 <= len(tok) <= 2000
        assert ids(tok, "<|im_start|>") == [tok.convert_tokens_to_ids("<|im_start|>")]
        assert tok.decode(ids(tok, "café 👋🏽 naïve")) == "café 👋🏽 naïve"
    assert chat_tok.chat_template and not bos_tok.chat_template
    assert chat_tok("hello").input_ids == ids(chat_tok, "hello")
    assert bos_tok("hello").input_ids == [bos_tok.bos_token_id, *ids(bos_tok, "hello")]
    assert leading_special_ids(chat_tok) == []
    assert leading_special_ids(bos_tok) == [bos_tok.bos_token_id]


def test_tiny_model_round_trips(tmp_path: Path, chat_tok_path: str, chat_tok: Any) -> None:
    """The tiny Llama reloads through AutoModelForCausalLM with its tokenizer, has the promised shape,
    and the same seed gives the same weights."""
    import torch
    from transformers import AutoModelForCausalLM

    paths = [build_tiny_model(tmp_path / name, chat_tok_path) for name in ("a", "b")]
    models = [AutoModelForCausalLM.from_pretrained(p) for p in paths]
    config = models[0].config
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("llama", 2, 64)
    assert (config.num_attention_heads, config.vocab_size) == (4, len(chat_tok))
    assert sum(p.numel() for p in models[0].parameters()) < 500_000
    assert AutoTokenizer.from_pretrained(paths[0]).get_vocab() == chat_tok.get_vocab()
    for (name, a), (_, b) in zip(models[0].state_dict().items(), models[1].state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    input_ids = torch.tensor([chat_tok.apply_chat_template(messages(GOOD_A), tokenize=True)["input_ids"]])
    with torch.no_grad():
        logits = models[0](input_ids=input_ids).logits
    assert logits.shape == (1, input_ids.shape[1], len(chat_tok)) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list(CASES))
def test_paper_counts_exact_without_bos(chat_tok_path: str, chat_tok: Any, name: str) -> None:
    """template="paper": prompt = tokens of the hand-written study prompt, response = tokens of the raw
    response text, for a tokenizer that adds no BOS."""
    case = CASES[name]
    assert paper_prompt(case.turns[:-1]) == case.paper_prompt
    out = score(TokenLengthScorer(tokenizer=chat_tok_path, template="paper"), case_dataset([name]))
    assert_counts(out[0], paper_counts(chat_tok, case.paper_prompt, case.turns[-1][1], bos=[]))


@pytest.mark.parametrize("name", list(CASES))
def test_paper_counts_exact_with_bos(bos_tok_path: str, bos_tok: Any, name: str) -> None:
    """A tokenizer whose post-processor adds BOS: the paper prompt count includes that one BOS, and
    `auto` picks paper for a tokenizer without a chat template."""
    case = CASES[name]
    expected = paper_counts(bos_tok, case.paper_prompt, case.turns[-1][1], bos=[bos_tok.bos_token_id])
    for template in ("paper", "auto"):
        out = score(TokenLengthScorer(tokenizer=bos_tok_path, template=template), case_dataset([name]))
        assert_counts(out[0], expected)


@pytest.mark.parametrize("name", list(CASES))
def test_chat_counts_exact(chat_tok_path: str, chat_tok: Any, name: str) -> None:
    """template="chat" (and `auto` with a chat template): prompt = the rendered history with the
    generation prompt, response = the rest of the full rendering, which together are exactly the ids
    `apply_chat_template(tokenize=True)` gives for the whole conversation."""
    case = CASES[name]
    expected = chat_counts(chat_tok, case.turns)
    whole = chat_tok.apply_chat_template(messages(case.turns), tokenize=True)["input_ids"]
    assert sum(expected) == len(whole)
    for template in ("chat", "auto"):
        out = score(TokenLengthScorer(tokenizer=chat_tok_path, template=template), case_dataset([name]))
        assert_counts(out[0], expected)


def test_many_cases_in_one_batch(chat_tok_path: str, chat_tok: Any) -> None:
    """All cases scored together in one batch keep their own counts, in order."""
    names = list(CASES) * 3
    out = score(TokenLengthScorer(tokenizer=chat_tok_path), case_dataset(names))
    assert out["id"] == list(range(len(names)))
    for row, name in zip(out, names, strict=True):
        assert_counts(row, chat_counts(chat_tok, CASES[name].turns))


@pytest.mark.parametrize("template", ["paper", "chat"])
def test_all_four_formats_give_identical_counts(chat_tok_path: str, chat_tok: Any, template: str) -> None:
    """The same exchange as ShareGPT, OpenAI messages, Alpaca and a prompt/response pair gets the same,
    exact counts."""
    case = CASES["unicode-emoji"]
    (_, question), (_, answer) = case.turns
    datasets = {
        "sharegpt": Dataset.from_dict(
            {"conversations": [[{"from": "user", "value": question}, {"from": "chatgpt", "value": answer}]]}
        ),
        "messages": Dataset.from_dict(
            {"messages": [[{"role": "user", "content": question}, {"role": "assistant", "content": answer}]]}
        ),
        "alpaca": Dataset.from_dict({"instruction": [question], "input": [""], "output": [answer]}),
        "alpaca-no-input": Dataset.from_dict({"instruction": [question], "output": [answer]}),
        "prompt_response": Dataset.from_dict({"question": [question], "answer": [answer]}),
    }
    if template == "paper":
        expected = paper_counts(chat_tok, case.paper_prompt, answer, bos=[])
    else:
        expected = chat_counts(chat_tok, case.turns)
    scorer = TokenLengthScorer(tokenizer=chat_tok_path, template=template)
    for ds in datasets.values():
        assert_counts(score(scorer, ds)[0], expected)


def test_alpaca_input_counts_as_part_of_the_prompt(chat_tok_path: str, chat_tok: Any) -> None:
    """An Alpaca input is counted in the prompt, joined to the instruction by a blank line."""
    ds = Dataset.from_dict({"instruction": ["Translate to French."], "input": ["good night"], "output": ["bonne nuit"]})
    out = score(TokenLengthScorer(tokenizer=chat_tok_path, template="paper"), ds)
    prompt = "Human: Translate to French.\n\ngood night\nAssistant: "
    assert_counts(out[0], paper_counts(chat_tok, prompt, "bonne nuit", bos=[]))


def test_forced_columns(chat_tok_path: str, chat_tok: Any) -> None:
    """`format=`/`columns=` read a dataset whose column names no format knows."""
    ds = Dataset.from_dict({"ask": ["What is 2+2?"], "reply": ["4"]})
    with pytest.raises(FormatError, match="ask"):
        score(TokenLengthScorer(tokenizer=chat_tok_path), ds)
    scorer = TokenLengthScorer(
        tokenizer=chat_tok_path, template="paper", format="prompt_response", columns=["ask", "reply"]
    )
    assert scorer.columns == ("ask", "reply")
    assert_counts(score(scorer, ds)[0], paper_counts(chat_tok, "Human: What is 2+2?\nAssistant: ", "4", bos=[]))


def test_auto_template_resolution(chat_tok: Any, bos_tok: Any) -> None:
    """`auto` is chat with a chat template and paper without; paper alone carries the BOS prefix."""
    assert resolve_template(chat_tok, "auto") == "chat"
    assert resolve_template(bos_tok, "auto") == "paper"
    assert resolve_template(chat_tok, "paper") == "paper"
    assert ConversationEncoder(chat_tok, "auto").prefix_ids == []
    assert ConversationEncoder(bos_tok, "auto").prefix_ids == [bos_tok.bos_token_id]
    with pytest.raises(InputError, match="unknown template"):
        resolve_template(chat_tok, "chatml")  # type: ignore[arg-type]


def test_chat_template_required_for_chat(bos_tok: Any, bos_tok_path: str) -> None:
    """template="chat" with a tokenizer that has no chat template raises InputError, directly and in map."""
    with pytest.raises(InputError, match="no chat template"):
        resolve_template(bos_tok, "chat")
    scorer = TokenLengthScorer(tokenizer=bos_tok_path, template="chat")
    with pytest.raises(InputError, match="no chat template"):
        scorer({"prompt": ["q"], "response": ["a"]})
    with pytest.raises(InputError, match="no chat template"):
        score(scorer, Dataset.from_dict({"prompt": ["q"], "response": ["a"]}))


def test_unknown_schema_raises_format_error(chat_tok_path: str) -> None:
    """A dataset with no conversation columns fails at once, naming its columns."""
    with pytest.raises(FormatError, match="body"):
        score(TokenLengthScorer(tokenizer=chat_tok_path), Dataset.from_dict({"body": ["x"], "label": [1]}))


# --- bad rows --------------------------------------------------------------------------------------------

GOOD_A = CASES["single-turn"].turns
GOOD_B = CASES["system-turn"].turns
GOOD_C = CASES["unicode-emoji"].turns
# (ShareGPT conversation or None, expected turns if good, else the expected reason)
MIXED_ROWS: list[tuple[list[dict[str, Any]] | None, Turns | str]] = [
    (sharegpt(GOOD_A), GOOD_A),
    ([], "empty conversation"),
    (sharegpt(GOOD_B), GOOD_B),
    ([{"from": "human", "value": "Hello?"}], "no assistant turn"),
    (sharegpt(GOOD_C), GOOD_C),
    (sharegpt(GOOD_A) + [{"from": "human", "value": "more"}], "last turn is not an assistant turn"),
    ([{"from": "human", "value": "q"}, {"from": "wizard", "value": "a"}], "unknown role 'wizard'"),
    (sharegpt(GOOD_B), GOOD_B),
    ([{"from": "human", "value": None}, {"from": "gpt", "value": "a"}], "non-string text"),
    ([{"from": "human", "value": "q"}, {"from": "gpt", "value": "   "}], "empty response"),
    (None, "empty conversation"),
    (sharegpt(GOOD_C), GOOD_C),
]


def mixed_dataset(repeat: int = 1) -> Dataset:
    rows = [conv for conv, _ in MIXED_ROWS] * repeat
    return Dataset.from_dict({"id": list(range(len(rows))), "conversations": rows})


def check_mixed(out: Dataset, tok: Any, template: str, repeat: int = 1) -> None:
    """Every row in place: good rows have their own exact counts, bad rows NaN plus their reason."""
    expectations = [want for _, want in MIXED_ROWS] * repeat
    assert len(out) == len(expectations)
    assert out["id"] == list(range(len(expectations)))
    for row, want in zip(out, expectations, strict=True):
        if isinstance(want, str):
            assert_failed(row, want)
        elif template == "paper":
            assert_counts(row, paper_counts(tok, paper_prompt(want[:-1]), want[-1][1], bos=[]))
        else:
            assert_counts(row, chat_counts(tok, want))


@pytest.mark.parametrize("batch_size", [1000, 3, 1])
@pytest.mark.parametrize("template", ["paper", "chat"])
def test_bad_rows_get_nan_and_reason_without_shifting(
    chat_tok_path: str, chat_tok: Any, template: str, batch_size: int
) -> None:
    """Bad rows inside a batch get NaN counts and a reason; the rows around them keep their own exact
    counts; nothing is dropped, reordered or shifted, whatever the batch boundaries."""
    out = score(TokenLengthScorer(tokenizer=chat_tok_path, template=template), mixed_dataset(), batch_size=batch_size)
    check_mixed(out, chat_tok, template)
    assert out.features["n_tokens"] == Value("float64")
    assert out.features["n_tokens_error"] == Value("string")


def test_bad_python_values_in_a_direct_call(chat_tok_path: str, chat_tok: Any) -> None:
    """Called directly on a batch of raw Python values (as another engine would), each bad kind gets its
    reason and NaN, and the output arrays have fixed dtypes."""
    good = sharegpt(GOOD_A)
    batch = {
        "conversations": [
            good,
            "not a list",
            [{"from": "human", "value": 7}, {"from": "gpt", "value": "a"}],
            ["a bare string turn"],
            {"from": "human", "value": "a dict, not a list"},
            good,
        ]
    }
    out = TokenLengthScorer(tokenizer=chat_tok_path, template="paper")(batch)
    assert set(out) == {*COUNT_COLUMNS, "n_tokens_error"}
    for column in COUNT_COLUMNS:
        assert out[column].dtype == np.float64 and out[column].shape == (6,)
    rows = [{k: v[i] for k, v in out.items()} for i in range(6)]
    expected = paper_counts(chat_tok, CASES["single-turn"].paper_prompt, GOOD_A[-1][1], bos=[])
    assert_counts(rows[0], expected)
    assert_failed(rows[1], "not a list of turns: str")
    assert_failed(rows[2], "non-string text in turn 0 of 'conversations': int")
    assert_failed(rows[3], "turn 0 of 'conversations' is not a mapping")
    assert_failed(rows[4], "not a list of turns: dict")
    assert_counts(rows[5], expected)


def test_first_batch_entirely_bad(chat_tok_path: str, chat_tok: Any) -> None:
    """A dataset whose first map batch is all bad rows still maps, with float64 counts and string errors."""
    rows: list[tuple[list[dict[str, Any]], Turns | str]] = [
        ([], "empty conversation"),
        ([{"from": "human", "value": "q"}], "no assistant turn"),
        (sharegpt(GOOD_A), GOOD_A),
        (sharegpt(GOOD_C), GOOD_C),
        ([{"from": "gpt", "value": ""}], "empty response"),
    ]
    ds = Dataset.from_dict({"conversations": [conv for conv, _ in rows]})
    for scorer_map in (
        lambda s: score(s, ds, batch_size=2),
        lambda s: s.map(ds, batch_size=2),
    ):
        out = scorer_map(TokenLengthScorer(tokenizer=chat_tok_path))
        for column in COUNT_COLUMNS:
            assert out.features[column] == Value("float64")
        assert out.features["n_tokens_error"] == Value("string")
        for row, (_, want) in zip(out, rows, strict=True):
            if isinstance(want, str):
                assert_failed(row, want)
            else:
                assert_counts(row, chat_counts(chat_tok, want))


def test_strict_raises_with_dataset_row_index(chat_tok_path: str) -> None:
    """strict=True raises RowError naming the dataset row index (not the index inside the batch) when
    run through `scorer.map`, which passes the indices."""
    ds = mixed_dataset()
    scorer = TokenLengthScorer(tokenizer=chat_tok_path, strict=True)
    with pytest.raises(RowError, match=r"^row 1: empty conversation") as info:
        scorer.map(ds)
    assert info.value.index == 1
    # Rows 0-4 are good; with batch_size=2 the bad row 5 is the second row of the third batch.
    with pytest.raises(RowError, match=r"^row 5: no assistant turn") as info:
        scorer.map(ds.select([0, 2, 4, 7, 11, 3]), batch_size=2)
    assert info.value.index == 5
    with pytest.raises(RowError) as info:
        scorer.map(ds.select(range(6, 12)), batch_size=4)
    assert (info.value.index, info.value.reason) == (0, "unknown role 'wizard' in turn 1 of 'conversations'")


def test_strict_without_indices_names_the_batch_position(chat_tok_path: str) -> None:
    """Under a plain `ds.map(scorer, batched=True)` strict mode still raises, saying where in the batch."""
    scorer = TokenLengthScorer(tokenizer=chat_tok_path, strict=True)
    with pytest.raises(RowError, match=r"empty conversation .*row 1 of this batch"):
        score(scorer, mixed_dataset())


def test_strict_passes_good_rows(chat_tok_path: str, chat_tok: Any) -> None:
    """strict=True changes nothing when every row is good."""
    names = list(CASES)
    out = TokenLengthScorer(tokenizer=chat_tok_path, strict=True).map(case_dataset(names))
    for row, name in zip(out, names, strict=True):
        assert_counts(row, chat_counts(chat_tok, CASES[name].turns))


# --- pickling, hashing, multiprocessing --------------------------------------------------------------


def test_scorer_pickles_small_and_hashes_stably(chat_tok_path: str) -> None:
    """The pickled scorer is only its configuration: small, identical before and after scoring, equal
    for equal configurations and different for a different template."""
    scorer = TokenLengthScorer(tokenizer=chat_tok_path)
    before_pickle, before_hash = pickle.dumps(scorer), Hasher.hash(scorer)
    score(scorer, mixed_dataset())
    scorer({"conversations": [sharegpt(GOOD_A)]})
    after_pickle = pickle.dumps(scorer)
    assert len(after_pickle) < 1024
    assert after_pickle == before_pickle
    assert Hasher.hash(scorer) == before_hash
    assert Hasher.hash(TokenLengthScorer(tokenizer=chat_tok_path)) == before_hash
    assert Hasher.hash(TokenLengthScorer(tokenizer=chat_tok_path, template="auto")) == before_hash
    assert Hasher.hash(TokenLengthScorer(tokenizer=chat_tok_path, template="paper")) != before_hash
    assert Hasher.hash(TokenLengthScorer(tokenizer=chat_tok_path, strict=True)) != before_hash
    restored = pickle.loads(after_pickle)
    assert restored == scorer and restored.config() == scorer.config()
    with_columns = [
        TokenLengthScorer(tokenizer=chat_tok_path, format="prompt_response", columns=cols)
        for cols in (["q", "a"], ("q", "a"))
    ]
    assert Hasher.hash(with_columns[0]) == Hasher.hash(with_columns[1])


def test_map_fingerprint_is_deterministic(chat_tok_path: str) -> None:
    """Two maps with equal scorers produce the same dataset fingerprint (so datasets' cache is reused)."""
    ds = mixed_dataset()
    first = score(TokenLengthScorer(tokenizer=chat_tok_path), ds)
    second = score(TokenLengthScorer(tokenizer=chat_tok_path), ds)
    other = score(TokenLengthScorer(tokenizer=chat_tok_path, template="paper"), ds)
    assert first._fingerprint == second._fingerprint != other._fingerprint


def test_num_proc_2_matches_single_process(chat_tok_path: str, chat_tok: Any) -> None:
    """`ds.map(scorer, batched=True, num_proc=2)` gives exactly the single-process result, row for row."""
    ds = mixed_dataset(repeat=4)  # 48 rows, good and bad mixed
    scorer = TokenLengthScorer(tokenizer=chat_tok_path)
    single = score(scorer, ds, batch_size=5)
    double = score(scorer, ds, batch_size=5, num_proc=2)
    via_map = scorer.map(ds, num_proc=2, batch_size=7)
    check_mixed(single, chat_tok, "chat", repeat=4)
    for other in (double, via_map):
        assert other["id"] == single["id"]
        assert other["n_tokens_error"] == single["n_tokens_error"]
        for column in COUNT_COLUMNS:
            np.testing.assert_array_equal(
                np.array(other[column], dtype=float), np.array(single[column], dtype=float), err_msg=column
            )


# --- chat templates that cannot render a row -------------------------------------------------------------


def test_chat_row_without_history_does_not_crash_the_map(chat_tok_path: str, chat_tok: Any) -> None:
    """A conversation that is a lone assistant turn (ShareGPT has them: continuation fragments) must not
    abort the whole map under the chat template: it is scored or gets NaN and a reason, and its
    neighbours keep their counts. (transformers refuses to render an empty history.)"""
    ds = Dataset.from_dict(
        {
            "conversations": [
                sharegpt(GOOD_A),
                [{"from": "gpt", "value": "continued answer"}],
                sharegpt(GOOD_C),
            ]
        }
    )
    out = score(TokenLengthScorer(tokenizer=chat_tok_path, template="chat"), ds)
    assert_counts(out[0], chat_counts(chat_tok, GOOD_A))
    assert_counts(out[2], chat_counts(chat_tok, GOOD_C))
    lone = out[1]
    assert (lone["n_tokens_error"] != "" and math.isnan(lone["n_tokens"])) or (
        lone["n_tokens_error"] == "" and lone["n_tokens"] > 0
    )


def test_chat_template_exception_is_a_row_error(strict_tok_path: str) -> None:
    """A chat template that raises for one row (roles that do not alternate, as Llama-2/Mistral/Gemma
    templates do) gives that row NaN and a reason instead of aborting the map."""
    tok = AutoTokenizer.from_pretrained(strict_tok_path)
    good: Turns = [("user", "Hi there"), ("assistant", "Hello!")]
    ds = Dataset.from_dict(
        {
            "conversations": [
                sharegpt(good),
                sharegpt([("assistant", "I start."), ("user", "Hi"), ("assistant", "Hello!")]),
                sharegpt(good),
            ]
        }
    )
    out = score(TokenLengthScorer(tokenizer=strict_tok_path), ds)
    assert_counts(out[0], chat_counts(tok, good))
    assert_failed(out[1], "alternate")
    assert_counts(out[2], chat_counts(tok, good))


# --- the real SmolLM2 tokenizer ----------------------------------------------------------------------------

SG_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "system": "system",
}


def well_formed(conversation: list[dict[str, Any]]) -> Turns | None:
    """Turns of a ShareGPT conversation that can be scored with a non-empty history, else None."""
    if not conversation:
        return None
    turns: Turns = []
    for turn in conversation:
        role, text = turn.get("from"), turn.get("value")
        if not isinstance(role, str) or role.lower() not in SG_ROLES or not isinstance(text, str):
            return None
        turns.append((SG_ROLES[role.lower()], text))
    if turns[-1][0] != "assistant" or not turns[-1][1].strip() or len(turns) < 2:
        return None
    return turns


def test_smollm2_exact_counts(smollm2_tok: Any) -> None:
    """The real SmolLM2 tokenizer (`embedded:smollm2`): exact chat and paper counts on real rows."""
    names = ["single-turn", "system-turn", "unicode-emoji", "code"]
    ds = case_dataset(names)
    chat = score(TokenLengthScorer(tokenizer="embedded:smollm2"), ds)
    paper = score(TokenLengthScorer(tokenizer="embedded:smollm2", template="paper"), ds)
    assert leading_special_ids(smollm2_tok) == []  # SmolLM2 adds no BOS
    for i, name in enumerate(names):
        case = CASES[name]
        assert_counts(chat[i], chat_counts(smollm2_tok, case.turns))
        assert_counts(paper[i], paper_counts(smollm2_tok, case.paper_prompt, case.turns[-1][1], bos=[]))


@pytest.fixture(scope="module")
def pool_rows() -> list[dict[str, Any]]:
    """The first 200 conversations of the embedded ShareGPT pool."""
    with open(embedded.sharegpt_path(), encoding="utf-8") as f:
        rows = [json.loads(line) for line in itertools.islice(f, 200)]
    assert len(rows) == 200
    return rows


def test_smollm2_on_sharegpt_pool(pool_rows: list[dict[str, Any]], smollm2_tok: Any) -> None:
    """The default scorer on 200 real ShareGPT rows: the map completes, every well-formed row is scored
    exactly with no error, every malformed one gets NaN and a reason, in the original order."""
    ds = Dataset.from_list(pool_rows)
    out = TokenLengthScorer(tokenizer="embedded:smollm2").map(ds, batch_size=64)
    assert out["id"] == [r["id"] for r in pool_rows]
    n_good = 0
    for row, source in zip(out, pool_rows, strict=True):
        turns = well_formed(source["conversations"])
        if turns is not None:
            assert_counts(row, chat_counts(smollm2_tok, turns))
            n_good += 1
        elif len(source["conversations"]) == 1 and SG_ROLES.get(source["conversations"][0]["from"]) == "assistant":
            pass  # a lone assistant turn: scored or an error, either is fine (see the test above)
        else:
            assert_failed(row, "")
            assert row["n_tokens_error"]
    assert n_good >= 190


def test_smollm2_paper_on_sharegpt_pool(pool_rows: list[dict[str, Any]], smollm2_tok: Any) -> None:
    """The paper template on the same real rows: exact counts for every well-formed row."""
    rows = pool_rows[:60]
    out = TokenLengthScorer(tokenizer="embedded:smollm2", template="paper").map(Dataset.from_list(rows))
    for row, source in zip(out, rows, strict=True):
        turns = well_formed(source["conversations"])
        if turns is not None:
            assert_counts(row, paper_counts(smollm2_tok, paper_prompt(turns[:-1]), turns[-1][1], bos=[]))
