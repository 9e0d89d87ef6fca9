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

import functools
import math
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TypeVar

import numpy as np

from .encoding import leading_special_ids
from .engine import Row, TargetNLL
from .errors import HFSelectError, InputError

T = TypeVar("T")

NO_PREFILL = "the server returned no prompt log-probabilities: TGI >= 3 must be started with --enable-prefill-logprobs"
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_DELAY = 60.0  # seconds, the longest single wait between two attempts


class RemoteError(HFSelectError):
    """The inference server failed, refused a request, or answered something that is not its API."""


class _Cancelled(Exception):
    """Another request of the same call failed: stop retrying this one."""


def _check_endpoint(endpoint: str, what: str) -> str:
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        # InferenceClient would take anything else for a Hub model id and call the HF router instead
        raise InputError(f"the {what} endpoint must be an http:// or https:// URL, got {endpoint!r}")
    return endpoint


@functools.cache
def _transient_errors() -> tuple[type[BaseException], ...]:
    """Timeouts and connection errors of the HTTP stack under huggingface_hub (httpx2 from 2.x, httpx in
    1.x, requests before), which InferenceClient lets through as they are (timeouts as InferenceTimeoutError)."""
    from huggingface_hub.errors import InferenceTimeoutError

    errors: list[type[BaseException]] = [InferenceTimeoutError]
    for module, names in (
        ("httpx2", ("TimeoutException", "NetworkError", "RemoteProtocolError")),
        ("httpx", ("TimeoutException", "NetworkError", "RemoteProtocolError")),
        ("requests.exceptions", ("ConnectionError", "Timeout", "ChunkedEncodingError")),
    ):
        try:
            imported = __import__(module, fromlist=list(names))
        except ImportError:
            continue
        errors += [getattr(imported, name) for name in names if hasattr(imported, name)]
    return tuple(errors)


def _response(err: BaseException) -> Any:
    """The HTTP response behind an error: InferenceClient raises HfHubHTTPError (`.response`), or a
    TextGenerationError (no response) raised from one when TGI's error body names an `error_type`."""
    seen: BaseException | None = err
    for _ in range(3):
        if seen is None:
            return None
        response = getattr(seen, "response", None)
        if response is not None and isinstance(getattr(response, "status_code", None), int):
            return response
        seen = seen.__cause__ or seen.__context__
    return None


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None


def _server_message(err: BaseException, response: Any) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("error"):
            return str(body["error"])
        if isinstance(body, dict) and isinstance(body.get("message"), str):  # vLLM / OpenAI style
            return body["message"]
    except Exception:
        pass
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


class _RemoteBackend:
    """Bounded concurrency and retries shared by the remote backends."""

    device = "remote"
    n_parameters: int | None = None
    server = "server"

    def __init__(
        self, endpoint: str, *, max_concurrency: int, max_retries: int, timeout: float, backoff_base: float
    ) -> None:
        if max_concurrency < 1:
            raise InputError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if max_retries < 0 or timeout <= 0 or backoff_base < 0:
            raise InputError("max_retries and backoff_base must be >= 0 and timeout > 0")
        self.endpoint = endpoint
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff_base = backoff_base

    def _retryable(self, err: BaseException) -> bool:
        from huggingface_hub.errors import OfflineModeIsEnabled

        if isinstance(err, OfflineModeIsEnabled):  # a requests.ConnectionError in old huggingface_hub
            return False
        response = _response(err)
        if response is not None:
            return response.status_code in RETRY_STATUS
        return isinstance(err, _transient_errors())

    def _fatal(self, err: BaseException, attempts: int) -> HFSelectError:
        from huggingface_hub.errors import OfflineModeIsEnabled

        where = f"the {self.server} at {self.endpoint}"
        if isinstance(err, OfflineModeIsEnabled):
            return InputError(f"HF_HUB_OFFLINE is set, so huggingface_hub refuses every request, {where} included")
        response = _response(err)
        if response is None:
            if isinstance(err, TimeoutError) or "Timeout" in type(err).__name__:
                return RemoteError(
                    f"{where} did not answer within {self.timeout:g} s, {attempts} attempts: raise timeout= or lower "
                    "max_concurrency"
                )
            if self._retryable(err):
                return RemoteError(f"cannot reach {where} after {attempts} attempts: {type(err).__name__}: {err}")
            return RemoteError(f"{where} did not answer as expected: {type(err).__name__}: {err}")
        status, message = response.status_code, _server_message(err, response)
        if status in RETRY_STATUS:
            return RemoteError(f"{where} kept failing: HTTP {status} after {attempts} attempts: {message}")
        if status in (401, 403):
            return RemoteError(f"{where} refused the request (HTTP {status}): {message}; does it need a token?")
        if status in (404, 405):
            return RemoteError(
                f"{where} has no such route (HTTP {status}): give the server's base URL, e.g. http://host:8080"
            )
        if status in (400, 413, 422):
            return RemoteError(
                f"{where} rejected a request (HTTP {status}): {message} (a row longer than the server accepts is "
                "rejected: lower max_length to the server's limit)"
            )
        return RemoteError(f"{where} failed (HTTP {status}): {message}")

    def _call(self, send: Callable[[], T], stop: threading.Event) -> T:
        """`send()`, retried on transient failures with exponential backoff, full jitter and Retry-After."""
        for attempt in range(self.max_retries + 1):
            if stop.is_set():
                raise _Cancelled
            try:
                return send()
            except HFSelectError:
                raise
            except Exception as err:
                if attempt == self.max_retries or not self._retryable(err):
                    raise self._fatal(err, attempt + 1) from err
                backoff = random.uniform(0.0, self.backoff_base * 2**attempt)  # full jitter
                delay = min(MAX_DELAY, max(backoff, _retry_after(_response(err)) or 0.0))
                if stop.wait(delay):
                    raise _Cancelled from err
        raise AssertionError("unreachable")

    def _map(self, job: Callable[[Any, threading.Event], T], items: Sequence[Any]) -> list[T]:
        """`job(item, stop)` for every item on at most `max_concurrency` threads, results in input order; the
        first failure stops the others (no new request is sent) and is raised."""
        if not items:
            return []
        stop = threading.Event()

        def guarded(item: Any) -> T:
            try:
                return job(item, stop)
            except BaseException:
                stop.set()  # at once, so that no worker sends another request
                raise

        results: list[Any] = [None] * len(items)
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items)), thread_name_prefix="hf-select")
        futures = {pool.submit(guarded, item): k for k, item in enumerate(items)}
        try:
            for future in as_completed(futures):
                results[futures[future]] = future.result()
        except BaseException:  # a failed request, or Ctrl-C: return now, let requests in flight end on their own
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        return results

    @staticmethod
    def _check_spans(rows: Sequence[Row]) -> None:
        for i, (ids, spans) in enumerate(rows):
            for start, end in spans:
                if not 0 <= start <= end <= len(ids) or (start == 0 and end > 0):
                    raise ValueError(f"row {i}: target span {(start, end)} does not fit a {len(ids)}-token row")

    @staticmethod
    def _refuse_unshifted(shift: bool) -> None:
        if not shift:
            raise InputError(
                "shift=False reproduces the study's missing-shift bug, which only the local backend does: "
                "use backend='local' for it"
            )


class TGIBackend(_RemoteBackend):
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
            _check_endpoint(endpoint, "TGI"),
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


class VLLMBackend(_RemoteBackend):
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
        endpoint = _check_endpoint(endpoint, "vLLM").rstrip("/")
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
