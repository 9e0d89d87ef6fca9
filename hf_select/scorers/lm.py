"""Shared machinery of the model-based scorers (CE, IFD, SelectIT, embeddings): configuration, loading the
engine (local or remote), and turning rows into token sequences with exact target spans."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from ..conversation import FormatName, RowError, Turn
from ..encoding import (
    ConversationEncoder,
    Segments,
    TemplateName,
    Units,
    encode_segments,
    render_segments,
    resolve_template,
    truncate,
)
from ..engine import Engine, load_engine
from ..errors import InputError
from ..model_cache import MODELS
from ..tokenizer import load_tokenizer, model_provenance, tokenizer_provenance
from .base import Scorer, runtime, use_spawn_start_method


def weights_stamp(model: str) -> list[tuple[str, int, int]] | None:
    """(name, size, mtime_ns) of a local model folder's config and weight files; None for Hub ids."""
    if not os.path.isdir(model):
        return None
    names = sorted(f for f in os.listdir(model) if f == "config.json" or f.endswith((".safetensors", ".bin")))
    return [(f, os.path.getsize(os.path.join(model, f)), os.stat(os.path.join(model, f)).st_mtime_ns) for f in names]


@dataclass(eq=False)
class LMResources:
    encoder: ConversationEncoder
    engine: Engine


@dataclass(kw_only=True)
class LMScorer(Scorer):
    """Base of scorers that run a causal LM over every row."""

    model: str
    """A local folder, a Hub model id, or `embedded:smollm2`."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of the model and tokenizer."""
    tokenizer: str | None = None
    """Defaults to the model's own tokenizer."""
    template: TemplateName = "auto"
    """How a conversation becomes text: `paper` (the study's `Human:`/`Assistant:` format), `chat` (the
    tokenizer's chat template), `auto` (chat when there is one), `study` (the text the study's scoring
    scripts built, to reproduce its numbers: `hf_select.study`)."""
    turns: Literal["last", "all"] = "last"
    """`last`: score the last assistant turn given the history; `all`: every assistant turn, in one sequence."""
    max_length: int = 4096
    """Rows are cut to this many tokens, keeping the start of the response."""
    batch_tokens: int | None = None
    """Micro-batch budget: rows x padded length per forward pass. None: the engine's default for its device
    (32,768 on GPU; 4,096 on CPU, where larger batches fall out of cache and run slower)."""
    dtype: str = "auto"
    """`auto`: bfloat16 on GPU, float32 on CPU."""
    format: FormatName | None = None
    """The dataset's conversation format; None: detected from its columns."""
    columns: tuple[str, ...] | None = None
    """The columns that hold the conversation, for `format` (comma-separated on the command line)."""
    trust_remote_code: bool = False
    """Run code that ships with the model or tokenizer (transformers' `trust_remote_code`)."""
    backend: Literal["local", "tgi", "vllm"] = "local"
    """Where the model runs: `local` (this machine), `tgi` or `vllm` (an inference server at `endpoint`)."""
    endpoint: str | None = None
    """Server URL for `backend="tgi"` (text-generation-inference) or `"vllm"` (OpenAI-compatible vLLM)."""
    timeout: float = runtime(120.0)
    """Remote backends: seconds to wait for one answer."""
    max_concurrency: int = runtime(8)
    """Remote backends: requests in flight at once."""
    max_retries: int = runtime(4)
    """Remote backends: retries of a request that failed transiently (HTTP 429/5xx, timeouts)."""
    token: str | None = runtime(None, secret=True)
    """Remote backends: TGI's Hub token (None: the locally stored one) or vLLM's API key (None: none sent).
    Never written to a record or printed."""

    needs_device = True

    def __post_init__(self) -> None:
        if self.columns is not None:
            self.columns = tuple(self.columns)
        if self.turns not in ("last", "all"):
            raise InputError(f"turns must be 'last' or 'all', got {self.turns!r}")
        if self.max_length < 2:
            raise InputError(f"max_length must be at least 2, got {self.max_length}")
        if self.backend not in ("local", "tgi", "vllm"):
            raise InputError(f"backend must be 'local', 'tgi' or 'vllm', got {self.backend!r}")
        if self.backend != "local" and not self.endpoint:
            raise InputError(f"backend={self.backend!r} needs endpoint= (the server's URL)")
        if self.max_concurrency < 1 or self.max_retries < 0 or self.timeout <= 0:
            raise InputError("max_concurrency must be at least 1, max_retries at least 0, timeout above 0")
        if self.backend == "local":
            use_spawn_start_method()  # so that ds.map(scorer, num_proc=n, with_rank=True) never forks a model

    def __getstate__(self) -> dict[str, Any]:
        # A local model retrained in place keeps its path: its weight files' sizes and times join the state
        # that datasets hashes, so cached results of the old weights are not reused.
        return {**super().__getstate__(), "weights_stamp": weights_stamp(self.model)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__({k: v for k, v in state.items() if k != "weights_stamp"})

    def load(self, device: str) -> LMResources:
        return self.resources_for(self.model, device, self.tokenizer)

    def resources_for(self, model: str, device: str, tokenizer_name: str | None = None) -> LMResources:
        """Encoder and engine for `model` from the process's model cache (an engine is loaded once per
        process and device, whichever scorer asks for it)."""
        tokenizer = load_tokenizer(tokenizer_name or model, self.revision, self.trust_remote_code)
        if self.backend == "local":
            engine = load_engine(
                model, revision=self.revision, device=device, dtype=self.dtype, trust_remote_code=self.trust_remote_code
            )
        else:
            from ..remote import connect

            key = ("remote", self.backend, self.endpoint, id(tokenizer), self.timeout, self.max_concurrency,
                   self.max_retries, self.token)  # fmt: skip
            engine = MODELS.get(key, lambda: connect(
                self.backend, self.endpoint or "", tokenizer, timeout=self.timeout,
                max_concurrency=self.max_concurrency, max_retries=self.max_retries, token=self.token,
            ))  # fmt: skip
        return LMResources(ConversationEncoder(tokenizer, self.template), engine)

    def describe(self) -> dict[str, Any]:
        tokenizer = load_tokenizer(self.tokenizer or self.model, self.revision, self.trust_remote_code)
        models = [self.model, *getattr(self, "extra_models", ())]
        return {
            **super().describe(),
            "model": [model_provenance(m, self.revision) for m in models]
            if len(models) > 1
            else model_provenance(self.model, self.revision),
            "tokenizer": tokenizer_provenance(self.tokenizer or self.model, self.revision),
            "template": resolve_template(tokenizer, self.template),
        }

    # --- the row loop's steps for a (context, target) token sequence per row ---------------------------
    def prepare(self, turns: list[Turn], resources: LMResources) -> Segments:
        return render_segments(resources.encoder, turns, self.turns)

    def encode(self, prepared: list[Segments], resources: LMResources) -> list[Units | RowError]:
        out: list[Units | RowError] = []
        for encoded in encode_segments(resources.encoder, prepared):
            try:
                if not encoded[1]:
                    raise RowError("the response has no tokens")
                out.append(truncate(encoded, self.max_length))
            except RowError as err:
                out.append(err)
        return out
