"""The endpoint client checks a reply for its caller before caching it, and no secret reaches a message or a file
(a real OpenAI-compatible server on 127.0.0.1, switched to misbehave: tests/fixtures/openai_server.py)."""

import json

import pytest
from fixtures.openai_server import Server

from rlhfv.endpoint import EndpointClient, EndpointConfig, EndpointError, EndpointReplyError


SECRET = "sk-live-SECRET-9876543210abcdef"
HEADER_SECRET = "hdr-SECRET-5555"
QUERY_SECRET = "q-SECRET-4444"


@pytest.fixture
def server():
    with Server() as s:
        yield s


def client(url, tmp_path, **overrides):
    config = dict(base_url=url, model="m", cache_dir=str(tmp_path / "cache"), max_retries=0, timeout=10)
    return EndpointClient(EndpointConfig(**{**config, **overrides}))


def user(text):
    return [{"role": "user", "content": text}]


def cache_files(tmp_path):
    folder = tmp_path / "cache"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


# ---- item 6: validate before caching ------------------------------------------------------------------------
def test_a_reply_without_the_requested_logprobs_is_not_cached_and_is_asked_again_once_fixed(server, tmp_path):
    c = client(server.url, tmp_path)
    server.httpd.drop_logprobs = True
    with pytest.raises(EndpointReplyError, match="asked for log-probabilities and the reply has none"):
        c.chat(user("Is it red?"), max_tokens=1, logprobs=True, top_logprobs=5)
    assert cache_files(tmp_path) == []
    server.httpd.drop_logprobs = False
    before = len(server.requests)
    reply = c.chat(user("Is it red?"), max_tokens=1, logprobs=True, top_logprobs=5)
    assert len(server.requests) == before + 1 and not reply.cached and reply.logprobs
    assert c.chat(user("Is it red?"), max_tokens=1, logprobs=True, top_logprobs=5).cached


def test_a_cached_reply_without_logprobs_is_asked_again(server, tmp_path):
    """A cache written by a version that kept unchecked replies: the bad entry is not served."""
    c = client(server.url, tmp_path)
    server.httpd.drop_logprobs = True
    c.chat(user("Is it blue?"), max_tokens=1)  # no log-probs asked: this reply is fine, and cached
    request_params = dict(max_tokens=1, logprobs=True, top_logprobs=5)
    from rlhfv.endpoint import ChatRequest

    request = ChatRequest(user("Is it blue?"), **request_params)
    c.store(request, c.cached(ChatRequest(user("Is it blue?"), max_tokens=1)))  # a bad entry under the right key
    server.httpd.drop_logprobs = False
    before = len(server.requests)
    reply = c.chat(user("Is it blue?"), **request_params)
    assert len(server.requests) == before + 1 and reply.logprobs


def test_labeler_rerun_after_the_server_is_fixed_makes_requests(server, tmp_path):
    from rlhfv.feedback.labeling import NO_LOGPROBS, EndpointLabeler, LabelRequest

    labeler = EndpointLabeler(client(server.url, tmp_path), top_logprobs=5)
    requests = [LabelRequest("Is there a dog?", None), LabelRequest("TOP[no:-0.01] Is there a cat?", None)]
    server.httpd.drop_logprobs = True
    labels = labeler.label_many(requests, progress=False)
    assert [label.reason for label in labels] == [NO_LOGPROBS, NO_LOGPROBS]
    assert cache_files(tmp_path) == []
    server.httpd.drop_logprobs = False
    fixed = EndpointLabeler(client(server.url, tmp_path), top_logprobs=5)
    labels = fixed.label_many(requests, progress=False)
    assert fixed.client.calls_made == 2 and [label.verdict for label in labels] == [True, False]


def test_an_empty_completion_is_not_kept_as_claims(server, tmp_path):
    from rlhfv.feedback.generators import EndpointGenerator

    with pytest.raises(EndpointReplyError, match="empty completion"):
        EndpointGenerator(client(server.url, tmp_path)).complete(["LIST[]"])
    assert cache_files(tmp_path) == []


# ---- item 7: no secret in any message or file -------------------------------------------------------------
def secret_client(server, tmp_path, monkeypatch):
    monkeypatch.setenv("RLHFV_TEST_KEY", SECRET)
    return client(
        f"{server.url}?api-key={QUERY_SECRET}",
        tmp_path,
        api_key_env="RLHFV_TEST_KEY",
        headers={"X-Custom-Token": HEADER_SECRET},
    )


def assert_clean(text):
    for secret in (SECRET, HEADER_SECRET, QUERY_SECRET):
        assert secret not in text, text


def test_an_error_body_repeating_the_headers_and_url_is_redacted(server, tmp_path, monkeypatch):
    c = secret_client(server, tmp_path, monkeypatch)
    with pytest.raises(EndpointError) as caught:
        c.chat(user("ECHOAUTH please"))
    message = str(caught.value)
    assert "HTTP 400" in message and "[redacted]" in message
    # the server did get the secrets: they were sent, and only the message lost them
    assert server.httpd.authorizations[-1] == f"Bearer {SECRET}"
    assert server.httpd.paths[-1] == f"/v1/chat/completions?api-key={QUERY_SECRET}"
    assert_clean(message)
    assert_clean(repr(c))
    assert_clean(repr(c.config))


def test_a_reply_echoing_the_key_is_cached_and_returned_without_it(server, tmp_path, monkeypatch):
    c = secret_client(server, tmp_path, monkeypatch)
    reply = c.chat(user("ECHOKEY"))
    assert reply.text.startswith("You sent ") and "[redacted]" in reply.text
    assert_clean(reply.text)
    assert_clean("".join(path.read_text() for path in cache_files(tmp_path)))


def test_labels_and_rejects_of_a_skipped_failure_hold_no_secret(server, tmp_path, monkeypatch):
    from rlhfv.feedback.labeling import ENDPOINT_FAILED, EndpointLabeler, LabelRequest

    labeler = EndpointLabeler(secret_client(server, tmp_path, monkeypatch), top_logprobs=5)
    labels = labeler.label_many([LabelRequest("ECHOAUTH Is there a dog?", None)], progress=False)
    assert labels[0].reason == ENDPOINT_FAILED and "HTTP 400" in labels[0].detail
    assert_clean(json.dumps(labels[0].to_json()))


def test_redactor_patterns():
    from rlhfv.redaction import Redactor

    redact = Redactor(["supersecretvalue"])
    text = (
        "Authorization: Bearer sk-abc123 authorization=Basic dXNlcjpwYXNz "
        "url http://h/v1?api-key=K1&x=1&access_token=T2 "
        '{"api_key": "K3"} token supersecretvalue'
    )
    out = redact(text)
    for secret in ("sk-abc123", "dXNlcjpwYXNz", "K1", "T2", "K3", "supersecretvalue"):
        assert secret not in out
    assert "x=1" in out and out.count("[redacted]") == 6
    assert redact.url("https://user:pw@host/v1?key=abc") == "https://host/v1?key=[redacted]"


@pytest.mark.slow
def test_feedback_labels_and_rejects_files_hold_no_secret(tmp_path, monkeypatch, capsys):
    """`rlhfv feedback --labeler endpoint --on-error skip` against a server whose errors repeat every header."""
    from experiments.synthetic import write_prompts
    from rlhfv.cli import main as rlhfv_main
    from rlhfv.tiny_models import build_llava, build_tokenizer

    model, processor = build_llava(build_tokenizer(), seed=3)
    model.save_pretrained(tmp_path / "policy")
    processor.save_pretrained(tmp_path / "policy")
    prompts = write_prompts(tmp_path / "prompts", n=2, seed=0)
    monkeypatch.setenv("RLHFV_TEST_KEY", SECRET)
    out = tmp_path / "fb"
    with Server() as server:
        argv = [
            "feedback",
            "--prompts",
            prompts,
            "--policy",
            tmp_path / "policy",
            "--output_dir",
            out,
            "--num-samples",
            "2",
            "--max-new-tokens",
            "8",
            "--device",
            "cpu",
            "--labeler",
            "endpoint",
            "--endpoint-model",
            "m",
            "--base-url",
            f"{server.url}?api-key={QUERY_SECRET}",
            "--api-key-env",
            "RLHFV_TEST_KEY",
            "--question-template",
            "ECHOAUTH Is it true that {claim}?",
            "--endpoint-max-retries",
            "0",
            "--on-error",
            "skip",
            "--no-progress",
        ]
        assert rlhfv_main([str(a) for a in argv]) == 0
        assert server.httpd.authorizations and server.httpd.authorizations[-1] == f"Bearer {SECRET}"
    rejects = (out / "rejects.jsonl").read_text()
    assert "endpoint_failed" in rejects and "[redacted]" in rejects
    written = "".join(path.read_text(errors="replace") for path in out.rglob("*") if path.is_file())
    assert_clean(written)
    assert_clean(capsys.readouterr().err)
