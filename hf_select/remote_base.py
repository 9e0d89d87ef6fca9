"""Requests to an inference server, shared by the remote scoring backends (`hf_select.remote`): a bounded
thread pool, retries with exponential backoff and full jitter on transient failures (HTTP
408/429/500/502/503/504, timeouts, dropped connections; `Retry-After` honoured), and one clear error naming
the endpoint for anything else.
"""

from __future__ import annotations

import functools
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from typing import Any, TypeVar

from . import progress
from .engine import Row
from .errors import HFSelectError, InputError

T = TypeVar("T")

NO_PREFILL = "the server returned no prompt log-probabilities: TGI >= 3 must be started with --enable-prefill-logprobs"
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MAX_DELAY = 60.0  # seconds, the longest single wait between two attempts


class RemoteError(HFSelectError):
    """The inference server failed, refused a request, or answered something that is not its API."""


class _Cancelled(Exception):
    """Another request of the same call failed: stop retrying this one."""


def check_endpoint(endpoint: str, what: str) -> str:
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


class RemoteBackend:
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
        failures: list[BaseException] = []  # the failure that stopped the others, kept before `stop` is set

        def guarded(item: Any) -> T:
            try:
                return job(item, stop)
            except _Cancelled:
                raise
            except BaseException as err:
                failures.append(err)
                stop.set()  # at once, so that no worker sends another request
                raise

        results: list[Any] = [None] * len(items)
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items)), thread_name_prefix="hf-select")
        futures = {pool.submit(guarded, item): k for k, item in enumerate(items)}
        try:
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                progress.advance(1, len(items), 0)  # a request is the remote micro-batch (tokens: the server's)
        except BaseException as err:  # a failed request, or Ctrl-C: return now, let requests in flight end
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            if isinstance(err, _Cancelled):  # a request cancelled by the failure may end before the failure does
                if not failures:
                    wait(futures, timeout=self.timeout)  # `stop` is set: each ends after its request in flight
                if failures:
                    raise failures[0] from None
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
