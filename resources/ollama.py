"""The Ollama server as a Dagster resource."""

import dagster as dg
from pydantic import Field

from tracseq_dagster.documents.llm import DEFAULT_MODEL, DEFAULT_NUM_CTX, DEFAULT_TIMEOUT_S, OllamaChat


class OllamaResource(dg.ConfigurableResource):
    """A chat model on an Ollama server (host from OLLAMA_HOST by default).

    ``num_ctx`` is always sent: Ollama's default context silently truncates long prompts.
    """

    host: str = Field(description="Ollama server, e.g. http://localhost:11434")
    model: str = DEFAULT_MODEL
    num_ctx: int = DEFAULT_NUM_CTX
    timeout_s: float = DEFAULT_TIMEOUT_S

    def chat(self) -> OllamaChat:
        return OllamaChat(host=self.host, model=self.model, num_ctx=self.num_ctx, timeout_s=self.timeout_s)
