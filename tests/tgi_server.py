"""A loopback test double of text-generation-inference (TGI) wrapping a real transformers causal LM.

It answers what `InferenceClient(base_url=url).text_generation(prompt, details=True,
decoder_input_details=True, max_new_tokens=1)` sends (huggingface_hub 2.4): `POST /` with
`{"inputs": str, "parameters": {...}, "stream": false}`, answered with a one-element list
`[{"generated_text", "details": {finish_reason, generated_tokens, seed, prefill: [{id, text, logprob}],
tokens: [{id, text, logprob, special}]}}]`; `POST /generate` answers the bare object, as TGI does.
Like TGI it tokenises `inputs` itself, with the tokenizer's special tokens (`add_special_tokens=True`),
runs one forward pass, returns the log-probability of every prompt token (the first is null) and one
greedy token. Errors have TGI's shape: `{"error": ..., "error_type": ...}`.

It also answers vLLM's OpenAI-compatible `GET /v1/models` and `POST /v1/completions` with token-id
prompts and `prompt_logprobs` (per choice: `[null, {"<id>": {"logprob", "rank"}}, ...]`).

Options: `prefill_logprobs=False` (TGI >= 3 started without `--enable-prefill-logprobs`: empty prefill),
`fail_next(status, times, retry_after)` (fault injection), `delay` (seconds each request stays in
flight), and the counters `requests`, `max_in_flight`, `clients` (peer addresses) and `auth` (the
Authorization headers seen).

    with TGIServer(model_path) as server:
        InferenceClient(base_url=server.url).text_generation("Hi", details=True, max_new_tokens=1)
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class TGIServer:
    def __init__(self, model_path: str, *, prefill_logprobs: bool = True, delay: float = 0.0) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
        self.prefill_logprobs, self.delay = prefill_logprobs, delay
        self.requests = self.max_in_flight = self._in_flight = 0
        self.clients: set[str] = set()
        self.auth: set[str | None] = set()
        self._faults: list[tuple[int, str | None]] = []
        self._lock = threading.Lock()
        self._torch = torch

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next `times` requests with HTTP `status` (and a `Retry-After` header if given)."""
        with self._lock:
            self._faults += [(status, retry_after)] * times

    def _logp(self, ids: list[int]) -> Any:
        with self._torch.inference_mode():
            return self._torch.log_softmax(self.model(self._torch.tensor([ids])).logits[0].float(), dim=-1)

    def completions(self, payload: dict[str, Any]) -> dict[str, Any]:
        """vLLM's `/v1/completions` for token-id prompts, with `prompt_logprobs=0`."""
        choices = []
        for k, ids in enumerate(payload["prompt"]):
            logp = self._logp(ids)
            entries = [{str(ids[t]): {"logprob": logp[t - 1, ids[t]].item(), "rank": 1}} for t in range(1, len(ids))]
            wanted = self.prefill_logprobs and payload.get("prompt_logprobs") is not None
            text = self.tokenizer.decode([int(logp[-1].argmax())])
            choices.append({"index": k, "text": text, "prompt_logprobs": [None, *entries] if wanted else None})
        return {"object": "text_completion", "model": "tiny", "choices": choices}

    def generate(self, inputs: str) -> dict[str, Any]:
        ids = self.tokenizer(inputs, add_special_tokens=True).input_ids
        logp = self._logp(ids)
        text = [self.tokenizer.decode([i], skip_special_tokens=False) for i in ids]
        prefill = [{"id": ids[0], "text": text[0], "logprob": None}]
        prefill += [{"id": ids[t], "text": text[t], "logprob": logp[t - 1, ids[t]].item()} for t in range(1, len(ids))]
        best = int(logp[-1].argmax())
        token = {"id": best, "text": self.tokenizer.decode([best]), "logprob": logp[-1, best].item()}
        token["special"] = best in self.tokenizer.all_special_ids
        details = {"finish_reason": "length", "generated_tokens": 1, "seed": None, "tokens": [token]}
        details["prefill"] = prefill if self.prefill_logprobs else []
        return {"generated_text": token["text"], "details": details}

    def __enter__(self) -> TGIServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    return self.reply(200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})
                self.reply(404, {"error": f"no route {self.path}"})

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.requests += 1
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                    server.clients.add(self.client_address[0])
                    server.auth.add(self.headers.get("Authorization"))
                    fault = server._faults.pop(0) if server._faults else None
                try:
                    time.sleep(server.delay)
                    if self.path == "/v1/completions" and fault is None:
                        if payload.get("model") != "tiny":
                            return self.reply(404, {"object": "error", "message": "no such model", "code": 404})
                        return self.reply(200, server.completions(payload))
                    if self.path not in ("/", "/generate", "/v1/completions"):
                        return self.reply(404, {"error": f"no route {self.path}", "error_type": "not_found"})
                    if fault is not None:
                        status, retry_after = fault
                        kind = "overloaded" if status == 429 else "unavailable"
                        return self.reply(status, {"error": f"injected {status}", "error_type": kind},
                                          {"Retry-After": retry_after} if retry_after else None)  # fmt: skip
                    if not isinstance(payload.get("inputs"), str) or not payload["inputs"]:
                        error = "Input validation error: `inputs` cannot be empty"
                        return self.reply(422, {"error": error, "error_type": "validation"})
                    out = server.generate(payload["inputs"])
                    self.reply(200, [out] if self.path == "/" else out)
                finally:
                    with server._lock:
                        server._in_flight -= 1

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()
