"""An HTTP server that speaks the parts of Ollama's REST API the project uses.

Real sockets, real HTTP, NDJSON streaming and Ollama's error bodies, so the official
``ollama`` client is exercised exactly as against a real server: ``/api/chat`` (streamed or
not, ``format`` JSON schemas), ``/api/generate``, ``/api/embed``, ``/api/tags`` and
``/api/version``. Models not in ``models`` answer 404 ``{"error": "model 'x' not found"}``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def fake_vector(text: str, dimensions: int = 64) -> list[float]:
    """Deterministic vector per text (bag of hashed words), so similar texts are close."""
    vector = np.zeros(dimensions)
    for word in text.lower().split():
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % dimensions] += 1.0
    return (vector / (np.linalg.norm(vector) or 1)).tolist()


class FakeOllama:
    """``reply(messages, format)`` decides what the model says; ``delay_s`` delays every answer."""

    def __init__(self, models: tuple[str, ...] = ("llama3.2:3b",), reply: Callable[[list[dict], Any], str] | None = None) -> None:
        self.models = set(models)
        self.reply = reply or (lambda messages, fmt: "DNA extracts are stored at -20 C [1].")
        self.delay_s = 0.0
        self.fail_with: tuple[int, str] | None = None  # (status, error) for every generation, e.g. a crashed runner
        self.requests: list[tuple[str, dict]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeOllama:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, parts: list[dict]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for part in parts:
                        line = json.dumps(part).encode() + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    # The client stopped reading (a stream cut at its deadline): Ollama ends the
                    # stream quietly. Left to socketserver, the traceback lands on whatever stderr
                    # is current, another test's captured CLI output among them.
                    self.close_connection = True

            def do_GET(self) -> None:  # noqa: N802
                fake.requests.append((self.path, {}))
                if self.path == "/api/version":
                    self._json(200, {"version": "0.12.6"})
                elif self.path == "/api/tags":
                    self._json(
                        200,
                        {
                            "models": [
                                {
                                    "name": m,
                                    "model": m,
                                    "modified_at": _now(),
                                    "size": 2019393189,
                                    "digest": "a80c4f17acd5",
                                    "details": {
                                        "format": "gguf",
                                        "family": "llama",
                                        "parameter_size": "3.2B",
                                        "quantization_level": "Q4_K_M",
                                    },
                                }
                                for m in sorted(fake.models)
                            ]
                        },
                    )
                else:
                    self._json(404, {"error": "404 page not found"})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.requests.append((self.path, body))
                model = body.get("model", "")
                if self.path not in ("/api/chat", "/api/generate", "/api/embed"):
                    return self._json(404, {"error": "404 page not found"})
                if model not in fake.models:
                    return self._json(404, {"error": f"model '{model}' not found"})
                time.sleep(fake.delay_s)
                if fake.fail_with is not None:
                    return self._json(fake.fail_with[0], {"error": fake.fail_with[1]})
                if self.path == "/api/embed":
                    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    return self._json(
                        200,
                        {
                            "model": model,
                            "embeddings": [fake_vector(t) for t in inputs],
                            "total_duration": 1000,
                            "load_duration": 10,
                            "prompt_eval_count": len(inputs),
                        },
                    )
                messages = body.get("messages") or [{"role": "user", "content": body.get("prompt", "")}]
                text = fake.reply(messages, body.get("format"))
                key = "message" if self.path == "/api/chat" else "response"

                def piece(content: str, done: bool) -> dict:
                    part: dict = {"model": model, "created_at": _now(), "done": done}
                    part[key] = {"role": "assistant", "content": content} if key == "message" else content
                    if done:
                        part.update(done_reason="stop", total_duration=1_000_000, eval_count=len(text.split()))
                    return part

                if body.get("stream", True):
                    words = text.split(" ")
                    self._stream(
                        [piece(w + (" " if i < len(words) - 1 else ""), False) for i, w in enumerate(words)] + [piece("", True)]
                    )
                else:
                    self._json(200, piece(text, True))

        return Handler
