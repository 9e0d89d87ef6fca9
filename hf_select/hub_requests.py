"""Bounded, retried requests to the Hub for `hf_select.push`: timeouts, backoff, and errors that name the step.

huggingface_hub sends most API calls (commits included) without a timeout, so a request the server never
answers hangs forever. `bounded_requests(timeout)` gives every request that has no timeout of its own
one (connect, read, write and pool) while a push runs, through a request hook on huggingface_hub's
shared HTTP client (httpx; huggingface_hub >= 1.0). `Steps.call` runs one idempotent request with the
push's retry policy (HTTP 429/5xx and connection errors, timeouts included; exponential backoff with
jitter; `Retry-After` honoured) and turns what is left into a `PushError` that names the step.

Example:
    >>> from hf_select.hub_requests import backoff
    >>> 0.5 <= backoff(0, 1.0) <= 1.0
    True
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from huggingface_hub.errors import HfHubHTTPError

from .errors import HFSelectError

logger = logging.getLogger("hf_select.push")

BACKOFF_BASE = 1.0
"""Seconds before the first retry; doubles each time (with jitter), up to `BACKOFF_MAX`."""
BACKOFF_MAX = 60.0
RETRY_AFTER_MAX = 300.0
"""A `Retry-After` longer than this (seconds) ends the push with an error instead of waiting."""
DEFAULT_TIMEOUT = 120.0
"""Seconds without progress after which a request to the Hub is given up (and retried)."""
CONNECT_TIMEOUT = 30.0
"""Connecting never waits longer than this, whatever `timeout` says."""

T = TypeVar("T")


class PushError(HFSelectError):
    """The Hub refused or failed the push. The repo is unchanged (the push is a single commit)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PushTimeoutError(PushError):
    """A request of the push got no answer within the timeout, on every attempt."""


# ---------------------------------------------------------------------------------------------- timeouts
_ACTIVE: list[dict[str, float]] = []  # the timeouts of the pushes in progress (the smallest applies)
_LOCK = threading.Lock()


def _bound(request: Any) -> None:
    """httpx request hook: a request without a timeout of its own gets the running push's."""
    with _LOCK:
        if not _ACTIVE:
            return
        bound = min(_ACTIVE, key=lambda t: t["read"])
    current = request.extensions.get("timeout") or {}
    if all(v is None for v in current.values()):
        request.extensions = {**request.extensions, "timeout": dict(bound)}


def _install_hook() -> bool:
    """Add `_bound` to huggingface_hub's shared HTTP client (it may have been recreated since)."""
    try:
        from huggingface_hub.utils import get_session

        session = get_session()
        hooks = session.event_hooks  # httpx / httpx2 clients; requests' sessions (hub < 1.0) have none
    except (ImportError, AttributeError):
        return False
    if _bound not in hooks.get("request", []):
        session.event_hooks = {**hooks, "request": [*hooks.get("request", []), _bound]}
    return True


@contextmanager
def bounded_requests(timeout: float) -> Iterator[None]:
    """Within this block, every request huggingface_hub sends without a timeout gets `timeout` seconds
    (connect: at most `CONNECT_TIMEOUT`), in every thread: the push's uploads run in a thread pool."""
    if not timeout or timeout <= 0:
        raise HFSelectError(f"timeout must be a positive number of seconds, got {timeout!r}")
    bound = {"connect": min(timeout, CONNECT_TIMEOUT), "read": timeout, "write": timeout, "pool": timeout}
    if not _install_hook():
        logger.warning("this huggingface_hub's HTTP client takes no request hooks: requests are not bounded")
    with _LOCK:
        _ACTIVE.append(bound)
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE.remove(bound)


# ---------------------------------------------------------------------------------------------- retries
def backoff(attempt: int, base: float) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random."""
    cap = min(BACKOFF_MAX, base * 2**attempt)
    return cap / 2 + random.uniform(0, cap / 2)


def retry_after(err: HfHubHTTPError) -> float | None:
    value = err.response.headers.get("Retry-After") if err.response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def status(err: HfHubHTTPError) -> int | None:
    return err.response.status_code if err.response is not None else None


def retryable(code: int | None) -> bool:
    return code == 429 or (code is not None and 500 <= code < 600)


def describe(err: HfHubHTTPError) -> str:
    server = err.server_message or str(err).splitlines()[0]
    return f"HTTP {status(err)}: {server}"


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection errors of the HTTP library huggingface_hub uses (httpx2, httpx or requests by version)."""
    errors: list[type[BaseException]] = []
    for module, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                          ("requests", ("ConnectionError", "Timeout"))):  # fmt: skip
        try:
            mod = __import__(module)
        except ImportError:
            continue
        errors.extend(getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type))
    # HfHubHTTPError subclasses requests' errors in old huggingface_hub: it is handled on its own first
    return tuple(e for e in errors if not issubclass(HfHubHTTPError, e))


def is_timeout(err: BaseException) -> bool:
    return "timeout" in type(err).__name__.lower() or isinstance(err, TimeoutError)


@dataclass
class Steps:
    """The retry policy and error wording of one push (`repo_id`, `endpoint` and the secrets to hide)."""

    repo_id: str
    endpoint: str
    timeout: float
    max_retries: int
    base: float
    secrets: list[str]

    def call(self, step: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)`, an idempotent request, retried on 429/5xx and connection errors."""
        for attempt in range(self.max_retries + 1):
            try:
                return fn(*args, **kwargs)
            except HfHubHTTPError as err:
                code = status(err)
                if not retryable(code) or attempt == self.max_retries:
                    raise
                delay = self.delay(err, attempt)
            except transport_errors() as err:
                if attempt == self.max_retries:
                    raise self.unreachable(step, err, self.max_retries + 1) from None
                delay = backoff(attempt, self.base)
            logger.warning("%s for %s failed, retrying in %.1f s", step, self.repo_id, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def delay(self, err: HfHubHTTPError, attempt: int) -> float:
        """The wait before retrying after `err` (its `Retry-After`, else the backoff); a PushError when the
        Hub asks for more than `RETRY_AFTER_MAX`."""
        wait = retry_after(err)
        if wait is not None and wait > RETRY_AFTER_MAX:
            raise PushError(
                f"the Hub rate-limits {self.repo_id} (HTTP {status(err)}): retry after {wait:.0f} s. "
                f"{self.repo_id} is unchanged.",
                status(err),
            ) from None
        return backoff(attempt, self.base) if wait is None else wait

    def unreachable(self, step: str, err: BaseException, attempts: int) -> PushError:
        """The error for a step whose every attempt timed out or lost its connection."""
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        if is_timeout(err):
            return PushTimeoutError(
                scrub(
                    f"{step} for {self.repo_id} timed out: the Hub ({self.endpoint}) did not answer within "
                    f"{self.timeout:g} s ({tries}). Nothing was committed; try again later or raise --timeout.",
                    self.secrets,
                )
            )
        return PushError(scrub(f"could not reach the Hub ({self.endpoint}) for {step} ({tries}): {err}", self.secrets))

    def http_error(self, err: HfHubHTTPError) -> PushError:
        code = status(err)
        hint = ""
        if code == 401:
            hint = " (no valid token: pass --token, set HF_TOKEN or run `hf auth login`)"
        elif code == 403:
            hint = " (the token cannot write to this repo: it needs a write token with access to the namespace)"
        elif code == 404:
            hint = " (check the repo id and that the token can see it)"
        return PushError(scrub(f"push to {self.repo_id} failed: {describe(err)}{hint}", self.secrets), code)
