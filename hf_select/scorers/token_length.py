"""Token length: the study's cheap, stable recipe (select the longest conversations)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..conversation import FormatName, Turn, split_last
from ..encoding import ConversationEncoder, TemplateName, resolve_template
from ..tokenizer import load_tokenizer, tokenizer_provenance
from .base import Scorer


@dataclass(kw_only=True)
class TokenLengthScorer(Scorer):
    """Adds `n_tokens_prompt` (history), `n_tokens_response` (last response) and `n_tokens` (their sum).

    Counts are real token counts of the rendered prompt and response (see `hf_select.encoding`),
    with the given tokenizer, in one batched call of the fast tokenizer per `map` batch.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"conversations": [[{"from": "human", "value": "Hi"},
        ...                                           {"from": "gpt", "value": "Hello there!"}]]})
        >>> ds = ds.map(TokenLengthScorer(tokenizer="embedded:smollm2"), batched=True)
        >>> sorted(c for c in ds.column_names if c.startswith("n_tokens"))
        ['n_tokens', 'n_tokens_error', 'n_tokens_prompt', 'n_tokens_response']
    """

    tokenizer: str
    """A local folder, a Hub model id, or `embedded:smollm2`."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of the model and tokenizer."""
    template: TemplateName = "auto"
    """How a conversation becomes text: `paper` (the study's `Human:`/`Assistant:` format), `chat` (the
    tokenizer's chat template), `auto` (chat when there is one), `study` (the text the study's scoring
    scripts built, to reproduce its numbers: `hf_select.study`)."""
    format: FormatName | None = None
    """The dataset's conversation format; None: detected from its columns."""
    columns: tuple[str, ...] | None = None
    """The columns that hold the conversation, for `format` (comma-separated on the command line)."""
    trust_remote_code: bool = False
    """Run code that ships with the model or tokenizer (transformers' `trust_remote_code`)."""

    method: ClassVar[str] = "token-length"
    score_columns: ClassVar[tuple[str, ...]] = ("n_tokens_prompt", "n_tokens_response", "n_tokens")
    error_column: ClassVar[str] = "n_tokens_error"

    def __post_init__(self) -> None:
        if self.columns is not None:
            self.columns = tuple(self.columns)

    def load(self, device: str) -> ConversationEncoder:
        tokenizer = load_tokenizer(self.tokenizer, self.revision, self.trust_remote_code)
        return ConversationEncoder(tokenizer, self.template)

    def describe(self) -> dict[str, Any]:
        tokenizer = load_tokenizer(self.tokenizer, self.revision, self.trust_remote_code)
        return {
            **super().describe(),
            "tokenizer": tokenizer_provenance(self.tokenizer, self.revision),
            "template": resolve_template(tokenizer, self.template),
        }

    def prepare(self, turns: list[Turn], resources: ConversationEncoder) -> tuple[str, str]:
        return resources.render(*split_last(turns))

    def compute(
        self, units: list[tuple[str, str]], resources: ConversationEncoder
    ) -> tuple[dict[str, list[int]], list[str | None]]:
        n_prompt, n_response = resources.count(units)
        total = [p + r for p, r in zip(n_prompt, n_response, strict=True)]
        return {"n_tokens_prompt": n_prompt, "n_tokens_response": n_response, "n_tokens": total}, [None] * len(units)
