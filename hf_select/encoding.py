"""Render conversations with a template and tokenise them into exact prompt and response id spans.

The response span is never found by searching text: the prompt and the response are tokenised
separately and their ids concatenated, so the span is exact by construction (searching the text
shifts it by a token when BPE merges across the boundary).

- `template="paper"`: the study's fine-tuning format, `[system\\n]Human: q\\nAssistant: `; the response
  is the raw response text (no end-of-sequence token, as in the study's scoring code). The tokenizer's leading
  special tokens (a BOS, if it adds one) start the prompt.
- `template="study"`: the text the study's *scoring* scripts built (`hf_select.study`): the paper prompt
  without the space after the last `Assistant:` and with no header on system or assistant turns; token
  counts are the scripts' (special tokens on the response too, id 0 not counted).
- `template="chat"`: the tokenizer's chat template. The prompt is the rendered history with the
  generation prompt; the response is everything the template adds after it (the response and its
  end-of-turn marker), i.e. exactly the tokens an SFT trainer trains on.

Example:
    >>> from transformers import AutoTokenizer
    >>> enc = ConversationEncoder(AutoTokenizer.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct"),
    ...                           template="paper")  # doctest: +SKIP
    >>> enc.render([Turn("user", "Hi")], "Hello!")  # doctest: +SKIP
    ('Human: Hi\\nAssistant: ', 'Hello!')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from .conversation import Turn, render_paper_prompt, to_messages
from .errors import InputError, RowError
from .study import nonzero, render_study_prompt

TemplateName = Literal["auto", "paper", "chat", "study"]
PLAIN_TEMPLATES = ("paper", "study")  # rendered as plain text, after the tokenizer's leading special tokens


def resolve_template(tokenizer: Any, template: TemplateName) -> Literal["paper", "chat", "study"]:
    """`auto` is `chat` when the tokenizer has a chat template, else `paper`."""
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if template == "auto":
        return "chat" if has_chat else "paper"
    if template == "chat" and not has_chat:
        raise InputError("template='chat' but the tokenizer has no chat template; use template='paper'")
    if template not in ("paper", "chat", "study"):
        raise InputError(f"unknown template {template!r}: expected 'auto', 'paper', 'chat' or 'study'")
    return template


def leading_special_ids(tokenizer: Any) -> list[int]:
    """The special ids a tokenizer puts before the text (e.g. `[bos]`), found by comparing encodings."""
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start : start + len(plain)] == plain:
            return list(with_special[:start])
    return []


class ConversationEncoder:
    """Renders (history, response) pairs with one template and tokenises them in batches."""

    def __init__(self, tokenizer: Any, template: TemplateName = "auto") -> None:
        self.tokenizer = tokenizer
        self.template = resolve_template(tokenizer, template)
        self.prefix_ids = leading_special_ids(tokenizer) if self.template in PLAIN_TEMPLATES else []
        self._backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None

    def render(self, history: Sequence[Turn], response: str) -> tuple[str, str]:
        """Prompt text and response text; raises `RowError` if the chat template cannot be split."""
        if self.template == "paper":
            return render_paper_prompt(history), response
        if self.template == "study":
            return render_study_prompt(history), response
        if not history:
            raise RowError("nothing precedes the response, and a chat template cannot render an empty prompt")
        try:
            prompt = self.tokenizer.apply_chat_template(
                to_messages(history), tokenize=False, add_generation_prompt=True
            )
            full = self.tokenizer.apply_chat_template(
                to_messages([*history, Turn("assistant", response)]), tokenize=False
            )
        except Exception as err:  # templates raise their own errors, e.g. on roles that do not alternate
            raise RowError(f"the chat template failed: {type(err).__name__}: {err}") from err
        if not full.startswith(prompt):
            raise RowError("the chat template renders the history differently once the response is appended")
        return prompt, full[len(prompt) :]

    def _ids(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        if self._backend is not None:
            return [e.ids for e in self._backend.encode_batch_fast(texts, add_special_tokens=False)]
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def lengths(self, texts: list[str]) -> list[int]:
        """Token counts of texts, without special tokens, in one batched call."""
        if not texts:
            return []
        if self._backend is not None:
            return [len(e) for e in self._backend.encode_batch_fast(texts, add_special_tokens=False)]
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def count(self, pairs: Sequence[tuple[str, str]]) -> tuple[list[int], list[int]]:
        """(prompt token counts, response token counts) of rendered pairs, prompt counts including
        the leading special tokens. `study`: the scripts' counts (`compute_token_num.py` L61-68): each text
        tokenised with its special tokens, id 0 not counted."""
        n = len(pairs)
        texts = [p for p, _ in pairs] + [r for _, r in pairs]
        if self.template == "study":
            counts = [nonzero(self.prefix_ids + ids) for ids in self._ids(texts)]
            return counts[:n], counts[n:]
        lengths = self.lengths(texts)
        extra = len(self.prefix_ids)
        return [x + extra for x in lengths[:n]], lengths[n:]

    def encode(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        """(prompt ids, response ids) of rendered pairs; the response span is exact by construction."""
        n = len(pairs)
        ids = self._ids([p for p, _ in pairs] + [r for _, r in pairs])
        return [(self.prefix_ids + ids[i], ids[n + i]) for i in range(n)]


Segments = list[tuple[str, bool]]  # (text, is_target) in order
Units = tuple[list[int], list[tuple[int, int]]]  # (ids, target spans)


def render_segments(encoder: ConversationEncoder, turns: Sequence[Turn], which: str) -> Segments:
    """A conversation as alternating context/target text segments.

    `which="last"`: the history, then the last response. `which="all"`: every assistant turn that has
    something before it is a target, in one sequence (how SFT trains on a conversation); rendering turn
    by turn must extend the text rendered so far, else `RowError`.
    """
    from .conversation import split_last

    history, response = split_last(turns)
    if which == "last":
        prompt, target = encoder.render(history, response)
        return [(prompt, False), (target, True)]
    if which != "all":
        raise InputError(f"turns must be 'last' or 'all', got {which!r}")
    if encoder.template == "study":
        raise InputError("template='study' scores the last turn only, as the study's scripts did: use turns='last'")
    segments: Segments = []
    consumed = ""
    for i, turn in enumerate(turns):
        if turn.role != "assistant" or i == 0 or not turn.text.strip():
            continue
        prompt, target = encoder.render(turns[:i], turn.text)
        if not prompt.startswith(consumed):
            raise RowError(f"the template renders turns before turn {i} differently once more turns follow")
        segments += [(prompt[len(consumed) :], False), (target, True)]
        consumed = prompt + target
    return segments


def assistant_header(encoder: ConversationEncoder) -> list[int]:
    """Token ids that open an assistant response with no prompt (IFD's unconditioned context).

    Paper and study: the leading special tokens + `"Assistant: "`. Chat: the template's generation prompt (what
    it appends after a user turn), preceded by the BOS the template starts with, if it does not
    already begin with it.
    """
    tok = encoder.tokenizer
    if encoder.template in PLAIN_TEMPLATES:
        return encoder.prefix_ids + encoder._ids(["Assistant: "])[0]
    probe = [{"role": "user", "content": "x"}]
    with_prompt = tok.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    without = tok.apply_chat_template(probe, tokenize=False)
    if not with_prompt.startswith(without):
        raise InputError("the chat template's generation prompt does not extend the rendered conversation")
    header = encoder._ids([with_prompt[len(without) :]])[0]
    bos = getattr(tok, "bos_token", None)
    bos_id = getattr(tok, "bos_token_id", None)
    if bos and bos_id is not None and without.startswith(bos) and (not header or header[0] != bos_id):
        header = [bos_id, *header]
    return header


def encode_segments(encoder: ConversationEncoder, rows: Sequence[Segments]) -> list[Units]:
    """Tokenise every segment of every row in one batched call; spans are exact by construction."""
    flat = [text for segments in rows for text, _ in segments]
    ids = encoder._ids(flat)
    out: list[Units] = []
    k = 0
    for segments in rows:
        sequence = list(encoder.prefix_ids)
        spans = []
        for _, is_target in segments:
            piece = ids[k]
            k += 1
            if is_target and piece:
                spans.append((len(sequence), len(sequence) + len(piece)))
            sequence.extend(piece)
        out.append((sequence, spans))
    return out


def truncate(units: Units, max_length: int) -> Units:
    """Cut a sequence to `max_length` tokens, keeping the start of the response(s); `RowError` when no
    target token is left (the prompt alone reaches `max_length`)."""
    ids, spans = units
    if len(ids) <= max_length:
        return units
    kept = [(s, min(e, max_length)) for s, e in spans if s < max_length]
    if not kept:
        raise RowError(
            f"the prompt alone ({spans[0][0] if spans else len(ids)} tokens) reaches max_length ({max_length})"
        )
    return ids[:max_length], kept
