"""Remote scoring backends: the same interface as `hf_select.engine.LocalEngine`, served by an inference server.

`TGIBackend` talks to text-generation-inference through `huggingface_hub.InferenceClient`;
`VLLMBackend` to vLLM's OpenAI-compatible `/v1/completions`. Both give `nll(rows, shift=True,
per_token=False) -> list[TargetNLL]` and `next_token_logprobs(rows, candidates) -> [n, len(candidates)]`
from the server's prompt ("prefill") log-probabilities, which are exact: the log-probability of each
prompt token given the tokens before it, the same quantity the local engine computes.

TGI takes text, not token ids, and tokenises it itself. hf-select's rows are ids whose target spans
are exact by construction (prompt and response tokenised separately), so each row is decoded to text,
sent, and the server's token ids are compared with ours. Only when they are the same sequence are the
scores used; otherwise the row gets NaN and the reason (`TargetNLL.error`), never a guessed span. The
leading BOS is the one allowed difference: when our tokenizer adds one (`add_special_tokens=True`) and a
row starts with it, the row is sent without it and the server's own BOS takes its place. A server that
puts a special token in front of a row that has none would condition every token on it: that row gets
NaN and the reason too. With the paper template a byte-level BPE merges the space
of `"Assistant: "` with the response's first word, so such rows usually differ: use `template="chat"`.
`next_token_logprobs` (SelectIT) sends each row followed by each candidate and raises `InputError` when
the server tokenises that differently: a GPT-2-style BPE merges `": "` + `"3"` into `" 3"` for every row,
while Llama-3- and Qwen-style tokenizers keep digits apart and score exactly.

TGI >= 3 returns prefill log-probabilities only when started with `--enable-prefill-logprobs`. vLLM
must run with prefix caching off (`--no-enable-prefix-caching`): with it on, prompt log-probabilities
depend on request order (vLLM #42019). Requests run in a bounded thread pool (`max_concurrency`) and are
retried with exponential backoff and jitter on HTTP 408/429/500/502/503/504, timeouts and connection errors
(honouring `Retry-After`); anything else raises at once, naming the endpoint.

Example:
    >>> from transformers import AutoTokenizer
    >>> backend = TGIBackend("http://localhost:8080", AutoTokenizer.from_pretrained("gpt2"))  # doctest: +SKIP
    >>> backend.nll([(ids, [(3, len(ids))])])[0].mean  # doctest: +SKIP
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .encoding import leading_special_ids
from .engine import Engine, Row, TargetNLL
from .errors import InputError
from .remote_base import NO_PREFILL, RemoteBackend, RemoteError, check_endpoint

__all__ = ["NO_PREFILL", "RemoteError", "TGIBackend", "VLLMBackend", "connect"]


class TGIBackend(RemoteBackend):
    """Scores rows with a text-generation-inference server (`--enable-prefill-logprobs` on TGI >= 3).

    `tokenizer` must be the served model's tokenizer. `token` goes to `InferenceClient`: None sends
    the locally stored Hugging Face token (what Inference Endpoints need); pass a string to send another.
    """

    server = "text-generation-inference server"

    def __init__(
        self,
        endpoint: str,
        tokenizer: Any,
        *,
        max_concurrency: int = 8,
        max_retries: int = 4,
        timeout: float = 120.0,
        backoff_base: float = 0.5,
        token: str | None = None,
    ) -> None:
        from huggingface_hub import InferenceClient

        super().__init__(
            check_endpoint(endpoint, "TGI"),
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            timeout=timeout,
            backoff_base=backoff_base,
        )
        self.tokenizer = tokenizer
        self.client = InferenceClient(base_url=endpoint, timeout=timeout, token=token)
        self._lead = leading_special_ids(tokenizer)  # what the server's tokenizer puts before the text
        self._special = set(getattr(tokenizer, "all_special_ids", ()))

    # --- one request ------------------------------------------------------------------------------
    def _text(self, ids: list[int]) -> str:
        lead = len(self._lead)
        if lead and ids[:lead] == self._lead:  # the server adds this BOS itself
            ids = ids[lead:]
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _prefill(self, ids: list[int], stop: threading.Event) -> tuple[list[int], list[float | None]]:
        """The server's token ids for `ids`' text and their log-probabilities (the first is None)."""
        text = self._text(ids)
        out = self._call(
            lambda: self.client.text_generation(text, details=True, decoder_input_details=True, max_new_tokens=1),
            stop,
        )
        prefill = getattr(getattr(out, "details", None), "prefill", None)
        if prefill is None:
            raise RemoteError(f"the server at {self.endpoint} returned no details: is it text-generation-inference?")
        if not prefill or (len(prefill) > 1 and all(p.logprob is None for p in prefill)):
            raise InputError(f"{NO_PREFILL} ({self.endpoint})")
        return [p.id for p in prefill], [p.logprob for p in prefill]

    def _token(self, token_id: int) -> str:
        return repr(self.tokenizer.decode([token_id], skip_special_tokens=False))

    def _align(self, ours: list[int], theirs: list[int]) -> tuple[int, str | None]:
        """(offset of our position 0 in the server's sequence, None) when the server scored exactly our ids,
        else (0, why not)."""
        if theirs == ours:
            return 0, None
        extra = len(theirs) - len(ours)
        added = 0 < extra <= max(1, len(self._lead)) and all(t in self._special for t in theirs[:extra])
        if added and theirs[extra:] == ours:  # it would condition every token on a BOS our row does not have
            return 0, (
                f"the server puts {self._token(theirs[0])} before this row, which hf-select's encoding of it "
                "does not start with"
            )
        shift = extra if added else 0
        common = min(len(ours), len(theirs) - shift)
        p = next((t for t in range(common) if ours[t] != theirs[t + shift]), common)
        if p < common:
            mine, server = ours[p], theirs[p + shift]
            where = f"hf-select has {mine} {self._token(mine)}, the server {server} {self._token(server)}"
        else:
            where = f"hf-select has {len(ours)} tokens, the server {len(theirs) - shift}"
        return 0, f"first difference at token {p}: {where}"

    # --- the engine interface ---------------------------------------------------------------------
    def nll(
        self, rows: Sequence[Row], *, shift: bool = True, per_token: bool = False, batch_tokens: int | None = None
    ) -> list[TargetNLL]:
        """Sum and count of -log p(target token | the tokens before it) per row, in the order given; a row
        the server tokenises differently gets `TargetNLL(nan, 0, error=...)`. `batch_tokens` is the local
        engine's micro-batch budget: the server batches requests itself, so it is ignored."""
        self._refuse_unshifted(shift)
        self._check_spans(rows)

        def score(i: int, stop: threading.Event) -> TargetNLL:
            ids, spans = list(rows[i][0]), rows[i][1]
            theirs, logprobs = self._prefill(ids, stop)
            offset, why = self._align(ids, theirs)
            if why is not None:
                return TargetNLL(
                    math.nan,
                    0,
                    error=f"the server tokenises this row differently from hf-select ({why}); its scores would "
                    "not be exact: use the local backend or template='chat'",
                )
            picked = [logprobs[t + offset] for start, end in spans for t in range(start, end)]
            if any(lp is None for lp in picked):
                raise RemoteError(f"the server at {self.endpoint} left out log-probabilities of prompt tokens")
            values = -np.asarray(picked, dtype=np.float64)
            return TargetNLL(float(values.sum()), len(values), values if per_token else None)

        todo = [i for i, (_, spans) in enumerate(rows) if any(end > start for start, end in spans)]
        results = [TargetNLL(0.0, 0, np.empty(0) if per_token else None) for _ in rows]
        for i, result in zip(todo, self._map(score, todo), strict=True):
            results[i] = result
        return results

    def next_token_logprobs(
        self, rows: Sequence[Sequence[int]], candidates: Sequence[int], *, batch_tokens: int | None = None
    ) -> np.ndarray:
        """log p(candidate | row) for each candidate: [n_rows, n_candidates]. One request per (row, candidate),
        the row followed by the candidate, whose last prefill log-probability is exact; raises `InputError`
        when the server tokenises that text differently (e.g. a BPE that merges `": "` with a digit)."""
        candidates = [int(c) for c in candidates]

        def last(job: tuple[int, int], stop: threading.Event) -> float:
            i, c = job
            ids = [*map(int, rows[i]), c]
            theirs, logprobs = self._prefill(ids, stop)
            offset, why = self._align(ids, theirs)
            if why is not None:
                raise InputError(
                    f"the server tokenises row {i} followed by the candidate {self._token(c)} differently from "
                    f"hf-select ({why}); its scores would not be exact: use the local backend"
                )
            value = logprobs[len(ids) - 1 + offset]
            if value is None:
                raise RemoteError(f"the server at {self.endpoint} left out log-probabilities of prompt tokens")
            return float(value)

        jobs = [(i, c) for i in range(len(rows)) for c in candidates]
        values = self._map(last, jobs)
        return np.asarray(values, dtype=np.float64).reshape(len(rows), len(candidates))


class VLLMBackend(RemoteBackend):
    """Scores rows with vLLM's OpenAI-compatible server through `/v1/completions`.

    Prompts go as token ids (`prompt` is a list of id lists), so nothing is re-tokenised and every row is
    exact; `prompt_logprobs=0` returns each prompt token's log-probability. Start vLLM with prefix caching
    off (`vllm serve MODEL --no-enable-prefix-caching`): with it on, prompt log-probabilities depend on
    request order (vLLM #42019). `model` is the served model name (default: the first of `/v1/models`);
    `api_key` is sent as a bearer token only when given; `batch_size` prompts go in one request.
    """

    server = "vLLM server"

    def __init__(
        self,
        endpoint: str,
        tokenizer: Any = None,
        *,
        model: str | None = None,
        api_key: str | None = None,
        max_concurrency: int = 8,
        max_retries: int = 4,
        timeout: float = 120.0,
        backoff_base: float = 0.5,
        batch_size: int = 16,
    ) -> None:
        endpoint = check_endpoint(endpoint, "vLLM").rstrip("/")
        endpoint = endpoint[: -len("/v1")] if endpoint.endswith("/v1") else endpoint
        super().__init__(
            endpoint,
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            timeout=timeout,
            backoff_base=backoff_base,
        )
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        self.tokenizer = tokenizer
        self.model = model
        self.batch_size = batch_size
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._model_lock = threading.Lock()

    def _request(self, method: str, route: str, stop: threading.Event, body: Any = None) -> Any:
        from huggingface_hub.utils import get_session, hf_raise_for_status

        def send() -> Any:
            session = get_session()
            url = f"{self.endpoint}{route}"
            if method == "GET":
                response = session.get(url, headers=self._headers, timeout=self.timeout)
            else:
                response = session.post(url, json=body, headers=self._headers, timeout=self.timeout)
            hf_raise_for_status(response)
            return response.json()

        return self._call(send, stop)

    def _served_model(self, stop: threading.Event) -> str:
        with self._model_lock:
            if self.model is None:
                listed = self._request("GET", "/v1/models", stop)
                try:
                    self.model = str(listed["data"][0]["id"])
                except (KeyError, IndexError, TypeError):
                    raise RemoteError(f"the vLLM server at {self.endpoint} lists no model at /v1/models") from None
            return self.model

    def _prompt_logprobs(self, prompts: list[list[int]], stop: threading.Event) -> list[list[float | None]]:
        """Per prompt, the log-probability of each of its tokens given the ones before (the first is None)."""
        body = {
            "model": self._served_model(stop),
            "prompt": prompts,
            "max_tokens": 1,
            "temperature": 0.0,
            "prompt_logprobs": 0,
        }
        reply = self._request("POST", "/v1/completions", stop, body)
        try:
            choices = sorted(reply["choices"], key=lambda c: c["index"])
        except (KeyError, TypeError):
            raise RemoteError(f"the vLLM server at {self.endpoint} did not answer like /v1/completions") from None
        if len(choices) != len(prompts):
            raise RemoteError(f"the vLLM server at {self.endpoint} answered {len(choices)} of {len(prompts)} prompts")
        out = []
        for ids, choice in zip(prompts, choices, strict=True):
            entries = choice.get("prompt_logprobs")
            if not entries or all(e is None for e in entries):
                raise InputError(
                    f"the server at {self.endpoint} returned no prompt log-probabilities: is it vLLM (which "
                    "understands prompt_logprobs)?"
                )
            if len(entries) != len(ids):
                raise RemoteError(
                    f"the vLLM server at {self.endpoint} returned {len(entries)} prompt log-probabilities for "
                    f"{len(ids)} prompt tokens"
                )
            row: list[float | None] = [None]
            for token, entry in zip(ids[1:], entries[1:], strict=True):
                found = (entry or {}).get(str(token))
                if found is None:
                    raise RemoteError(f"the vLLM server at {self.endpoint} left out the prompt token {token}")
                row.append(float(found["logprob"] if isinstance(found, dict) else found))
            out.append(row)
        return out

    def _batched(self, prompts: list[list[int]]) -> list[list[float | None]]:
        chunks = [prompts[k : k + self.batch_size] for k in range(0, len(prompts), self.batch_size)]
        return [row for chunk in self._map(self._prompt_logprobs, chunks) for row in chunk]

    def nll(
        self, rows: Sequence[Row], *, shift: bool = True, per_token: bool = False, batch_tokens: int | None = None
    ) -> list[TargetNLL]:
        """Sum and count of -log p(target token | the tokens before it) per row, in the order given (exact:
        the server scores our ids). `batch_tokens` is the local engine's budget and is ignored."""
        self._refuse_unshifted(shift)
        self._check_spans(rows)
        todo = [i for i, (_, spans) in enumerate(rows) if any(end > start for start, end in spans)]
        results = [TargetNLL(0.0, 0, np.empty(0) if per_token else None) for _ in rows]
        replies = self._batched([[int(t) for t in rows[i][0]] for i in todo])
        for i, logprobs in zip(todo, replies, strict=True):
            values = -np.asarray([logprobs[t] for s, e in rows[i][1] for t in range(s, e)], dtype=np.float64)
            results[i] = TargetNLL(float(values.sum()), len(values), values if per_token else None)
        return results

    def next_token_logprobs(
        self, rows: Sequence[Sequence[int]], candidates: Sequence[int], *, batch_tokens: int | None = None
    ) -> np.ndarray:
        """log p(candidate | row) for each candidate: [n_rows, n_candidates], from the row followed by the
        candidate (one prompt per pair, `batch_size` prompts a request)."""
        candidates = [int(c) for c in candidates]
        prompts = [[*map(int, row), c] for row in rows for c in candidates]
        values = [logprobs[-1] for logprobs in self._batched(prompts)]
        return np.asarray(values, dtype=np.float64).reshape(len(rows), len(candidates))


def connect(
    backend: str,
    endpoint: str,
    tokenizer: Any,
    *,
    timeout: float = 120.0,
    max_concurrency: int = 8,
    max_retries: int = 4,
    token: str | None = None,
) -> Engine:
    """The remote engine for `backend` (`"tgi"` or `"vllm"`) at `endpoint`. `token` is TGI's Hub token (None:
    the locally stored one) or vLLM's API key (None: none sent)."""
    options: dict[str, Any] = {"timeout": timeout, "max_concurrency": max_concurrency, "max_retries": max_retries}
    if backend == "tgi":
        return TGIBackend(endpoint, tokenizer, token=token, **options)
    if backend == "vllm":
        return VLLMBackend(endpoint, tokenizer, api_key=token, **options)
    raise InputError(f"backend must be 'tgi' or 'vllm' for a remote engine, got {backend!r}")
