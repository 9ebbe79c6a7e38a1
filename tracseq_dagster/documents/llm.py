"""Ollama through its official client, with every way it can fail turned into one clear line.

A generated answer is optional: when Ollama is down, slow, or does not have the model, the
caller shows the retrieved passages instead. ``OllamaUnavailable`` carries what went wrong
and the command that fixes it, so the CLI, the Bento service and the assets print the same
sentence and never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import ollama

DEFAULT_HOST = "http://localhost:11434"
DEFAULT_MODEL = "llama3.2:3b"
# Explicit, because Ollama's default context (4096 tokens on recent servers, 2048 on older
# ones) silently truncates the front of a long prompt: the passages.
DEFAULT_NUM_CTX = 8192
DEFAULT_TIMEOUT_S = 120.0


class OllamaUnavailable(Exception):
    """No generated answer: ``reason`` says why, ``fix`` what to run."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(f"{reason}. Fix: {fix}")
        self.reason = reason
        self.fix = fix


def default_host() -> str:
    """OLLAMA_HOST as Ollama itself reads it (``host:port`` without a scheme is allowed)."""
    host = os.getenv("OLLAMA_HOST", DEFAULT_HOST)
    return host if "://" in host else f"http://{host}"


@dataclass
class OllamaChat:
    """A chat model on an Ollama server."""

    host: str = field(default_factory=default_host)
    model: str = DEFAULT_MODEL
    num_ctx: int = DEFAULT_NUM_CTX
    timeout_s: float = DEFAULT_TIMEOUT_S
    temperature: float = 0.0

    def client(self) -> ollama.Client:
        return ollama.Client(host=self.host, timeout=self.timeout_s)

    @property
    def options(self) -> dict[str, Any]:
        return {"num_ctx": self.num_ctx, "temperature": self.temperature}

    def stream_chat(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """The reply, piece by piece as the server streams it."""
        with translate_errors(self.host, self.model, self.timeout_s):
            for part in self.client().chat(model=self.model, messages=messages, stream=True, options=self.options):
                if part.message and part.message.content:
                    yield part.message.content

    def chat_json(self, messages: list[dict[str, str]], schema: dict[str, Any]) -> str:
        """One reply constrained to a JSON schema (Ollama's structured outputs)."""
        with translate_errors(self.host, self.model, self.timeout_s):
            response = self.client().chat(model=self.model, messages=messages, format=schema, options=self.options)
            return response.message.content or ""

    def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        with translate_errors(self.host, model, self.timeout_s):
            return [list(v) for v in self.client().embed(model=model, input=texts).embeddings]


class translate_errors:
    """Context manager: the client's exceptions become OllamaUnavailable with a fix."""

    def __init__(self, host: str, model: str, timeout_s: float) -> None:
        self.host, self.model, self.timeout_s = host, model, timeout_s

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, _tb: Any) -> Literal[False]:
        if error is None:
            return False
        pull = f"`ollama pull {self.model}`"
        if isinstance(error, ollama.ResponseError):
            if error.status_code == 404 or "not found" in str(error.error).lower():
                raise OllamaUnavailable(f"model {self.model} is not pulled on the Ollama server at {self.host}", pull) from None
            raise OllamaUnavailable(
                f"Ollama at {self.host} failed: {error.error}", f"check `ollama ps` and the server log; {pull}"
            ) from None
        if isinstance(error, httpx.TimeoutException):
            raise OllamaUnavailable(
                f"Ollama at {self.host} did not answer within {self.timeout_s:g} s",
                f"a smaller model or a longer TRACSEQ_OLLAMA_TIMEOUT_S; {pull} if the model is still loading",
            ) from None
        if isinstance(error, (ConnectionError, httpx.HTTPError, OSError)):
            raise OllamaUnavailable(
                f"Ollama is not reachable at {self.host}",
                f"start it (`ollama serve`, or set OLLAMA_HOST) and {pull}",
            ) from None
        return False
