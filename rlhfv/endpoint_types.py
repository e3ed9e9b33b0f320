"""The endpoint client's requests, replies and errors (`rlhfv.endpoint` re-exports them)."""

from __future__ import annotations

import math
from dataclasses import dataclass


DEFAULT_BASE_URL = "https://api.openai.com/v1"  # used when neither --base_url nor $OPENAI_BASE_URL is given


class EndpointError(RuntimeError):
    """A request to the endpoint failed: refused, timed out, retries exhausted, or a reply that is not a chat
    completion."""


class EndpointReplyError(EndpointError):
    """The endpoint answered, but the caller's `validate` rejected the reply (it is not cached)."""

    def __init__(self, message: str, index: int, reply: str, reason: str):
        super().__init__(message)
        self.index = index  # position of the request in `chat_many`'s list
        self.reply = reply
        self.reason = reason  # what `validate` said


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: dict[str, float]  # the endpoint's top alternatives at this position (token -> log-probability)


@dataclass(frozen=True)
class Reply:
    text: str
    logprobs: list[TokenLogprob] | None = None
    cached: bool = False

    def first_token_probability(self, *words: str) -> float:
        """Summed probability of the first generated token being one of `words` (exact token strings, leading
        spaces ignored), from the top log-probabilities; RLAIF-V's labeler compares p(yes)+p(Yes) with
        p(no)+p(No) this way."""
        if not self.logprobs:
            raise EndpointError("the reply has no log-probabilities: request them with logprobs=True")
        first = self.logprobs[0]
        top = dict(first.top)
        top.setdefault(first.token, first.logprob)
        wanted = set(words)
        return sum(math.exp(lp) for token, lp in top.items() if token.strip() in wanted)


@dataclass
class ChatRequest:
    messages: list[dict]
    temperature: float = 0.0
    max_tokens: int | None = 512  # None: the request sets no limit (MMHal-Bench's judge request sets none)
    logprobs: bool = False
    top_logprobs: int | None = None

    def params(self) -> dict:
        params = {"temperature": self.temperature}
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if self.logprobs:
            params["logprobs"] = True
            if self.top_logprobs is not None:
                params["top_logprobs"] = self.top_logprobs
        return params
