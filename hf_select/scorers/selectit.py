"""SelectIT: the model rates each sample with K differently worded prompts (self-reflection)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from .. import study
from ..conversation import render_paper_prompt, split_last
from ..encoding import PLAIN_TEMPLATES, ConversationEncoder
from ..engine import Engine
from ..errors import InputError
from .lm import LMResources, LMScorer

Variant = Literal["spec", "study", "original"]

RATING_PROMPTS: tuple[str, ...] = (
    "Please rate, on a scale of 1 to 5, how well the response follows the instruction.",
    "On a scale from 1 to 5, score how well the answer below satisfies the user's request.",
    "Rate the quality of the following response to the instruction with a number from 1 (poor) to 5 (excellent).",
    "How helpful and accurate is the response below? Give a score between 1 and 5.",
    "Judge whether the assistant's reply fulfils the instruction. "
    "Answer with a score from 1 (not at all) to 5 (fully).",
)
ANSWER_CUE = "\nThe answer is: "
DIGITS = ("1", "2", "3", "4", "5")


def digit_ids(tokenizer: Any) -> list[int]:
    """The ids of "1".."5" in this tokenizer; each must be one distinct token (never hard-coded)."""
    ids = []
    for digit in DIGITS:
        encoded = tokenizer(digit, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise InputError(f"the tokenizer splits the digit {digit!r} into {len(encoded)} tokens; SelectIT needs one")
        ids.append(encoded[0])
    if len(set(ids)) != len(ids):
        raise InputError(f"the tokenizer maps the digits 1-5 to non-distinct ids {ids}")
    return ids


def token_score(logprobs: np.ndarray, softmax_normalised: bool = False) -> np.ndarray:
    """Token-level SelectIT score per row from the log-probabilities of "1".."5": `[n, 5] -> [n]`.

    `p` = the five probabilities renormalised to sum 1; `s = (argmax + 1) * mean_j(p_max - p_j)` over
    the other four digits. `softmax_normalised=True` first replaces `p` by `softmax(p)`, as the study's and
    the original SelectIT's scripts do (`np.exp(p / sum(p))`, renormalised).

    Example:
        >>> lp = np.log(np.array([[0.1, 0.1, 0.2, 0.5, 0.1]]))
        >>> round(float(token_score(lp)[0]), 4), round(float(token_score(lp, softmax_normalised=True)[0]), 4)
        (1.5, 0.3327)
    """
    shifted = logprobs - logprobs.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    if softmax_normalised:
        p = np.exp(p)
        p /= p.sum(axis=1, keepdims=True)
    best = p.argmax(axis=1)
    p_max = p[np.arange(len(p)), best]
    gaps = (p_max[:, None] - p).sum(axis=1) / (p.shape[1] - 1)  # the max's own gap is 0
    return (best + 1) * gaps


def sentence_score(token_scores: np.ndarray, alpha: float) -> np.ndarray:
    """`S = mean_k(s_k) / (1 + alpha * std_k(s_k))` over the K prompts (population std): `[n, K] -> [n]`."""
    return token_scores.mean(axis=1) / (1 + alpha * token_scores.std(axis=1))


class ModelSet(list[LMResources]):
    """The resources of every model SelectIT rates with, the main model first (its `encoder` and `engine`)."""

    @property
    def encoder(self) -> ConversationEncoder:
        return self[0].encoder

    @property
    def engine(self) -> Engine:
        return self[0].engine


@dataclass(kw_only=True)
class SelectITScorer(LMScorer):
    """Adds `selectit`: the sentence-level SelectIT score (model-level with `extra_models`).

    `variant="spec"` (default: METHODS.md's specification): each of the K `prompts` (default
    `RATING_PROMPTS`) is followed by the sample (paper format) and `"\\nThe answer is: "`; the
    next-token probabilities of "1".."5", renormalised to sum 1, give a token-level score per prompt, and
    the K scores give `S = mean / (1 + alpha * std)`.
    `variant="study"` (the default with `template="study"`) is the study's script
    (`hf_select.study.study_rating_text`): its first five prompts of SelectIT's `rating_prompt.txt`,
    `Instruction:` / `Response:` labels over every pair of turns, and a softmax over the renormalised digit
    probabilities (`token_score(..., softmax_normalised=True)`). `variant="original"` is SelectIT's own
    script (`hf_select.study.original_rating_text`, the first two turns only, same prompts and softmax).
    Both rate plain text, so they take `template="auto"` or `"study"` only; both score five digits over
    K = 5 prompts, as the scripts (which divide by K - 1) were run. With `extra_models`, S is averaged
    across models weighted by `model_weights` (default: proportional to parameter count, as in the
    study). A rating prompt longer than `max_length` gets NaN and a reason.

    Example:
        >>> from datasets import Dataset
        >>> ds = Dataset.from_dict({"prompt": ["Say hi."], "response": ["Hi!"]})
        >>> ds = ds.map(SelectITScorer(model="embedded:smollm2"), batched=True)  # doctest: +SKIP
        >>> 0 <= ds[0]["selectit"] <= 5  # doctest: +SKIP
        True
    """

    prompts: tuple[str, ...] | None = None
    """None: the variant's (`RATING_PROMPTS` for spec, the study's five for study and original)."""
    variant: Variant | None = None
    """Whose SelectIT: `spec` (METHODS.md), `study` (the study's script), `original` (SelectIT's own script);
    None: "study" with `template="study"`, else "spec"."""
    alpha: float = 0.2
    """Sentence level: `S = mean / (1 + alpha * std)` over the K rating prompts."""
    extra_models: tuple[str, ...] = ()
    """More models for the model-level score (comma-separated on the command line)."""
    model_weights: tuple[float, ...] | None = None
    """One weight per model (the model, then extra_models); None: proportional to parameter counts."""

    method: ClassVar[str] = "selectit"
    score_columns: ClassVar[tuple[str, ...]] = ("selectit",)
    error_column: ClassVar[str] = "selectit_error"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant is None:
            self.variant = "study" if self.template == "study" else "spec"
        if self.variant not in ("spec", "study", "original"):
            raise InputError(f"variant must be 'spec', 'study' or 'original', got {self.variant!r}")
        if self.variant != "spec":
            if self.template not in ("auto", "study"):
                raise InputError(f"variant={self.variant!r} rates the script's plain text: use template='study'")
            self.template = "study"  # plain text after the tokenizer's special tokens, as the scripts tokenise
        if self.prompts is None:
            self.prompts = RATING_PROMPTS if self.variant == "spec" else study.selectit_prompts()[:5]
        self.prompts, self.extra_models = tuple(self.prompts), tuple(self.extra_models)
        if not self.prompts:
            raise InputError("SelectIT needs at least one rating prompt")
        if self.extra_models and self.backend != "local":
            raise InputError("extra_models needs backend='local' (one endpoint serves one model)")
        if self.model_weights is not None:
            self.model_weights = tuple(self.model_weights)
            if len(self.model_weights) != 1 + len(self.extra_models):
                raise InputError("model_weights needs one weight per model (model, then extra_models)")

    def rating_texts(self, encoder: ConversationEncoder, turns: Any) -> list[str]:
        if self.variant == "study":
            return [study.study_rating_text(encoder.tokenizer, prompt, turns) for prompt in self.prompts]
        if self.variant == "original":
            return [study.original_rating_text(prompt, turns) for prompt in self.prompts]
        history, response = split_last(turns)
        sample = render_paper_prompt(history) + response
        texts = []
        for prompt in self.prompts:
            request = f"{prompt}\n\n{sample}"
            if encoder.template in PLAIN_TEMPLATES:
                texts.append(request + ANSWER_CUE)
            else:
                messages = [{"role": "user", "content": request}]
                rendered = encoder.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                texts.append(rendered + ANSWER_CUE.lstrip("\n"))
        return texts

    @property
    def engine_passes(self) -> int:  # type: ignore[override]
        return 1 + len(self.extra_models)

    def load(self, device: str) -> ModelSet:
        """The model's resources, then each extra model's (with its own tokenizer), all held together."""
        main = self.resources_for(self.model, device, self.tokenizer)
        return ModelSet([main, *(self.resources_for(m, device) for m in self.extra_models)])

    def prepare(self, turns: Any, resources: list[LMResources]) -> list[list[str]]:
        """The K rating texts of the row, once per model (each model renders with its own tokenizer)."""
        return [self.rating_texts(r.encoder, turns) for r in resources]

    def encode(self, prepared: list[list[list[str]]], resources: list[LMResources]) -> list[list[Any]]:
        """Per row and model: the K rating prompts' ids, or why they do not fit `max_length`. A row too long
        for one model is still rated by the others (their batches hold the rows they can score)."""
        k = len(self.prompts)
        out: list[list[Any]] = [[] for _ in prepared]
        for m, r in enumerate(resources):
            flat = [text for row in prepared for text in row[m]]
            encoded = [r.encoder.prefix_ids + ids for ids in r.encoder._ids(flat)]
            for j in range(len(prepared)):
                sequences = encoded[j * k : (j + 1) * k]
                longest = max(len(x) for x in sequences)
                too_long = f"the rating prompt ({longest} tokens) exceeds max_length ({self.max_length})"
                out[j].append(too_long if longest > self.max_length else sequences)
        return out

    def _model_scores(self, m: int, resources: LMResources, units: list[list[Any]]) -> tuple[np.ndarray, list]:
        """Sentence-level scores of model `m` for the rows (NaN where one failed) and its per-row errors."""
        ids_digits = digit_ids(resources.encoder.tokenizer)
        errors = [unit[m] if isinstance(unit[m], str) else None for unit in units]
        keep = [j for j, e in enumerate(errors) if e is None]
        rows = [sequence for j in keep for sequence in units[j][m]]
        scores = np.full(len(units), np.nan)
        if rows:
            logprobs = resources.engine.next_token_logprobs(rows, ids_digits, batch_tokens=self.batch_tokens)
            token_scores = token_score(logprobs, softmax_normalised=self.variant != "spec")
            scores[keep] = sentence_score(token_scores.reshape(len(keep), len(self.prompts)), self.alpha)
        return scores, errors

    def compute(self, units: list[list[Any]], resources: list[LMResources]) -> tuple[dict[str, list], list]:
        results = [self._model_scores(m, r, units) for m, r in enumerate(resources)]
        sizes = [r.engine.n_parameters for r in resources]
        if self.model_weights is None and len(resources) > 1 and None in sizes:
            raise InputError("model-level SelectIT with a remote backend needs model_weights")
        weights = np.array(self.model_weights or [s or 1 for s in sizes], dtype=np.float64)
        weights /= weights.sum()
        combined = sum(w * r[0] for w, r in zip(weights, results, strict=True))
        errors = [next((r[1][j] for r in results if r[1][j] is not None), None) for j in range(len(units))]
        return {"selectit": [None if e else float(v) for v, e in zip(combined, errors, strict=True)]}, errors
