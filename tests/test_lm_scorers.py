"""CE, IFD and SelectIT against naive references written from METHODS.md, on tiny random fp32 models.

The references share no code with hf_select's encoding: they render the paper template by hand, call
`tokenizer.apply_chat_template` directly, tokenise prompt and response separately and concatenate the
ids (METHODS.md's rule for the response span), run the model one row at a time with no padding, take a
float64 `log_softmax` over the full vocabulary and apply the formula. Every scorer must match them to
1e-5 on single-turn, multi-turn, system-turn, unicode and truncated rows, under the chat template and
the paper template (with and without a BOS), for `turns="last"` and `turns="all"`; bad rows in the middle
of a batch give NaN plus a reason and leave their neighbours' values untouched. Scores must not depend on
the input order, `ds.map`'s batch size or the engine's token budget.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from datasets import Dataset
from tiny_model import BOS, CHATML_TEMPLATE, build_tiny_model, build_tiny_tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_select import InputError, RowError
from hf_select.scorers import CrossEntropyScorer, IFDScorer, SelectITScorer
from hf_select.scorers.selectit import RATING_PROMPTS, digit_ids, sentence_score, token_score

TOL = 1e-5  # reference vs scorer, fp32 model
INVARIANCE_TOL = 1e-6  # scorer vs itself under another order / batch size / token budget
MAX_LENGTH = 128
ALPHA = 0.2
DIFFS: dict[str, float] = {}  # largest |scorer - reference| seen per check, printed at module teardown

# --- the rows: good ones interleaved with bad ones ------------------------------------------------------

LONG_RESPONSE = "The sea rolls in with silver light, it hums a song into the night. " * 14
LONG_PROMPT = "Explain gradient descent to a ten-year-old, then summarise the paragraph. " * 12


def conv(*turns: tuple[str, Any]) -> list[dict[str, Any]]:
    return [{"from": role, "value": value} for role, value in turns]


# (name, ShareGPT conversation, reason substring if the row itself is malformed)
ROWS: list[tuple[str, list[dict[str, Any]], str | None]] = [
    ("single", conv(("human", "What is the capital of France?"), ("gpt", "The capital of France is Paris.")), None),
    ("no_assistant", conv(("human", "Hello there, how are you?")), "no assistant turn"),
    (
        "multi",
        conv(
            ("human", "Can you write a short poem about the sea?"),
            ("gpt", "The sea rolls in with silver light."),
            ("human", 'Translate "good morning" into Spanish.'),
            ("gpt", 'Spanish: "buenos días".'),
        ),
        None,
    ),
    (
        "last_user",
        conv(("human", "Hi"), ("gpt", "Hello! How can I help?"), ("human", "Tell me a joke.")),
        "last turn is not an assistant turn",
    ),
    (
        "system",
        conv(
            ("system", "You are a helpful, honest and harmless assistant."),
            ("human", "List three prime numbers greater than 100."),
            ("gpt", "101, 103 and 107 are prime numbers greater than 100."),
        ),
        None,
    ),
    ("empty", [], "empty"),
    (
        "unicode",
        conv(
            ("human", "Traduis « café » en 日本語 😀 ?"), ("gpt", "カフェ — Übergröße, naïve façade 👋🏽 🇫🇷 ∑ π ≈ 3.14")
        ),
        None,
    ),
    ("unknown_role", conv(("narrator", "Once upon a time"), ("gpt", "there was a fox.")), "unknown role"),
    ("truncated", conv(("human", "Write a long poem about the sea."), ("gpt", LONG_RESPONSE)), None),
    ("non_string", conv(("human", "Hi"), ("gpt", None)), "non-string"),
    ("prompt_too_long", conv(("human", LONG_PROMPT), ("gpt", "Sure.")), None),
    (
        "multi_long_first",  # turns="last": the history alone is too long; turns="all": the first answer is cut
        conv(
            ("system", "Be brief."),
            ("human", "Write a long poem about the sea."),
            ("gpt", LONG_RESPONSE),
            ("human", "Thanks!"),
            ("gpt", "You are welcome."),
        ),
        None,
    ),
]
NAMES = [name for name, _, _ in ROWS]
GOOD = {"single", "multi", "system", "unicode", "truncated"}  # scored under every configuration


def dataset(order: list[int] | None = None) -> Dataset:
    order = list(range(len(ROWS))) if order is None else order
    return Dataset.from_dict({"name": [NAMES[i] for i in order], "conversations": [ROWS[i][1] for i in order]})


# --- the configurations: (template, tokenizer, model) ---------------------------------------------------


@dataclass
class Setup:
    name: str
    template: str
    model: str  # folder with the model and its own tokenizer
    tok: Any
    ref_model: Any
    lead: list[int]  # the tokenizer's leading special tokens (paper template only)


@pytest.fixture(scope="module")
def bos_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny Llama paired with the tokenizer without chat template whose post-processor adds `<s>`."""
    tok_path = build_tiny_tokenizer(tmp_path_factory.mktemp("bos-tok"), chat_template=False, add_bos=True)
    return build_tiny_model(tmp_path_factory.mktemp("bos-model"), tok_path)


@pytest.fixture(scope="module")
def chat_bos_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tokenizer that adds `<s>` and whose chat template starts with `{{ bos_token }}` (like Llama 3's)."""
    tok_path = build_tiny_tokenizer(
        tmp_path_factory.mktemp("chat-bos-tok"), chat_template="{{ bos_token }}" + CHATML_TEMPLATE, add_bos=True
    )
    return build_tiny_model(tmp_path_factory.mktemp("chat-bos-model"), tok_path, seed=2)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: str) -> str:
    """A second, smaller tiny Llama (1 layer, hidden 32, seed 1) with the ChatML tokenizer: model-level SelectIT
    weights by parameter count, so the two models must differ in size."""
    path = tmp_path_factory.mktemp("small-model")
    return build_tiny_model(path, tiny_tokenizer, seed=1, hidden=32, layers=1, heads=2)


def _load(path: str) -> Any:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def setups(tiny_model: str, bos_model: str, chat_bos_model: str) -> dict[str, Setup]:
    chat_tok, bos_tok = AutoTokenizer.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(bos_model)
    bos_id = bos_tok.convert_tokens_to_ids(BOS)
    assert chat_tok("a").input_ids == chat_tok("a", add_special_tokens=False).input_ids  # no BOS
    assert bos_tok("a").input_ids == [bos_id, *bos_tok("a", add_special_tokens=False).input_ids]
    assert chat_tok.chat_template and not bos_tok.chat_template
    chat_model, paper_bos_model = _load(tiny_model), _load(bos_model)
    chat_bos_tok = AutoTokenizer.from_pretrained(chat_bos_model)
    assert chat_bos_tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False).startswith(BOS)
    return {
        "chat": Setup("chat", "chat", tiny_model, chat_tok, chat_model, []),
        "paper": Setup("paper", "paper", tiny_model, chat_tok, chat_model, []),
        "paper-bos": Setup("paper-bos", "paper", bos_model, bos_tok, paper_bos_model, [bos_id]),
        "chat-bos": Setup("chat-bos", "chat", chat_bos_model, chat_bos_tok, _load(chat_bos_model), []),
    }


@pytest.fixture(scope="module", autouse=True)
def report_diffs() -> Iterator[None]:
    yield
    if DIFFS:
        print("\nlargest |scorer - reference| per check:")
        for name, diff in sorted(DIFFS.items()):
            print(f"  {name}: {diff:.3g}")


# --- naive references ----------------------------------------------------------------------------------


class TooLong(Exception):
    pass


ROLE = {"system": "system", "human": "user", "gpt": "assistant"}


def reference_turns(conversation: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(role, text) turns of a valid ShareGPT row (the bad rows of ROWS are known in advance)."""
    return [(ROLE[t["from"]], t["value"]) for t in conversation]


def paper_prompt(history: list[tuple[str, str]]) -> str:
    """`[system\\n]Human: q1\\nAssistant: a1\\nHuman: q2\\nAssistant: `, written out by hand."""
    text = ""
    for role, value in history:
        if role == "system":
            text += f"{value}\n"
        elif role == "user":
            text += f"Human: {value}\n"
        else:
            text += f"Assistant: {value}\n"
    return text + "Assistant: "


def messages(turns: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"role": role, "content": text} for role, text in turns]


def split_prompt_response(s: Setup, history: list[tuple[str, str]], response: str) -> tuple[str, str]:
    if s.template == "paper":
        return paper_prompt(history), response
    prompt = s.tok.apply_chat_template(messages(history), tokenize=False, add_generation_prompt=True)
    full = s.tok.apply_chat_template(messages([*history, ("assistant", response)]), tokenize=False)
    assert full.startswith(prompt)
    return prompt, full[len(prompt) :]


def ids(s: Setup, text: str) -> list[int]:
    return s.tok(text, add_special_tokens=False).input_ids


def logprobs(model: Any, sequence: list[int]) -> torch.Tensor:
    """One row, one forward pass, no padding: [len, vocab] float64 log-probabilities over the full vocab."""
    with torch.no_grad():
        logits = model(torch.tensor([sequence], dtype=torch.long)).logits[0]
    return torch.log_softmax(logits.double(), dim=-1)


def reference_sequence(s: Setup, turns: list[tuple[str, str]], which: str) -> tuple[list[int], list[range]]:
    """Token ids and target positions, truncated to MAX_LENGTH keeping the response start."""
    pieces: list[tuple[str, bool]] = []
    if which == "last":
        prompt, response = split_prompt_response(s, turns[:-1], turns[-1][1])
        pieces = [(prompt, False), (response, True)]
    else:  # every assistant turn with something before it, rendered turn by turn
        rendered = ""
        for i, (role, text) in enumerate(turns):
            if role != "assistant" or i == 0:
                continue
            prompt, response = split_prompt_response(s, turns[:i], text)
            assert prompt.startswith(rendered)
            pieces += [(prompt[len(rendered) :], False), (response, True)]
            rendered = prompt + response
    sequence = list(s.lead) if s.template == "paper" else []
    targets = []
    for text, is_target in pieces:
        piece = ids(s, text)
        if is_target:
            targets.append(range(len(sequence), len(sequence) + len(piece)))
        sequence += piece
    if len(sequence) > MAX_LENGTH:
        targets = [range(t.start, min(t.stop, MAX_LENGTH)) for t in targets if t.start < MAX_LENGTH]
        if not targets:
            raise TooLong
        sequence = sequence[:MAX_LENGTH]
    return sequence, targets


def reference_ce(s: Setup, turns: list[tuple[str, str]], which: str, shift: bool = True) -> dict[str, float]:
    sequence, targets = reference_sequence(s, turns, which)
    logp = logprobs(s.ref_model, sequence)
    nll = [-logp[t - 1 if shift else t, sequence[t]].item() for span in targets for t in span]
    ce = sum(nll) / len(nll)
    return {"ce": ce, "ppl": math.exp(ce)}


def assistant_header(s: Setup) -> list[int]:
    if s.template == "paper":
        return [*s.lead, *ids(s, "Assistant: ")]
    probe = [{"role": "user", "content": "x"}]
    with_prompt = s.tok.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    without = s.tok.apply_chat_template(probe, tokenize=False)
    generation_prompt = ids(s, with_prompt[len(without) :])
    # A template that opens every conversation with the BOS opens the unconditioned one with it too, so that
    # both passes start from the same start-of-sequence context (hf_select.encoding.assistant_header's rule).
    if without.startswith(s.tok.bos_token):
        return [s.tok.bos_token_id, *generation_prompt]
    return generation_prompt


def reference_ifd(s: Setup, turns: list[tuple[str, str]], which: str) -> dict[str, float]:
    sequence, targets = reference_sequence(s, turns, which)
    logp = logprobs(s.ref_model, sequence)
    cond = [-logp[t - 1, sequence[t]].item() for span in targets for t in span]
    header = assistant_header(s)
    direct = []
    for span in targets:
        response = [sequence[t] for t in span]
        alone = header + response
        logp_alone = logprobs(s.ref_model, alone)
        direct += [-logp_alone[t - 1, alone[t]].item() for t in range(len(header), len(alone))]
    assert len(direct) == len(cond)
    loss_cond, loss_direct = sum(cond) / len(cond), sum(direct) / len(direct)
    return {"ifd": loss_cond / loss_direct, "ifd_loss_cond": loss_cond, "ifd_loss_direct": loss_direct}


def rating_ids(s: Setup, turns: list[tuple[str, str]], prompt: str) -> list[int]:
    """The rating prompt, the sample in the paper format, then the answer cue (chat: as the assistant's start)."""
    sample = paper_prompt(turns[:-1]) + turns[-1][1]
    if s.template == "paper":
        return [*s.lead, *ids(s, f"{prompt}\n\n{sample}\nThe answer is: ")]
    request = s.tok.apply_chat_template(
        [{"role": "user", "content": f"{prompt}\n\n{sample}"}], tokenize=False, add_generation_prompt=True
    )
    return ids(s, request + "The answer is: ")


def reference_selectit(s: Setup, turns: list[tuple[str, str]], model: Any | None = None) -> float:
    digits = [s.tok.convert_tokens_to_ids(d) for d in "12345"]
    assert all(ids(s, d) == [i] for d, i in zip("12345", digits, strict=True))
    scores = []
    for prompt in RATING_PROMPTS:
        sequence = rating_ids(s, turns, prompt)
        if len(sequence) > MAX_LENGTH:
            raise TooLong
        probs = logprobs(model or s.ref_model, sequence)[-1].exp()  # full-vocabulary softmax at the last position
        p = [probs[d].item() for d in digits]
        p = [x / sum(p) for x in p]
        best = max(range(5), key=lambda j: p[j])
        scores.append((best + 1) * sum(p[best] - p[j] for j in range(5) if j != best) / 4)
    return statistics.fmean(scores) / (1 + ALPHA * statistics.pstdev(scores))


# --- checking ------------------------------------------------------------------------------------------


def expected_rows(reference: Any) -> list[dict[str, float] | str]:
    """Per row of ROWS: the reference's columns, or the reason substring its error must contain."""
    out: list[dict[str, float] | str] = []
    for _, conversation, bad in ROWS:
        if bad is not None:
            out.append(bad)
            continue
        try:
            out.append(reference(reference_turns(conversation)))
        except TooLong:
            out.append("max_length")
    return out


def check(got: Dataset, expected: list[dict[str, float] | str], error_column: str, label: str) -> None:
    assert got["name"] == NAMES, "rows were dropped or reordered"
    worst = 0.0
    for name, want, row in zip(NAMES, expected, got, strict=True):
        if isinstance(want, str):
            assert row[error_column], f"{name}: expected an error containing {want!r}"
            assert want.lower() in row[error_column].lower(), (name, row[error_column])
            for column in got.column_names:
                if column not in ("name", "conversations", error_column):
                    assert math.isnan(row[column]), f"{name}: {column} = {row[column]} despite an error"
            continue
        assert row[error_column] == "", f"{name}: unexpected error {row[error_column]!r}"
        for column, value in want.items():
            diff = abs(row[column] - value)
            worst = max(worst, diff if column != "ppl" else diff / value)
            tolerance = TOL if column != "ppl" else TOL * value  # ppl = exp(ce): relative
            assert diff <= tolerance, f"{name}: {column} = {row[column]!r}, reference {value!r}"
    DIFFS[label] = max(DIFFS.get(label, 0.0), worst)


def scored_names(expected: list[dict[str, float] | str]) -> set[str]:
    return {name for name, want in zip(NAMES, expected, strict=True) if not isinstance(want, str)}


# --- cross-entropy -------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["last", "all"])
@pytest.mark.parametrize("setup_name", ["chat", "paper", "paper-bos", "chat-bos"])
def test_cross_entropy_matches_reference(setups: dict[str, Setup], setup_name: str, which: str) -> None:
    s = setups[setup_name]
    expected = expected_rows(lambda turns: reference_ce(s, turns, which))
    # the test rows exercise what they should: truncation, and the too-long prompt
    assert scored_names(expected) >= GOOD
    assert len(reference_sequence(s, reference_turns(ROWS[NAMES.index("truncated")][1]), which)[0]) == MAX_LENGTH
    assert expected[NAMES.index("prompt_too_long")] == "max_length"
    assert (expected[NAMES.index("multi_long_first")] == "max_length") == (which == "last")
    scorer = CrossEntropyScorer(model=s.model, template=s.template, turns=which, max_length=MAX_LENGTH, dtype="float32")
    check(dataset().map(scorer, batched=True), expected, "ce_error", f"ce/{setup_name}/{which}")


@pytest.mark.parametrize(("setup_name", "which"), [("chat", "last"), ("paper-bos", "all")])
def test_cross_entropy_without_shift_reproduces_the_study(
    setups: dict[str, Setup], setup_name: str, which: str
) -> None:
    s = setups[setup_name]
    expected = expected_rows(lambda turns: reference_ce(s, turns, which, shift=False))
    scorer = CrossEntropyScorer(
        model=s.model, template=s.template, turns=which, max_length=MAX_LENGTH, dtype="float32", shift=False
    )
    check(dataset().map(scorer, batched=True), expected, "ce_error", f"ce-noshift/{setup_name}/{which}")
    shifted = expected_rows(lambda turns: reference_ce(s, turns, which))
    assert abs(expected[0]["ce"] - shifted[0]["ce"]) > 1e-3  # the two definitions really differ


def test_auto_template_is_chat_when_the_tokenizer_has_one(setups: dict[str, Setup]) -> None:
    auto = dataset().map(CrossEntropyScorer(model=setups["chat"].model, max_length=MAX_LENGTH), batched=True)
    chat = expected_rows(lambda turns: reference_ce(setups["chat"], turns, "last"))
    check(auto, chat, "ce_error", "ce/auto-chat")
    auto = dataset().map(CrossEntropyScorer(model=setups["paper-bos"].model, max_length=MAX_LENGTH), batched=True)
    check(auto, expected_rows(lambda turns: reference_ce(setups["paper-bos"], turns, "last")), "ce_error", "ce/auto")


# --- IFD -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["last", "all"])
@pytest.mark.parametrize("setup_name", ["chat", "paper", "paper-bos", "chat-bos"])
def test_ifd_matches_reference(setups: dict[str, Setup], setup_name: str, which: str) -> None:
    s = setups[setup_name]
    expected = expected_rows(lambda turns: reference_ifd(s, turns, which))
    assert scored_names(expected) >= GOOD
    scorer = IFDScorer(model=s.model, template=s.template, turns=which, max_length=MAX_LENGTH, dtype="float32")
    got = dataset().map(scorer, batched=True)
    check(got, expected, "ifd_error", f"ifd/{setup_name}/{which}")
    for row in got:
        if not row["ifd_error"]:
            assert row["ifd"] == pytest.approx(row["ifd_loss_cond"] / row["ifd_loss_direct"], rel=1e-12)


# --- SelectIT ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setup_name", ["chat", "paper", "paper-bos", "chat-bos"])
def test_selectit_matches_reference(setups: dict[str, Setup], setup_name: str) -> None:
    s = setups[setup_name]
    expected = expected_rows(lambda turns: {"selectit": reference_selectit(s, turns)})
    assert scored_names(expected) >= {"single", "system", "unicode"}
    assert expected[NAMES.index("truncated")] == "max_length"  # a rating prompt is never truncated
    scorer = SelectITScorer(model=s.model, template=s.template, max_length=MAX_LENGTH, dtype="float32", alpha=ALPHA)
    check(dataset().map(scorer, batched=True), expected, "selectit_error", f"selectit/{setup_name}")


@pytest.mark.parametrize("weights", [None, (1.0, 3.0)])
@pytest.mark.parametrize("setup_name", ["chat", "paper"])
def test_selectit_model_level(
    setups: dict[str, Setup], small_model: str, setup_name: str, weights: tuple[float, float] | None
) -> None:
    s = setups[setup_name]
    small = _load(small_model)
    sizes = [sum(p.numel() for p in m.parameters()) for m in (s.ref_model, small)]
    assert sizes[0] != sizes[1]
    w = np.array(weights or sizes, dtype=np.float64)
    w /= w.sum()

    def reference(turns: list[tuple[str, str]]) -> dict[str, float]:
        both = [reference_selectit(s, turns, m) for m in (s.ref_model, small)]
        return {"selectit": w[0] * both[0] + w[1] * both[1]}

    expected = expected_rows(reference)
    scorer = SelectITScorer(
        model=s.model,
        template=s.template,
        max_length=MAX_LENGTH,
        dtype="float32",
        extra_models=(small_model,),
        model_weights=weights,
    )
    check(dataset().map(scorer, batched=True), expected, "selectit_error", f"selectit-2models/{setup_name}")


def test_selectit_token_and_sentence_score_by_hand() -> None:
    p = np.array([[0.1, 0.2, 0.4, 0.2, 0.1], [0.2, 0.2, 0.2, 0.2, 0.2], [0.0, 0.0, 0.0, 0.0, 1.0]])
    with np.errstate(divide="ignore"):
        s = token_score(np.log(p) + 7.0)  # any constant offset: the probabilities are renormalised
    np.testing.assert_allclose(s, [3 * (0.3 + 0.2 + 0.2 + 0.3) / 4, 0.0, 5.0], atol=1e-12)
    k = np.array([[1.0, 2.0, 3.0]])
    assert sentence_score(k, 0.2)[0] == pytest.approx(2.0 / (1 + 0.2 * statistics.pstdev([1.0, 2.0, 3.0])))


def _word_level_tokenizer(vocab: list[str], metaspace: bool) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if metaspace:  # SentencePiece-like: "3" becomes "▁3", which is not in the vocabulary: ["▁", "3"]
        backend = Tokenizer(models.BPE({t: i for i, t in enumerate(vocab)}, merges=[], unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    else:  # no digit in the vocabulary: every digit is <unk>
        backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")


def test_digit_ids(setups: dict[str, Setup]) -> None:
    tok = setups["chat"].tok
    assert digit_ids(tok) == [tok.convert_tokens_to_ids(d) for d in "12345"]
    splitting = _word_level_tokenizer(["<unk>", "▁", "1", "2", "3", "4", "5"], metaspace=True)
    assert len(splitting("3", add_special_tokens=False).input_ids) == 2
    with pytest.raises(InputError, match="splits the digit"):
        digit_ids(splitting)
    no_digits = _word_level_tokenizer(["<unk>", "hello", "world"], metaspace=False)
    with pytest.raises(InputError, match="non-distinct"):
        digit_ids(no_digits)


# --- invariance: order, ds.map batch size, token budget ------------------------------------------------


def _scorer(kind: str, model: str, template: str, **kwargs: Any) -> Any:
    common = dict(model=model, template=template, max_length=MAX_LENGTH, dtype="float32", **kwargs)
    if kind == "ce":
        return CrossEntropyScorer(turns="all", **common)
    if kind == "ifd":
        return IFDScorer(**common)
    return SelectITScorer(**common)


SCORE_COLUMNS = {"ce": ("ce", "ppl", "ce_error"), "ifd": ("ifd", "ifd_loss_cond", "ifd_loss_direct", "ifd_error")}


@pytest.mark.parametrize(("kind", "setup_name"), [("ce", "paper-bos"), ("ifd", "chat"), ("selectit", "paper")])
def test_scores_do_not_depend_on_order_batch_size_or_token_budget(
    setups: dict[str, Setup], kind: str, setup_name: str
) -> None:
    s = setups[setup_name]
    columns = SCORE_COLUMNS.get(kind, ("selectit", "selectit_error"))
    base = dataset().map(_scorer(kind, s.model, s.template, batch_tokens=10**6), batched=True)
    variants: list[tuple[str, list[int], int, int]] = []  # (label, order, ds.map batch size, batch_tokens)
    rng = random.Random(0)
    identity = list(range(len(ROWS)))
    shuffles = [rng.sample(identity, len(identity)) for _ in range(2)]
    variants += [(f"shuffle{k}", order, 1000, 10**6) for k, order in enumerate(shuffles)]
    variants += [(f"batch_size={b}", identity, b, 10**6) for b in (1, 2, 7)]
    variants += [("batch_tokens=16", identity, 1000, 16), ("shuffle+bs3+bt16", shuffles[0], 3, 16)]
    worst = 0.0
    for label, order, batch_size, budget in variants:
        scorer = _scorer(kind, s.model, s.template, batch_tokens=budget)
        sizes, handle = _forward_batch_sizes(scorer)
        try:
            got = dataset(order).map(scorer, batched=True, batch_size=batch_size)
        finally:
            handle.remove()
        if budget == 16:  # every scored row is longer than 16 tokens: one row per forward pass
            assert sizes and max(sizes) == 1, (label, sizes)
        assert got["name"] == [NAMES[i] for i in order]
        for k, i in enumerate(order):
            for column in columns:
                a, b = got[k][column], base[i][column]
                if column.endswith("_error"):
                    assert a == b, (label, NAMES[i])
                elif math.isnan(b):
                    assert math.isnan(a), (label, NAMES[i], column)
                else:
                    worst = max(worst, abs(a - b) / (b if column == "ppl" else 1.0))
                    assert a == pytest.approx(b, rel=INVARIANCE_TOL, abs=INVARIANCE_TOL), (label, NAMES[i], column)
    DIFFS[f"invariance/{kind}/{setup_name}"] = worst


def _forward_batch_sizes(scorer: Any) -> tuple[list[int], Any]:
    sizes: list[int] = []
    engine = scorer.resources().engine

    def hook(module: Any, args: Any, kwargs: Any) -> None:
        ids_ = kwargs.get("input_ids", args[0] if args else None)
        sizes.append(int(ids_.shape[0]))

    return sizes, engine.decoder.register_forward_pre_hook(hook, with_kwargs=True)


def test_each_scorer_runs_under_its_own_token_budget(setups: dict[str, Setup]) -> None:
    """A tiny budget forces one row per forward pass, even after another scorer of the same model (with
    another budget) has run in the same process; a huge budget packs rows together."""
    s = setups["chat"]
    tiny = CrossEntropyScorer(model=s.model, template="chat", max_length=MAX_LENGTH, dtype="float32", batch_tokens=16)
    huge = IFDScorer(model=s.model, template="chat", max_length=MAX_LENGTH, dtype="float32", batch_tokens=10**6)
    for step, (scorer, one_row) in enumerate([(tiny, True), (huge, False), (tiny, True)]):
        sizes, handle = _forward_batch_sizes(scorer)
        try:
            dataset().map(scorer, batched=True)
        finally:
            handle.remove()
        assert sizes, "no forward pass was seen"
        if one_row:
            assert max(sizes) == 1, f"step {step}: {type(scorer).__name__}(batch_tokens=16) ran batches of {sizes}"
        else:
            assert max(sizes) > 1, f"step {step}: batch_tokens=10**6 ran one row at a time"


# --- bad rows: strict mode -----------------------------------------------------------------------------


def test_strict_mode_raises_with_the_row_index(setups: dict[str, Setup]) -> None:
    s = setups["chat"]
    scorer = CrossEntropyScorer(model=s.model, template="chat", max_length=MAX_LENGTH, dtype="float32", strict=True)
    with pytest.raises(RowError) as info:
        scorer.map(dataset(), batch_size=1000)
    assert info.value.index == NAMES.index("no_assistant")
    assert "no assistant turn" in str(info.value)


def test_only_bad_rows_give_typed_nan_columns(setups: dict[str, Setup]) -> None:
    """A batch made only of failures still yields float64 NaN columns and the reasons, never a shifted value."""
    s = setups["paper"]
    bad = [i for i, (_, _, reason) in enumerate(ROWS) if reason is not None]
    ds = dataset(bad)
    got = ds.map(IFDScorer(model=s.model, template="paper", max_length=MAX_LENGTH, dtype="float32"), batched=True)
    assert got.features["ifd"].dtype == "float64"
    assert all(math.isnan(v) for v in got["ifd"])
    for i, reason in zip(bad, got["ifd_error"], strict=True):
        assert ROWS[i][2].lower() in reason.lower()


def test_retrained_local_model_changes_the_datasets_fingerprint(tiny_model: str, tmp_path: Path) -> None:
    """A model saved again at the same path must not reuse cached scores of its old weights."""
    import shutil
    import time

    from datasets.fingerprint import Hasher

    model = shutil.copytree(tiny_model, tmp_path / "model")
    before = Hasher.hash(CrossEntropyScorer(model=str(model)))
    assert Hasher.hash(CrossEntropyScorer(model=str(model))) == before  # stable while nothing changes
    time.sleep(0.01)
    weights = next(model.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes())  # retrained in place: same path, new file
    assert Hasher.hash(CrossEntropyScorer(model=str(model))) != before
