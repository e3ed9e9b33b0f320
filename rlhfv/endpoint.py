"""One client for every call to a judge or labeler model behind an OpenAI-compatible chat endpoint.

Built on the maintained `openai` package: its HTTP stack, retries (408, 409, 429, 5xx and connection errors, with
exponential backoff that honours `Retry-After`), timeouts, async concurrency and error types. What is ours:

- an on-disk reply cache (`rlhfv.endpoint_cache`), keyed by the SHA-256 of (model, messages, request parameters),
  so a rerun makes no request for what was already answered; a reply is cached only after it was checked for its
  caller: log-probabilities present when the request asked for them, then the caller's `validate`; a cached reply
  that fails either check is asked again;
- API keys come from an environment variable or a file, never from the command line, and are never written to the
  cache, the logs or any output: every error message and reply text goes through `rlhfv.redaction.Redactor`
  (the key, extra header values, bearer tokens, credential query parameters);
- errors that say what failed in one line (`EndpointError`), and `EndpointReplyError` naming the request whose reply
  the caller rejected;
- replies with per-token log-probabilities (`logprobs=True, top_logprobs=K`), which an AI-feedback labeler needs
  (RLAIF-V accepts a claim when p(yes) + p(Yes) > p(no) + p(No)).

    client = EndpointClient(EndpointConfig(base_url="http://localhost:8000/v1", model="judge", cache_dir="cache"))
    reply = client.chat([{"role": "user", "content": "Is the sky blue? Answer yes or no."}], max_tokens=1,
                        logprobs=True, top_logprobs=5)
    replies = client.chat_many([ChatRequest(messages) for messages in batch], validate=parse_rating)
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import parse_qsl

from rlhfv.endpoint_cache import ReplyCache
from rlhfv.endpoint_types import DEFAULT_BASE_URL, ChatRequest, EndpointError, EndpointReplyError, Reply, TokenLogprob
from rlhfv.redaction import Redactor


__all__ = [
    "ChatRequest",
    "EndpointClient",
    "EndpointConfig",
    "EndpointError",
    "EndpointReplyError",
    "Reply",
    "TokenLogprob",
    "resolve_api_key",
]


@dataclass
class EndpointConfig:
    base_url: str | None = field(
        default=None,
        metadata={
            "help": "Endpoint base URL, e.g. http://localhost:8000/v1. Default: $OPENAI_BASE_URL, else "
            "https://api.openai.com/v1."
        },
    )
    model: str | None = field(default=None, metadata={"help": "Model name sent with every request."})
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "Environment variable holding the API key (unset is fine for local servers)."},
    )
    api_key_file: str | None = field(
        default=None,
        metadata={"help": "File holding the API key (first line); wins over the environment variable."},
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Reply cache folder; None turns the cache off."})
    timeout: float = field(default=120.0, metadata={"help": "Seconds per attempt."})
    max_retries: int = field(
        default=5, metadata={"help": "Retries on 408/409/429/5xx and connection errors (openai's backoff)."}
    )
    concurrency: int = field(default=4, metadata={"help": "Requests in flight at once in `chat_many`."})
    headers: dict[str, str] | None = field(
        default=None,
        repr=False,  # their values may be credentials
        metadata={"help": "Extra HTTP headers sent with every request; their values are redacted."},
    )

    def __repr__(self) -> str:  # no credential of the URL or the headers in a log line
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        shown["base_url"] = Redactor().url(self.base_url) if self.base_url else None
        return f"EndpointConfig({', '.join(f'{name}={value!r}' for name, value in shown.items())})"

    def __post_init__(self):
        from data_tools.settings import check_range

        check_range("timeout", self.timeout, above=0)  # nan and inf too: a timeout that never fires hangs the run
        check_range("max_retries", self.max_retries, minimum=0)
        check_range("concurrency", self.concurrency, minimum=1)


def resolve_api_key(env_name: str = "OPENAI_API_KEY", key_file: str | Path | None = None) -> str | None:
    """The API key from `key_file` (its first line) or else the environment variable `env_name`; None if neither."""
    if key_file is not None:
        path = Path(key_file)
        try:
            lines = path.read_text().strip().splitlines()
        except OSError as error:
            raise EndpointError(f"{path}: cannot read the API key file ({error.strerror})") from None
        if not lines or not lines[0].strip():
            raise EndpointError(f"{path}: the API key file is empty")
        return lines[0].strip()
    value = os.environ.get(env_name)
    return value.strip() if value and value.strip() else None


def default_cache_dir() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "rlhfv", "endpoint")


class EndpointClient:
    """Chat completions through `openai.AsyncOpenAI`, with our reply cache. Thread-safe for reading counters."""

    def __init__(self, config: EndpointConfig):
        if not config.model:
            raise EndpointError("no model name: set EndpointConfig.model (--model)")
        self.config = config
        self.base_url = config.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        # resolved once, kept only in memory; never part of a cache key, a cache file, an error or a log line
        self._api_key = resolve_api_key(config.api_key_env, config.api_key_file)
        self.redact = Redactor([self._api_key, *(config.headers or {}).values()])
        self.cache_dir = Path(config.cache_dir) if config.cache_dir else None
        self._cache = ReplyCache(self.cache_dir, config.model)
        self.calls_made = 0  # API calls (openai's own retries inside one call are not counted)
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # no key in any repr
        return f"EndpointClient(base_url={self.redact.url(self.base_url)!r}, model={self.config.model!r})"

    @property
    def model(self) -> str:
        return self.config.model

    # ---- cache -------------------------------------------------------------------------------------------------
    def cache_key(self, request: ChatRequest) -> str:
        return self._cache.key(request.messages, request.params())

    def cached(self, request: ChatRequest) -> Reply | None:
        stored = self._cache.load(request.messages, request.params())
        if stored is None:
            return None
        logprobs = stored.get("logprobs")
        try:
            if logprobs is not None:
                logprobs = [TokenLogprob(t["token"], t["logprob"], dict(t["top"])) for t in logprobs]
        except (KeyError, TypeError, ValueError):
            return None
        return Reply(stored["text"], logprobs, cached=True)

    def _cached_valid(self, request: ChatRequest, validate) -> Reply | None:
        """A cached reply that passes the checks (one cached by a caller with laxer checks, or by an older version
        that kept replies unchecked, is asked again)."""
        reply = self.cached(request)
        if reply is not None and reply_problem(request, reply, validate) is not None:
            return None
        return reply

    def store(self, request: ChatRequest, reply: Reply) -> None:
        logprobs = None
        if reply.logprobs is not None:
            logprobs = [{"token": t.token, "logprob": t.logprob, "top": t.top} for t in reply.logprobs]
        self._cache.store(request.messages, request.params(), {"text": reply.text, "logprobs": logprobs})

    # ---- requests ----------------------------------------------------------------------------------------------
    def chat(self, messages: list[dict], validate: Callable[[str], object] | None = None, **params) -> Reply:
        """One chat completion (from the cache when possible). `params`: temperature, max_tokens, logprobs,
        top_logprobs."""
        return self.chat_many([ChatRequest(messages, **params)], validate=validate, progress=False)[0]

    def chat_many(
        self,
        requests: list[ChatRequest],
        validate: Callable[[str], object] | None = None,
        progress: bool = True,
        desc: str = "endpoint",
    ) -> list[Reply]:
        """Replies in request order; up to `concurrency` requests in flight. Cached replies cost nothing.

        Every fresh reply is checked before it is cached: a request with `logprobs=True` needs log-probabilities in
        its reply, then `validate(text)` must not raise ValueError. A reply that fails stops the run with an
        `EndpointReplyError` (carrying the request index and the reply) and is not cached. Cached replies that fail
        are asked again.
        """
        from tqdm.auto import tqdm

        replies: list[Reply | None] = [self._cached_valid(request, validate) for request in requests]
        todo = [i for i, reply in enumerate(replies) if reply is None]
        with tqdm(total=len(requests), desc=desc, unit="request", disable=not progress) as bar:
            bar.update(len(requests) - len(todo))
            if todo:
                fresh = _run_coroutine(self._run(requests, todo, validate, bar))
                for index, reply in fresh.items():
                    replies[index] = reply
        return replies  # type: ignore[return-value]

    async def _run(self, requests, todo, validate, bar) -> dict[int, Reply]:
        import openai

        # a key in the base URL's query string (Azure's api-key=...): sent with every request, shown redacted
        base, _, query = self.base_url.partition("?")
        client = openai.AsyncOpenAI(
            base_url=base,
            default_query=dict(parse_qsl(query)) or None,
            # openai insists on a key; local servers ignore the placeholder
            api_key=self._api_key or "no-key",
            timeout=self.config.timeout,
            max_retries=self.config.max_retries,
            default_headers=self.config.headers,
        )
        semaphore = asyncio.Semaphore(self.config.concurrency)
        results: dict[int, Reply] = {}

        async def one(index: int) -> None:
            request = requests[index]
            async with semaphore:
                with self._lock:
                    self.calls_made += 1
                reply = await self._request(client, request)
            problem = reply_problem(request, reply, validate)
            if problem is not None:
                problem, text = self.redact(problem), self.redact(_short(reply.text))
                raise EndpointReplyError(
                    f"request {index}: the reply was rejected ({problem}); not cached. Reply was: {text}",
                    index,
                    text,
                    problem,
                )
            self.store(request, reply)
            results[index] = reply
            bar.update(1)

        async with client:
            tasks = [asyncio.create_task(one(index)) for index in todo]
            try:
                for task in asyncio.as_completed(tasks):
                    await task
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return results

    async def _request(self, client, request: ChatRequest) -> Reply:
        import openai

        base, _, query = self.redact.url(self.base_url).partition("?")
        where = f"{base.rstrip('/')}/chat/completions" + (f"?{query}" if query else "")
        try:
            completion = await client.chat.completions.create(
                model=self.model, messages=request.messages, **request.params()
            )
        except openai.APITimeoutError:
            raise EndpointError(
                f"{where}: timed out after {self.config.timeout:g} s, {self.config.max_retries + 1} attempts"
            ) from None
        except openai.APIConnectionError as error:
            cause = error.__cause__ or error
            raise EndpointError(
                f"{where}: cannot connect after {self.config.max_retries + 1} attempts ({type(cause).__name__})"
            ) from None
        except openai.APIStatusError as error:
            retried = error.status_code in (408, 409, 429) or error.status_code >= 500
            attempts = f" after {self.config.max_retries + 1} attempts" if retried else ""
            body = _short(self.redact(error.response.text if error.response is not None else str(error.body)))
            raise EndpointError(f"{where}: HTTP {error.status_code}{attempts}: {body}") from None
        except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError) as error:
            raise EndpointError(
                f"{where}: the reply is not an OpenAI chat completion ({_short(self.redact(str(error)))})"
            ) from None
        try:
            reply = _to_reply(completion, where)
        except EndpointError as error:
            raise EndpointError(self.redact(str(error))) from None
        # a server that echoes a secret into its reply: the text is kept, cached and written without it
        return Reply(self.redact(reply.text), reply.logprobs, cached=False)


def reply_problem(request: ChatRequest, reply: Reply, validate) -> str | None:
    """Why `reply` cannot serve the caller of `request` (and must not be cached), or None when it can."""
    if request.logprobs and not (reply.logprobs and (request.top_logprobs is None or reply.logprobs[0].top)):
        return "the request asked for log-probabilities and the reply has none"
    if validate is not None:
        try:
            validate(reply.text)
        except ValueError as error:
            return str(error)
    return None


def _run_coroutine(coroutine):
    """`asyncio.run`, also from code that already runs an event loop (a notebook): then in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _to_reply(completion, where: str) -> Reply:
    choices = getattr(completion, "choices", None)
    if isinstance(completion, str) or not choices:
        raise EndpointError(f"{where}: the reply is not an OpenAI chat completion: {_short(repr(completion))}")
    choice = choices[0]
    text = getattr(getattr(choice, "message", None), "content", None)
    if not isinstance(text, str):
        raise EndpointError(f"{where}: the chat completion has no text content: {_short(repr(choice))}")
    logprobs = None
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if content:
        logprobs = [
            TokenLogprob(t.token, float(t.logprob), {alt.token: float(alt.logprob) for alt in (t.top_logprobs or [])})
            for t in content
        ]
    return Reply(text, logprobs, cached=False)


def _short(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."
