"""Remote scoring through text-generation-inference, against a loopback TGI double wrapping the tiny model.

The double (tests/tgi_server.py) is a real HTTP server on 127.0.0.1 that tokenises the text it gets and
returns prefill log-probabilities, as TGI does; the client is the real `huggingface_hub.InferenceClient`.
Remote scores must equal local scores (1e-4) wherever the server's tokenisation is hf-select's, and be
NaN plus the reason everywhere else; failures are retried or raised with the endpoint named.
"""

from __future__ import annotations

import math
import re
import socket
import threading
import time
from typing import Any

import numpy as np
import pytest
from datasets import Dataset
from tgi_server import TGIServer
from tiny_model import BOS, build_tiny_model, build_tiny_tokenizer
from transformers import AutoTokenizer

from hf_select import InputError
from hf_select.conversation import batch_turns, detect_format
from hf_select.encoding import ConversationEncoder, encode_segments, render_segments
from hf_select.engine import LocalEngine
from hf_select.remote import NO_PREFILL, RemoteError, TGIBackend, VLLMBackend
from hf_select.scorers import CrossEntropyScorer, IFDScorer, SelectITScorer

TOL = 1e-4
MISMATCH = "tokenises this row differently"


def conv(*turns: tuple[str, Any]) -> list[dict[str, Any]]:
    return [{"from": role, "value": value} for role, value in turns]


ROWS = [
    conv(("human", "What is the capital of France?"), ("gpt", "The capital of France is Paris.")),
    conv(("human", "Hello there, how are you?")),  # no assistant turn
    conv(
        ("human", "Can you write a short poem about the sea?"),
        ("gpt", "The sea rolls in with silver light."),
        ("human", 'Translate "good morning" into Spanish.'),
        ("gpt", 'Spanish: "buenos días".'),
    ),
    conv(
        ("system", "You are a helpful, honest and harmless assistant."),
        ("human", "List three prime numbers greater than 100."),
        ("gpt", "\n101, 103 and 107 are prime numbers greater than 100."),  # matches under the paper template too
    ),
    [],  # empty
    conv(("human", "Traduis « café » en 日本語 😀 ?"), ("gpt", "カフェ — Übergröße, naïve façade 👋🏽 🇫🇷 ∑ π ≈ 3.14")),
]
BAD = {1: "no assistant turn", 4: "empty"}


def dataset() -> Dataset:
    return Dataset.from_dict({"conversations": ROWS})


@pytest.fixture(scope="module")
def server(tiny_model: str) -> Any:
    with TGIServer(tiny_model) as srv:
        yield srv


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: str) -> str:
    """The tiny model with a tokenizer that, like Llama 3's or Qwen's, never merges a space with a digit
    (same vocabulary, so the same seeded weights): SelectIT's `"The answer is: " + digit` is then tokenised
    by the server exactly as hf-select builds it."""
    from tokenizers import pre_tokenizers

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    path = tmp_path_factory.mktemp("digits-tok")
    tok.save_pretrained(path)
    return build_tiny_model(tmp_path_factory.mktemp("digits-model"), path)


def pair(scorer_cls: type, model: str, url: str, **kwargs: Any) -> tuple[Dataset, Dataset]:
    local = dataset().map(scorer_cls(model=model, dtype="float32", **kwargs), batched=True)
    remote = dataset().map(scorer_cls(model=model, backend="tgi", endpoint=url, **kwargs), batched=True)
    return local, remote


def assert_equal(local: Dataset, remote: Dataset, columns: tuple[str, ...], error: str, allow_mismatch: bool) -> int:
    """Remote == local on every row the server tokenises like hf-select; returns how many rows it scored."""
    scored = 0
    for i, (a, b) in enumerate(zip(local, remote, strict=True)):
        if i in BAD:
            assert BAD[i] in a[error] and b[error] == a[error], (i, b[error])
            assert all(math.isnan(b[c]) for c in columns)
        elif b[error]:
            assert allow_mismatch and MISMATCH in b[error], (i, b[error])
            assert "first difference at token" in b[error] and all(math.isnan(b[c]) for c in columns)
        else:
            assert a[error] == "" and all(abs(a[c] - b[c]) <= TOL * max(1.0, abs(a[c])) for c in columns), (i, a, b)
            scored += 1
    return scored


@pytest.mark.parametrize("turns", ["last", "all"])
def test_cross_entropy_and_ifd_chat_equal_local(server: TGIServer, tiny_model: str, turns: str) -> None:
    local, remote = pair(CrossEntropyScorer, tiny_model, server.url, template="chat", turns=turns)
    assert assert_equal(local, remote, ("ce", "ppl"), "ce_error", allow_mismatch=False) == 4
    local, remote = pair(IFDScorer, tiny_model, server.url, template="chat", turns=turns)
    assert assert_equal(local, remote, ("ifd", "ifd_loss_cond", "ifd_loss_direct"), "ifd_error", False) == 4
    assert server.clients == {"127.0.0.1"}  # nothing left loopback: every request reached the double


def test_paper_template_rows_that_differ_get_the_reason(server: TGIServer, tiny_model: str) -> None:
    local, remote = pair(CrossEntropyScorer, tiny_model, server.url, template="paper")
    # "\n101, ..." keeps the space alone, and the tiny BPE learnt no merge of a space with "カ"; but the
    # server merges "Assistant: " + "The" into " The", and "Assistant: " + "Spanish" into " Spanish"
    assert assert_equal(local, remote, ("ce", "ppl"), "ce_error", allow_mismatch=True) == 2
    assert re.search(r"hf-select has \d+ ' ', the server \d+ ' The'", remote[0]["ce_error"])
    assert MISMATCH in remote[2]["ce_error"] and "template='chat'" in remote[2]["ce_error"]


def test_selectit_chat_equals_local(digits_model: str) -> None:
    with TGIServer(digits_model) as srv:
        local, remote = pair(SelectITScorer, digits_model, srv.url, template="chat")
        assert assert_equal(local, remote, ("selectit",), "selectit_error", allow_mismatch=False) == 4
        assert srv.requests == 4 * 5 * 5  # rows x rating prompts x digits


def test_selectit_refuses_a_server_that_merges_space_and_digit(server: TGIServer, tiny_model: str) -> None:
    scorer = SelectITScorer(model=tiny_model, template="chat", backend="tgi", endpoint=server.url)
    with pytest.raises(InputError, match="differently from hf-select .*first difference"):
        dataset().map(scorer, batched=True)


def test_per_token_and_bos_alignment(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A tokenizer that adds `<s>`: rows starting with it are sent without it (the server adds its own) and
    score exactly; a row without it would be conditioned on the server's `<s>`: NaN and the reason."""
    tok_path = build_tiny_tokenizer(tmp_path_factory.mktemp("bos-tok"), chat_template=False, add_bos=True)
    model = build_tiny_model(tmp_path_factory.mktemp("bos-model"), tok_path)
    tok = AutoTokenizer.from_pretrained(model)
    bos = tok.convert_tokens_to_ids(BOS)
    body = tok("Human: Hi\nAssistant: \nHello, how can I help?", add_special_tokens=False).input_ids
    engine = LocalEngine(model, dtype="float32")
    with TGIServer(model) as srv:
        backend = TGIBackend(srv.url, tok, token="tgi-key")
        with_bos, without = ([bos, *body], [(5, len(body) + 1)]), (body, [(4, len(body))])
        got, unaligned = backend.nll([with_bos, without], per_token=True)
        assert srv.auth == {"Bearer tgi-key"}  # token= goes to the server (None: the stored HF token)
    (want,) = engine.nll([with_bos], per_token=True)
    assert got.error is None and got.count == want.count
    np.testing.assert_allclose(got.tokens, want.tokens, atol=TOL)
    assert abs(got.sum - want.sum) <= TOL * want.count
    assert math.isnan(unaligned.sum) and "before this row" in unaligned.error


def test_no_prefill_logprobs_is_a_clear_error(tiny_model: str) -> None:
    with TGIServer(tiny_model, prefill_logprobs=False) as srv:
        scorer = CrossEntropyScorer(model=tiny_model, template="chat", backend="tgi", endpoint=srv.url)
        with pytest.raises(InputError, match="--enable-prefill-logprobs"):
            dataset().map(scorer, batched=True)
    assert "TGI >= 3" in NO_PREFILL


def test_503_then_success_gives_the_same_scores(server: TGIServer, tiny_model: str) -> None:
    scorer = CrossEntropyScorer(model=tiny_model, template="chat", backend="tgi", endpoint=server.url)
    clean = dataset().map(scorer, batched=True)
    server.fail_next(503, times=2)
    before = server.requests
    again = dataset().map(scorer, batched=True, load_from_cache_file=False)
    assert server.requests - before == 4 + 2  # 4 good rows, 2 retried failures
    np.testing.assert_array_equal(again["ce"], clean["ce"])  # NaN where the bad rows are, in both
    assert again["ce_error"] == clean["ce_error"]


def test_429_honours_retry_after(server: TGIServer, tiny_tokenizer: str) -> None:
    backend = TGIBackend(server.url, AutoTokenizer.from_pretrained(tiny_tokenizer), backoff_base=0.001)
    ids = AutoTokenizer.from_pretrained(tiny_tokenizer)("Hello world, hello sea.").input_ids
    want = backend.nll([(ids, [(1, len(ids))])])[0]
    server.fail_next(429, times=1, retry_after="1")
    start = time.monotonic()
    got = backend.nll([(ids, [(1, len(ids))])])[0]
    assert time.monotonic() - start >= 0.9 and got.sum == want.sum


def test_failures_raise_naming_the_endpoint(server: TGIServer, tiny_tokenizer: str) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    rows = [(tok("Hello world, hello sea.").input_ids, [(1, 3)])] * 5
    backend = TGIBackend(server.url, tok, max_retries=2, backoff_base=0.001, max_concurrency=1)
    server.fail_next(503, times=3)
    before = server.requests
    with pytest.raises(RemoteError, match=f"{server.url} kept failing: HTTP 503 after 3 attempts"):
        backend.nll(rows)
    assert server.requests - before == 3  # the first row's three attempts; the others were never sent
    with pytest.raises(RemoteError, match="has no such route .HTTP 404"):
        TGIBackend(server.url + "/nope", tok).nll(rows[:1])
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = TGIBackend(f"http://127.0.0.1:{port}", tok, max_retries=1, backoff_base=0.001)
    with pytest.raises(RemoteError, match=f"cannot reach .*127.0.0.1:{port} after 2 attempts: ConnectError"):
        closed.nll(rows[:1])
    with pytest.raises(InputError, match="http:// or https:// URL"):
        TGIBackend("localhost:8080", tok)
    server.delay = 0.5
    try:
        with pytest.raises(RemoteError, match="did not answer within 0.1 s, 2 attempts"):
            TGIBackend(server.url, tok, timeout=0.1, max_retries=1, backoff_base=0.001).nll(rows[:1])
    finally:
        server.delay = 0.0


def test_concurrency_is_bounded_and_order_kept(tiny_model: str, tiny_tokenizer: str) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    texts = [f"Row {i}: the sea rolls in with silver light" + " again" * i for i in range(12)]
    rows = [(ids, [(2, len(ids))]) for ids in tok(texts).input_ids]
    want = LocalEngine(tiny_model, dtype="float32").nll(rows)
    with TGIServer(tiny_model, delay=0.05) as srv:
        got = TGIBackend(srv.url, tok, max_concurrency=3).nll(rows)
        assert 2 <= srv.max_in_flight <= 3, srv.max_in_flight
    assert [g.count for g in got] == [w.count for w in want]
    assert all(abs(g.sum - w.sum) <= TOL * w.count for g, w in zip(got, want, strict=True))


def test_shift_false_needs_the_local_backend(server: TGIServer, tiny_model: str, tiny_tokenizer: str) -> None:
    with pytest.raises(InputError, match="only the local backend"):
        TGIBackend(server.url, AutoTokenizer.from_pretrained(tiny_tokenizer)).nll([([1, 2, 3], [(1, 3)])], shift=False)
    with pytest.raises(InputError, match="needs backend='local'"):  # refused before any request
        CrossEntropyScorer(model=tiny_model, backend="tgi", endpoint=server.url, shift=False)


# --- vLLM: token ids in, so every row is exact, the paper template included ---------------------------------


def units(tokenizer: Any, template: str) -> list[tuple[list[int], list[tuple[int, int]]]]:
    encoder = ConversationEncoder(tokenizer, template)
    good = {"conversations": [row for i, row in enumerate(ROWS) if i not in BAD]}
    turns = batch_turns(good, detect_format(list(good), None, None))
    return encode_segments(encoder, [render_segments(encoder, t, "all") for t in turns])


@pytest.mark.parametrize("template", ["paper", "chat"])
def test_vllm_equals_local(server: TGIServer, tiny_model: str, template: str) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = units(tok, template)
    engine = LocalEngine(tiny_model, dtype="float32")
    want = engine.nll(rows, per_token=True)
    backend = VLLMBackend(server.url + "/v1/", tok, batch_size=3, max_concurrency=2)
    got = backend.nll(rows, per_token=True)
    assert len(rows) == 4 and backend.model == "tiny"  # found at /v1/models
    for g, w in zip(got, want, strict=True):
        assert g.error is None and g.count == w.count
        np.testing.assert_allclose(g.tokens, w.tokens, atol=TOL)
    digits = [tok.convert_tokens_to_ids(d) for d in "12345"]
    prompts = [ids for ids, _ in rows]
    np.testing.assert_allclose(
        backend.next_token_logprobs(prompts, digits), engine.next_token_logprobs(prompts, digits), atol=TOL
    )
    with pytest.raises(InputError, match="only the local backend"):
        backend.nll(rows, shift=False)


def test_vllm_failures(tiny_model: str) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = [(tok("Hello world, hello sea.").input_ids, [(1, 4)])]
    with TGIServer(tiny_model, prefill_logprobs=False) as srv:
        with pytest.raises(InputError, match="no prompt log-probabilities"):
            VLLMBackend(srv.url, tok).nll(rows)
        srv.prefill_logprobs = True
        want = VLLMBackend(srv.url, tok).nll(rows)[0]
        srv.fail_next(503)
        assert VLLMBackend(srv.url, tok, model="tiny", backoff_base=0.001).nll(rows)[0].sum == want.sum
        with pytest.raises(RemoteError, match="HTTP 404"):
            VLLMBackend(srv.url, tok, model="other").nll(rows)
        VLLMBackend(srv.url, tok, model="tiny", api_key="vllm-key").nll(rows)
        assert "Bearer vllm-key" in srv.auth


def test_remote_options_are_scorer_fields_kept_out_of_records(tiny_model: str) -> None:
    """timeout, max_concurrency, max_retries and token configure the backend, never the fingerprint, the
    record or the repr; a worker still receives them (pickled only when set)."""
    import pickle

    from datasets.fingerprint import Hasher

    from hf_select import progress

    plain = CrossEntropyScorer(model=tiny_model, backend="tgi", endpoint="http://127.0.0.1:9")
    tuned = CrossEntropyScorer(
        model=tiny_model, backend="tgi", endpoint="http://127.0.0.1:9", timeout=3.0, max_concurrency=2,
        max_retries=1, token="secret-token",
    )  # fmt: skip
    assert tuned.fingerprint() == plain.fingerprint() and tuned.config() == plain.config()
    assert "secret-token" not in repr(tuned) and "secret-token" not in str(tuned.describe())
    assert Hasher.hash(tuned) != Hasher.hash(plain)  # set runtime options travel in the pickled state
    copy = pickle.loads(pickle.dumps(tuned))
    assert (copy.timeout, copy.max_concurrency, copy.max_retries, copy.token) == (3.0, 2, 1, "secret-token")
    with TGIServer(tiny_model, delay=0.05) as srv:
        options = {"backend": "tgi", "endpoint": srv.url, "template": "chat", "max_concurrency": 2}
        scorer = CrossEntropyScorer(model=tiny_model, **options)
        engine = scorer.resources().engine
        assert (engine.max_concurrency, engine.timeout) == (2, 120.0)
        steps: list[progress.Step] = []
        stop = progress.listen(steps.append)
        try:
            dataset().map(scorer, batched=True)
        finally:
            stop()
        assert srv.max_in_flight <= 2
        assert len(steps) == srv.requests  # progress moves per request


def test_the_failure_is_raised_not_the_cancellation_it_caused() -> None:
    """When one request fails, the others stop (`_Cancelled`); a cancelled one may finish before the failed
    one, and the user must still see the failure (seen as `_Cancelled` escaping under load)."""
    from hf_select.remote_base import RemoteBackend, _Cancelled

    backend = RemoteBackend("http://127.0.0.1:9", max_concurrency=2, max_retries=0, timeout=1.0, backoff_base=0.0)
    for _ in range(5):
        waiting = threading.Event()

        def job(item: int, stop: threading.Event, waiting: threading.Event = waiting) -> int:
            if item == 0:  # fails, but its thread is slower to end than the request its failure cancels
                waiting.wait(5)
                stop.set()
                time.sleep(0.01)
                raise InputError("the server tokenizes differently")
            waiting.set()
            stop.wait(5)
            raise _Cancelled

        with pytest.raises(InputError, match="tokenizes differently"):
            backend._map(job, [0, 1])
