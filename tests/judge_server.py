"""A loopback judge: an OpenAI-compatible chat endpoint (`POST /v1/chat/completions`, as TGI and vLLM serve
it) that answers what `InferenceClient(base_url=url).chat_completion(messages, ...)` sends (huggingface_hub
2.4) with a rating chosen by a Python function of the messages, in MT-bench's "Rating: [[r]]" format.
`requests` keeps every payload received.

    with JudgeServer(lambda messages: 7) as judge:
        InferenceClient(base_url=judge.url).chat_completion([{"role": "user", "content": "x"}])
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JudgeServer:
    def __init__(self, rate: Callable[[list[dict[str, str]]], float | None]) -> None:
        self.rate = rate
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def reply(self, payload: dict[str, Any]) -> dict[str, Any]:
        rating = self.rate(payload["messages"])
        text = "The answer is judged." + (f" Rating: [[{rating:g}]]" if rating is not None else " No rating.")
        return {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": 0,
            "model": payload.get("model") or "judge", "system_fingerprint": "loopback",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                         "logprobs": None}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }  # fmt: skip

    def __enter__(self) -> JudgeServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    status, answer = 404, {"error": f"no route {self.path}", "error_type": "not_found"}
                else:
                    with server._lock:
                        server.requests.append(body)
                    status, answer = 200, server.reply(body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
