"""The endpoint client against a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/fixtures/openai_server.py)."""

import json
import math
import time

import pytest
from fixtures.openai_server import TOP_LOGPROBS, Server

from rlhfv.cli import main as rlhfv_main
from rlhfv.endpoint import (
    ChatRequest,
    EndpointClient,
    EndpointConfig,
    EndpointError,
    EndpointReplyError,
    resolve_api_key,
)


SECRET = "sk-test-SECRET-0123456789"


@pytest.fixture
def server():
    with Server() as s:
        yield s


def client(url, tmp_path, **overrides):
    config = dict(base_url=url, model="m", cache_dir=str(tmp_path / "cache"), max_retries=2, timeout=10)
    return EndpointClient(EndpointConfig(**{**config, **overrides}))


def user(text):
    return [{"role": "user", "content": text}]


def test_chat_with_logprobs_and_cache(server, tmp_path):
    c = client(server.url, tmp_path)
    reply = c.chat(user("Is there a dog? Answer yes or no."), max_tokens=1, logprobs=True, top_logprobs=4)
    assert reply.text == "Yes" and not reply.cached
    body = server.requests[0]
    assert body["model"] == "m" and body["max_tokens"] == 1 and body["logprobs"] is True
    assert body["top_logprobs"] == 4 and body["temperature"] == 0
    assert reply.logprobs[0].token == "Yes" and reply.logprobs[0].top == TOP_LOGPROBS
    # RLAIF-V's rule: p(yes) + p(Yes) against p(no) + p(No), from the top log-probabilities
    assert reply.first_token_probability("yes", "Yes") == pytest.approx(math.exp(-0.2) + math.exp(-2.0))
    assert reply.first_token_probability("no", "No") == pytest.approx(math.exp(-2.5) + math.exp(-4.0))
    # the same request again comes from the cache, log-probabilities included; another parameter is another key
    again = c.chat(user("Is there a dog? Answer yes or no."), max_tokens=1, logprobs=True, top_logprobs=4)
    assert again.cached and again.logprobs == reply.logprobs and len(server.requests) == 1
    c.chat(user("Is there a dog? Answer yes or no."), max_tokens=2, logprobs=True, top_logprobs=4)
    assert len(server.requests) == 2


def test_retries_on_http_500_then_gives_up_when_retries_are_off(server, tmp_path):
    reply = client(server.url, tmp_path).chat(user("FLAKY one"))
    assert reply.text == "Yes"
    assert len(server.requests) == 2  # the 500, then the retry
    with pytest.raises(EndpointError, match=r"HTTP 500 after 1 attempts: .*overloaded"):
        client(server.url, tmp_path, max_retries=0).chat(user("FLAKY two"))
    assert len(server.requests) == 3


def test_timeout(server, tmp_path):
    start = time.perf_counter()
    with pytest.raises(EndpointError, match=r"timed out after 0.3 s, 1 attempts"):
        client(server.url, tmp_path, timeout=0.3, max_retries=0).chat(user("SLOW please"))
    assert time.perf_counter() - start < 1.8  # did not wait for the 2 s reply


def test_malformed_json_is_an_error_and_not_cached(server, tmp_path):
    with pytest.raises(EndpointError, match="not an OpenAI chat completion"):
        client(server.url, tmp_path, max_retries=0).chat(user("BADJSON"))
    assert not list((tmp_path / "cache").glob("*.json")) if (tmp_path / "cache").exists() else True


def test_refused_connection_after_bounded_retries(tmp_path):
    import socket

    with socket.socket() as s:  # bound, then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EndpointError, match="cannot connect after 2 attempts"):
        client(f"http://127.0.0.1:{port}/v1", tmp_path, max_retries=1).chat(user("hi"))


def test_validate_rejects_reply_without_caching_it(server, tmp_path):
    def needs_rating(text):
        if "Rating" not in text:
            raise ValueError("no rating")

    c = client(server.url, tmp_path)
    requests = [ChatRequest(user("RATE-3 a")), ChatRequest(user("GARBLED b")), ChatRequest(user("RATE-5 c"))]
    with pytest.raises(EndpointReplyError) as caught:
        c.chat_many(requests, validate=needs_rating, progress=False)
    assert caught.value.index == 1 and caught.value.reason == "no rating" and "good grade" in caught.value.reply
    cached = [json.loads(p.read_text())["reply"]["text"] for p in (tmp_path / "cache").glob("*.json")]
    assert not any("good grade" in text for text in cached)
    # a reply cached by a caller without checks is asked again by one whose check rejects it
    c.chat(user("LIST[no rating here]"))
    before = len(server.requests)
    assert c.chat(user("LIST[no rating here]")).cached and len(server.requests) == before
    with pytest.raises(EndpointReplyError):
        c.chat(user("LIST[no rating here]"), validate=needs_rating)
    assert len(server.requests) == before + 1


def test_concurrency_is_bounded_and_order_kept(server, tmp_path):
    c = client(server.url, tmp_path, concurrency=3)
    requests = [ChatRequest(user(f"HOLD LIST[item{i}]")) for i in range(7)]
    replies = c.chat_many(requests, progress=False)
    assert [r.text for r in replies] == [f"item{i}" for i in range(7)]
    assert 2 <= server.httpd.max_in_flight <= 3
    assert c.calls_made == 7


def test_api_key_from_env_or_file_never_reaches_cache_or_errors(server, tmp_path, monkeypatch):
    monkeypatch.setenv("RLHFV_TEST_KEY", SECRET)
    c = client(server.url, tmp_path, api_key_env="RLHFV_TEST_KEY")
    c.chat(user("hello"))
    assert server.httpd.authorizations[-1] == f"Bearer {SECRET}"
    with pytest.raises(EndpointError) as caught:
        c.chat(user("DENIED"))
    assert "HTTP 401" in str(caught.value) and SECRET not in str(caught.value)
    assert SECRET not in repr(c)
    key_file = tmp_path / "key.txt"
    key_file.write_text("sk-from-file\n")
    client(server.url, tmp_path, api_key_file=str(key_file)).chat(user("hello again"))
    assert server.httpd.authorizations[-1] == "Bearer sk-from-file"
    stored = "".join(p.read_text() for p in (tmp_path / "cache").glob("*.json"))
    assert "hello again" in stored and SECRET not in stored and "sk-from-file" not in stored
    assert resolve_api_key("RLHFV_UNSET_VARIABLE") is None
    with pytest.raises(EndpointError, match="empty"):
        resolve_api_key(key_file=_empty(tmp_path))


def _empty(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n")
    return path


def test_command_line_has_no_api_key_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        rlhfv_main(["eval", "judge", "--answers", "x.json", "--api-key", SECRET])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "API keys are not taken on the command line" in err and "--api-key-file" in err and SECRET not in err


def test_works_inside_a_running_event_loop(server, tmp_path):
    import asyncio

    async def notebook_cell():
        return client(server.url, tmp_path).chat(user("LIST[from a loop]"))

    assert asyncio.run(notebook_cell()).text == "from a loop"
