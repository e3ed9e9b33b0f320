"""Text completion for the LLM options of claim splitting and question writing: a local transformers model or an
OpenAI-compatible endpoint (through `rlhfv.endpoint`, the project's one client). Both are greedy by default: the
claims of an answer should not change between runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EndpointGenerator:
    """Completions from an `EndpointClient` (reply cache, retries and errors are the client's)."""

    client: object
    max_tokens: int = 256
    temperature: float = 0.0

    def complete(self, prompts: list[str], desc: str = "llm") -> list[str]:
        from rlhfv.endpoint import ChatRequest

        requests = [
            ChatRequest([{"role": "user", "content": p}], temperature=self.temperature, max_tokens=self.max_tokens)
            for p in prompts
        ]
        replies = self.client.chat_many(requests, validate=_not_empty, progress=len(prompts) > 1, desc=desc)
        return [reply.text for reply in replies]


def _not_empty(text: str) -> None:
    """An empty completion is a server fault, not claims or a question: it is not cached, and the run stops."""
    if not text.strip():
        raise ValueError("empty completion")


@dataclass
class TransformersGenerator:
    """Greedy completions from a local causal LM (an `rlhfv.generation.generate.LoadedModel`), batched."""

    loaded: object
    max_new_tokens: int = 128
    batch_size: int = 8

    def complete(self, prompts: list[str], desc: str = "llm") -> list[str]:
        from rlhfv.generation.generate import GenerationOptions, decode, generate_batch

        options = GenerationOptions(max_new_tokens=self.max_new_tokens, batch_size=self.batch_size)
        texts = []
        for start in range(0, len(prompts), self.batch_size):
            rows = [{"question": p, "_where": "prompt"} for p in prompts[start : start + self.batch_size]]
            for (answer,) in generate_batch(self.loaded, rows, options):
                texts.append(decode(self.loaded, answer))
        return texts
