"""The scoring engine: per-row NLL of target tokens under a causal LM, batched and exact.

Rows are `(ids, spans)`: a token sequence and the `[start, end)` spans of its target tokens. The
engine returns, per row, the sum and count of the target tokens' NLL (and optionally each token's).

How it stays fast without changing a number:
- rows are sorted by length and packed into micro-batches under a token budget (less padding);
  results come back in the caller's order;
- only the hidden states that predict a target token go through the LM head, in chunks, with the
  log-softmax in float32: full-vocabulary logits are never built for context tokens;
- `torch.inference_mode`, bf16 and SDPA attention on GPU; float32 on CPU unless asked.

Example:
    >>> engine = LocalEngine("embedded:smollm2")  # doctest: +SKIP
    >>> engine.nll([([1, 2, 3, 4], [(2, 4)])])[0].mean  # doctest: +SKIP
    3.21
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from . import embedded, progress
from .errors import InputError, load_error_reason
from .model_cache import MODELS

Span = tuple[int, int]
Row = tuple[Sequence[int], Sequence[Span]]


@dataclass
class TargetNLL:
    """NLL statistics over a row's target tokens."""

    sum: float
    count: int
    tokens: np.ndarray | None = None  # per-token NLL, in order, when asked for
    error: str | None = None  # a backend that cannot score this row exactly says why (the row gets NaN)

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan


@runtime_checkable
class Engine(Protocol):
    """What the scorers need from a model, wherever it runs: `LocalEngine` here, `TGIBackend`/`VLLMBackend`
    on an inference server (`hf_select.remote`)."""

    device: str
    """`cpu`, `cuda:N`, or `remote`."""
    n_parameters: int | None
    """The model's parameter count (model-level SelectIT weights); None when a server does not say."""

    def nll(
        self, rows: Sequence[Row], *, shift: bool = True, per_token: bool = False, batch_tokens: int | None = None
    ) -> list[TargetNLL]:
        """Sum and count of -log p(target token) per `(ids, spans)` row, in the order given."""
        ...

    def next_token_logprobs(
        self, rows: Sequence[Sequence[int]], candidates: Sequence[int], *, batch_tokens: int | None = None
    ) -> np.ndarray:
        """log p(candidate | row) at each row's last position: [n_rows, n_candidates]."""
        ...


def micro_batches(lengths: Sequence[int], batch_tokens: int) -> Iterator[list[int]]:
    """Row indices, longest first, grouped so that rows x padded length stays within `batch_tokens`
    (a row longer than the budget runs alone)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batch: list[int] = []
    for i in order:
        width = lengths[batch[0]] if batch else lengths[i]
        if batch and (len(batch) + 1) * width > batch_tokens:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def default_batch_tokens(device: str) -> int:
    """Rows x padded length per forward pass: large on GPU; on CPU, batches whose activations stay in cache
    (4,096 tokens ran the tiny benchmark model 1.7x faster than 32,768, see benchmarks/bench_lm_scoring.py)."""
    return 32768 if device.startswith("cuda") else 4096


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise InputError(f"unknown dtype {dtype!r}: expected auto, float32, bfloat16 or float16") from None


class LocalEngine:
    """A causal LM loaded once on one device, scoring rows in length-sorted micro-batches."""

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        device: str = "cpu",
        dtype: str = "auto",
        batch_tokens: int | None = None,
        head_chunk: int = 1024,
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.device = device
        self.dtype = resolve_dtype(dtype, device)
        self.batch_tokens = batch_tokens or default_batch_tokens(device)
        self.head_chunk = head_chunk
        path = embedded.resolve(model, weights=True)
        kwargs: dict[str, Any] = {"revision": revision, "dtype": self.dtype, "trust_remote_code": trust_remote_code}
        if device.startswith("cuda"):
            kwargs["attn_implementation"] = "sdpa"
        try:
            self.model = AutoModelForCausalLM.from_pretrained(path, **kwargs).to(device).eval()
        except (OSError, ValueError, pickle.UnpicklingError) as err:
            raise InputError(f"cannot load model {model!r}: {load_error_reason(err)}") from err
        self.decoder = self.model.get_decoder()
        self.head = self.model.get_output_embeddings()
        config = self.model.config
        self.softcap = getattr(config, "final_logit_softcapping", None)
        self.logit_scale = getattr(config, "logit_scale", None)
        self.n_parameters = sum(p.numel() for p in self.model.parameters())
        self.pad_id = 0
        self._torch = torch
        self._check_head()

    def _log_probs(self, hidden: Any) -> Any:
        """float32 log-softmax over the vocabulary for a [n, hidden] block."""
        logits = self.head(hidden).float()
        if self.logit_scale is not None:
            logits = logits * self.logit_scale
        if self.softcap is not None:
            logits = self._torch.tanh(logits / self.softcap) * self.softcap
        return self._torch.log_softmax(logits, dim=-1)

    def _check_head(self) -> None:
        """Our head projection must equal the model's own logits: refuse models that do more."""
        torch = self._torch
        ids = torch.arange(1, 9, device=self.device).unsqueeze(0) % self.model.config.vocab_size
        with torch.inference_mode():
            reference = torch.log_softmax(self.model(input_ids=ids).logits.float(), dim=-1)
            ours = self._log_probs(self.decoder(input_ids=ids).last_hidden_state)
        tolerance = 1e-4 if self.dtype == torch.float32 else 5e-2
        if not torch.allclose(reference, ours, atol=tolerance, rtol=0):
            raise InputError(
                f"{type(self.model).__name__} transforms its logits in a way hf-select does not reproduce; "
                "its scores would be wrong, so it is not supported"
            )

    def _hidden(self, rows: Sequence[Sequence[int]], batch: list[int]) -> tuple[Any, list[int]]:
        # Right padding under causal attention: a real token only ever attends to earlier real tokens,
        # so no attention mask is needed and SDPA takes its fused causal path instead of a masked one.
        torch = self._torch
        width = max(len(rows[i]) for i in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        for b, i in enumerate(batch):
            ids[b, : len(rows[i])] = torch.as_tensor(rows[i], dtype=torch.long)
        hidden = self.decoder(input_ids=ids.to(self.device)).last_hidden_state
        return hidden, [len(rows[i]) for i in batch]

    def nll(
        self, rows: Sequence[Row], *, shift: bool = True, per_token: bool = False, batch_tokens: int | None = None
    ) -> list[TargetNLL]:
        """Sum and count of -log p(target token) per row, in the order given.

        With `shift=True` (correct) a token at position t is predicted from positions < t; `shift=False`
        scores token t with the logits at t itself (the study's CE bug, only to reproduce it).
        """
        torch = self._torch
        results: list[TargetNLL | None] = [None] * len(rows)
        sequences = [list(ids) for ids, _ in rows]
        for i, (ids, spans) in enumerate(rows):
            for start, end in spans:
                if not 0 <= start <= end <= len(ids) or (shift and start == 0 and end > 0):
                    raise ValueError(f"row {i}: target span {(start, end)} does not fit a {len(ids)}-token row")
        with torch.inference_mode():
            for batch in micro_batches([len(s) for s in sequences], batch_tokens or self.batch_tokens):
                hidden, _ = self._hidden(sequences, batch)
                rows_at, positions, labels, owners = [], [], [], []
                for b, i in enumerate(batch):
                    for start, end in rows[i][1]:
                        predictors = range(start - 1, end - 1) if shift else range(start, end)
                        rows_at.extend([b] * (end - start))
                        positions.extend(predictors)
                        labels.extend(sequences[i][start:end])
                        owners.extend([i] * (end - start))
                selected = hidden[
                    torch.as_tensor(rows_at, dtype=torch.long), torch.as_tensor(positions, dtype=torch.long)
                ]
                label_t = torch.as_tensor(labels, dtype=torch.long, device=self.device)
                token_nll = torch.empty(len(labels), dtype=torch.float64)
                for lo in range(0, len(labels), self.head_chunk):
                    hi = min(lo + self.head_chunk, len(labels))
                    logp = self._log_probs(selected[lo:hi]).gather(-1, label_t[lo:hi, None]).squeeze(-1)
                    token_nll[lo:hi] = (-logp).double().cpu()
                values = token_nll.numpy()
                owners_np = np.asarray(owners, dtype=np.int64)
                for i in batch:
                    mine = values[owners_np == i]
                    results[i] = TargetNLL(float(mine.sum()), len(mine), mine.copy() if per_token else None)
                progress.advance(len(batch), len(rows), sum(len(sequences[i]) for i in batch))
        return [r if r is not None else TargetNLL(0.0, 0) for r in results]

    def next_token_logprobs(
        self, rows: Sequence[Sequence[int]], candidates: Sequence[int], *, batch_tokens: int | None = None
    ) -> np.ndarray:
        """log p(candidate | row) for each candidate id, at each row's last position: [n_rows, n_candidates]."""
        torch = self._torch
        out = np.empty((len(rows), len(candidates)), dtype=np.float64)
        cand = torch.as_tensor(list(candidates), dtype=torch.long, device=self.device)
        sequences = [list(r) for r in rows]
        with torch.inference_mode():
            for batch in micro_batches([len(s) for s in sequences], batch_tokens or self.batch_tokens):
                hidden, lengths = self._hidden(sequences, batch)
                last = hidden[torch.arange(len(batch)), torch.as_tensor(lengths) - 1]
                out[batch] = self._log_probs(last)[:, cand].double().cpu().numpy()
                progress.advance(len(batch), len(rows), sum(lengths))
        return out


def load_engine(
    model: str,
    *,
    revision: str | None = None,
    device: str = "cpu",
    dtype: str = "auto",
    trust_remote_code: bool = False,
) -> LocalEngine:
    """One engine per (model, revision, device, dtype) per process, shared by every scorer that uses it
    (through `hf_select.model_cache.MODELS`). Scorers pass their own `batch_tokens` with each call."""
    key = ("engine", model, revision, device, dtype, trust_remote_code)
    return MODELS.get(
        key,
        lambda: LocalEngine(model, revision=revision, device=device, dtype=dtype, trust_remote_code=trust_remote_code),
    )
