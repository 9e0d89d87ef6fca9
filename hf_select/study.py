"""The study's own scoring text and token spans (`template="study"`), to reproduce its numbers.

The study (Xia et al. 2024, github.com/xiatingyu/SFT-DataSelection-at-scale) scored its pools with
scripts that build a text of their own, different from its fine-tuning template (`template="paper"`).
`template="study"` rebuilds that text and the token ids its scripts fed the model:

- prompt (CE `cross_entropy/entropy_response.py` L86-95, IFD `IFD/cherry_seletion/data_analysis.py`
  L112-121, token length `token_length/compute_token_num.py` L46-56): a user turn renders as
  `"\\nHuman: {q}\\nAssistant: "`, every other turn (system, assistant) as its bare text, and the whole is
  `strip()`-ed: no space after the last `Assistant:`, no header on a system or opening assistant turn;
- CE (`entropy_response.py` L113-126): prompt and response tokenised separately, each with the
  tokenizer's special tokens; the response starts at the count of non-zero prompt ids (`count_nonzero`);
  the prompt is cut at `max_length` and the response at `max_length` minus that count;
- token length (`compute_token_num.py` L61-68): the non-zero ids of the prompt and of the response, each
  tokenised with special tokens;
- IFD with `ifd_response_span="text-search"` (`data_analysis.py` L55-80 and L124-159,
  `data_by_IFD.py` L89-137): the response span found the script's way, by `rfind` in the text and the
  token count of the text before it; in the unconditioned `"Assistant: " + response` the space merges into
  the first response word, so that token is usually left out. Off by default: the exact span is hf-select's;
- SelectIT (`SelectIT/self_reflection/sentence_level.py` L16-36): see `study_rating_text`.

What stays fixed on purpose (NaN and a reason instead of the script's 0, for instance) is listed in the
README's "Reproducing the study" table.

Example:
    >>> from hf_select.conversation import Turn
    >>> render_study_prompt([Turn("system", "Be brief."), Turn("user", "Hi")])
    'Be brief.\\nHuman: Hi\\nAssistant:'
    >>> render_study_prompt([Turn("assistant", "Hello!"), Turn("user", "Hi")])
    'Hello!\\nHuman: Hi\\nAssistant:'
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

from .conversation import Turn, split_last
from .errors import RowError

DIRECT_HEADER = "Assistant: "  # IFD's unconditioned text is this + the response (data_analysis.py L125)
RATING_MAX_TOKENS = 8192  # the SelectIT script cuts each rating text to this many tokens (L32)


def render_study_prompt(history: Sequence[Turn]) -> str:
    """The scripts' prompt: `"\\nHuman: {q}\\nAssistant: "` per user turn, other turns bare, `strip()`-ed."""
    return "".join(f"\nHuman: {t.text}\nAssistant: " if t.role == "user" else t.text for t in history).strip()


def tokenize(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """`tokenizer(text)["input_ids"]` per text, special tokens included, as the scripts call it."""
    return [list(ids) for ids in tokenizer(texts)["input_ids"]] if texts else []


def nonzero(ids: Sequence[int]) -> int:
    """`torch.count_nonzero(ids)`: the scripts' token count, which leaves out id 0 (`!` in Qwen2/Llama-3)."""
    return sum(1 for i in ids if i != 0)


def _split(conversations: Sequence[Any]) -> tuple[list[int], list[tuple[str, str]], list[str | None]]:
    """(indices of usable rows, their (study prompt, response) texts, per-row errors)."""
    errors: list[str | None] = [None] * len(conversations)
    ok, pairs = [], []
    for i, turns in enumerate(conversations):
        try:
            if isinstance(turns, RowError):
                raise turns
            history, response = split_last(turns)
            prompt = render_study_prompt(history)
            if not prompt:
                raise RowError("nothing precedes the response (the study's prompt is empty)")
            pairs.append((prompt, response))
            ok.append(i)
        except RowError as err:
            errors[i] = err.reason
    return ok, pairs, errors


Unit = tuple[list[int], list[tuple[int, int]]]


def per_row(kept: Sequence[int], *columns: Sequence[Any]) -> list:
    """`ce_units` / `ifd_text_search_units`' result, `(kept, units..., errors)`, as one entry per row for a
    scorer's `encode`: the row's unit (a tuple of its units where there are several per row) or a `RowError`.

    Example:
        >>> per_row([1], ["u"], ["bad row", None])
        [RowError('bad row'), 'u']
        >>> per_row([0], ["cond"], ["direct"], [None])
        [('cond', 'direct')]
    """
    *units, errors = columns
    out: list[Any] = [RowError(reason or "not scored") for reason in errors]
    for k, i in enumerate(kept):
        out[i] = tuple(u[k] for u in units) if len(units) > 1 else units[0][k]
    return out


def ce_units(tokenizer: Any, conversations: Sequence[Any], max_length: int) -> tuple[list[int], list[Unit], list]:
    """The CE script's ids and target span per row (`entropy_response.py` L113-126).

    Its row with a prompt of `max_length` tokens or more scored 0; here it gets a reason instead."""
    ok, pairs, errors = _split(conversations)
    prompts = tokenize(tokenizer, [p for p, _ in pairs])
    responses = tokenize(tokenizer, [r for _, r in pairs])
    kept, units = [], []
    for i, prompt, response in zip(ok, prompts, responses, strict=True):
        prompt = prompt[:max_length]  # truncation=True, max_length=4096 (leading special tokens kept)
        index = nonzero(prompt)
        if index >= max_length:
            errors[i] = f"the prompt alone ({index} tokens) reaches max_length ({max_length})"
            continue
        ids = prompt + response[: max_length - index]
        if len(ids) <= index:
            errors[i] = "the response has no tokens"
            continue
        kept.append(i)
        units.append((ids, [(index, len(ids))]))
    return kept, units, errors


def _searched(tokenizer: Any, texts: list[str], targets: list[str], limits: list[int]) -> list[Unit]:
    """`get_perplexity_and_embedding_part_text` (data_analysis.py L55-64): ids cut to the limit, target from
    the token count of the text before `text.rfind(target)`, to the end of the cut ids."""
    full = tokenize(tokenizer, texts)
    before = tokenize(tokenizer, [t[: t.rfind(target)] for t, target in zip(texts, targets, strict=True)])
    return [(ids[:limit], [(len(b), len(ids[:limit]))]) for ids, b, limit in zip(full, before, limits, strict=True)]


def ifd_text_search_units(
    tokenizer: Any, conversations: Sequence[Any], max_length: int
) -> tuple[list[int], list[Unit], list[Unit], list]:
    """IFD's conditioned and unconditioned (ids, span) per row, spans found the study's way.

    Conditioned: `prompt + response` (no space between) cut at `max_length`; unconditioned:
    `"Assistant: " + response` cut at `max_length - prompt tokens + 4` (data_by_IFD.py L89-120). The rows
    the script scored 0 for their length get a reason; the spans of the two passes may differ in length."""
    ok, pairs, errors = _split(conversations)
    prompt_len = [min(len(ids), max_length) for ids in tokenize(tokenizer, [p for p, _ in pairs])]
    responses = [r for _, r in pairs]
    cond = _searched(tokenizer, [p + r for p, r in pairs], responses, [max_length] * len(pairs))
    direct = _searched(
        tokenizer, [DIRECT_HEADER + r for r in responses], responses, [max_length - n + 4 for n in prompt_len]
    )
    kept, cond_units, direct_units = [], [], []
    for i, n, c, d in zip(ok, prompt_len, cond, direct, strict=True):
        n_cond, n_direct = c[1][0][1] - c[1][0][0], d[1][0][1] - d[1][0][0]
        if max_length - n <= 0:
            errors[i] = f"the prompt alone ({n} tokens) reaches max_length ({max_length})"
        elif n_cond <= 0 or n_direct <= 0:
            errors[i] = "the text-searched response span has no tokens"
        elif n + n_direct > max_length:
            errors[i] = f"prompt ({n}) + unconditioned response ({n_direct}) tokens exceed max_length ({max_length})"
        else:
            kept.append(i)
            cond_units.append(c)
            direct_units.append(d)
    return kept, cond_units, direct_units, errors


@lru_cache(maxsize=1)
def selectit_prompts() -> tuple[str, ...]:
    """The nine rating prompts of SelectIT's `data/rating_prompt.txt` (the study ships the same file),
    without their line breaks. Both scripts use the first K = 5."""
    text = resources.files("hf_select").joinpath("data/selectit_rating_prompts.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.split("\n") if line)


def study_rating_text(tokenizer: Any, prompt: str, turns: Sequence[Turn]) -> str:
    """The study's SelectIT text (sentence_level.py L16-36): the prompt line (its own line break kept), then per
    pair of turns, taken two by two whatever their roles, `"\\nInstruction: " + turn[i]` and
    `"\\nResponse: " + turn[i+1]`; cut to 8,192 tokens and decoded back (skipping special tokens); then
    `"\\nThe answer is: "`. An odd number of turns made the script fail (IndexError): `RowError`."""
    split_last(turns)  # the same validity rules as every other scorer
    if len(turns) % 2:
        raise RowError(f"the study's SelectIT pairs turns two by two and fails on an odd number ({len(turns)})")
    body = (
        prompt
        + "\n"
        + "".join(f"\nInstruction: {turns[i].text}\nResponse: {turns[i + 1].text}" for i in range(0, len(turns), 2))
    )
    ids = tokenizer(body, truncation=True, max_length=RATING_MAX_TOKENS)["input_ids"]
    return tokenizer.decode(ids, skip_special_tokens=True) + "\nThe answer is: "


def original_rating_text(prompt: str, turns: Sequence[Turn]) -> str:
    """Original SelectIT's text (Blue-Raincoat/SelectIT `self_reflection/sentence_level.py` L12-27): the
    prompt line, `"\\nInstruction:" + turn[0]`, `"\\nResponse:" + turn[1]` (no space after the colons; later
    turns are not read) and `"\\nThe answer is: \\n"`."""
    split_last(turns)
    if len(turns) < 2:
        raise RowError("original SelectIT reads the first two turns; this row has one")
    return f"{prompt}\n\nInstruction:{turns[0].text}\nResponse:{turns[1].text}\nThe answer is: \n"
