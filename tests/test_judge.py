"""Judge scoring against a real OpenAI-compatible HTTP server started on 127.0.0.1 by the test."""

import json

import pytest
from fixtures.openai_server import Server

from rlhfv.cli import main as rlhfv_main
from rlhfv.endpoint import EndpointClient, EndpointConfig
from rlhfv.eval.io import read_rows
from rlhfv.eval.judge import QUESTION_TYPES, JudgeError, judge_items, load_prompt, normalize_items, parse_rating


@pytest.fixture
def server():
    with Server() as s:
        yield s.httpd, s.url


def JudgeClient(url, model, cache_dir=None, **config):  # noqa: N802 (reads like the class it builds)
    return EndpointClient(EndpointConfig(base_url=url, model=model, cache_dir=cache_dir and str(cache_dir), **config))


RATINGS = [6, 2, 4, 0, 5, 3, 1, 6, 2, 5]  # item i gets RATINGS[i]; question type = i mod 8 (MMHal's rule)


def write_items(path, answers):
    rows = [
        {
            "question": f"Question {i}?",
            "model_answer": answer,  # MMHal-Bench's own field names
            "gt_answer": "A reference answer.",
            "image_content": ["a cat", "a sofa"],
        }
        for i, answer in enumerate(answers)
    ]
    path.write_text(json.dumps(rows))
    return path


def test_parse_rating():
    assert parse_rating("Supported.\nRating: 4") == 4
    assert parse_rating("rating:5") == 5
    assert parse_rating("Rating: **3**") == 3
    assert parse_rating("Rating: 2\nSo, again, Rating: 2") == 2
    for reply in ["Looks good.", "Rating: 7", "Rating: 2 or maybe Rating: 5", "Rating: 10"]:
        with pytest.raises(ValueError):
            parse_rating(reply)


def test_scores_caches_and_retries(tmp_path, server):
    httpd, url = server
    answers = [f"RATE-{r} answer {i}" + (" FLAKY" if i == 3 else "") for i, r in enumerate(RATINGS)]
    items = normalize_items(read_rows(write_items(tmp_path / "mmhal.json", answers)))
    client = JudgeClient(url, "judge-model", cache_dir=tmp_path / "cache", concurrency=3)
    results = judge_items(client, items, progress=False)
    assert [r["rating"] for r in results] == RATINGS
    assert [r["question_type"] for r in results] == [QUESTION_TYPES[i % 8] for i in range(len(RATINGS))]
    assert len(httpd.requests) == len(RATINGS) + 1  # the FLAKY item needed a second try after its HTTP 500
    assert all(r["model"] == "judge-model" and r["temperature"] == 0 for r in httpd.requests)

    # a second run with the same model and prompts makes no HTTP request at all
    again = judge_items(JudgeClient(url, "judge-model", cache_dir=tmp_path / "cache"), items, progress=False)
    assert [r["rating"] for r in again] == RATINGS and all(r["cached"] for r in again)
    assert len(httpd.requests) == len(RATINGS) + 1
    # another judge model is another cache key
    judge_items(JudgeClient(url, "other-model", cache_dir=tmp_path / "cache"), items[:2], progress=False)
    assert len(httpd.requests) == len(RATINGS) + 3


def test_command_reports_mean_and_hallucination_rate(tmp_path, server, capsys):
    _, url = server
    answers = [f"RATE-{r} answer {i}" for i, r in enumerate(RATINGS)]
    path = write_items(tmp_path / "mmhal.json", answers)
    out = tmp_path / "report.json"
    argv = ["eval", "judge", "--answers", str(path), "--base-url", url, "--model", "m",
            "--cache-dir", str(tmp_path / "cache"), "--output_dir", str(out), "--quiet"]  # fmt: skip
    assert rlhfv_main(argv) == 0
    report = json.loads(out.read_text())
    assert report["overall"]["n"] == 10
    assert report["overall"]["mean_score"] == pytest.approx(sum(RATINGS) / 10)  # 34 / 10
    assert report["overall"]["hallucination_rate"] == pytest.approx(4 / 10)  # ratings 2, 0, 1, 2 are below 3
    # items 0 and 8 are "attribute" (index mod 8 == 0): ratings 6 and 2
    assert report["per_type"]["attribute"] == {"n": 2, "mean_score": 4.0, "hallucination_rate": 0.5}
    assert report["per_type"]["adversarial"] == {"n": 2, "mean_score": 3.5, "hallucination_rate": 0.5}
    assert report["per_type"]["other"] == {"n": 1, "mean_score": 6.0, "hallucination_rate": 0.0}


def test_malformed_reply_names_the_item_and_shows_it(tmp_path, server, capsys):
    httpd, url = server
    path = write_items(tmp_path / "mmhal.json", ["RATE-4 fine", "RATE-1 GARBLED reply"])
    items = normalize_items(read_rows(path))
    client = JudgeClient(url, "m", cache_dir=tmp_path / "cache", concurrency=1)
    with pytest.raises(JudgeError, match=r"(?s)item 1 .*malformed judge reply.*I would give it a good grade"):
        judge_items(client, items, progress=False, ratings="lenient")
    # malformed replies are not cached: the fixed judge gets asked again
    assert not any("good grade" in p.read_text() for p in (tmp_path / "cache").glob("*.json"))
    argv = ["eval", "judge", "--answers", str(path), "--base-url", url, "--model", "m",
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]  # fmt: skip
    assert rlhfv_main(argv) == 1
    assert "item 1" in capsys.readouterr().err


def test_gives_up_after_bounded_retries(tmp_path):
    # nothing listens on this port (bound, then closed): every attempt is refused
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = JudgeClient(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, timeout=2)
    items = normalize_items(read_rows(write_items(tmp_path / "mmhal.json", ["RATE-1 x"])))
    with pytest.raises(JudgeError, match="cannot connect after 3 attempts"):
        judge_items(client, items, progress=False)
    assert client.calls_made == 1  # one call; openai made its three attempts inside it


def test_prompt_file_replaces_the_rubric(tmp_path, server):
    httpd, url = server
    prompt = tmp_path / "prompt.txt"
    prompt.write_text('Objects: {image_content}\nQ: {question}\nRef: {reference}\nA: {answer}\nJSON {"x": 1}')
    items = normalize_items(read_rows(write_items(tmp_path / "mmhal.json", ["RATE-4 ok"])))
    results = judge_items(JudgeClient(url, "m"), items, progress=False, prompt_template=load_prompt(prompt))
    assert results[0]["rating"] == 4
    # MMHal-Bench's script: one user message, object annotations joined with ", ", other braces left alone
    assert httpd.requests[-1]["messages"] == [
        {
            "role": "user",
            "content": 'Objects: a cat, a sofa\nQ: Question 0?\nRef: A reference answer.\nA: RATE-4 ok\nJSON {"x": 1}',
        }
    ]
    bad = tmp_path / "bad.txt"
    bad.write_text("Rate {answer} please")
    with pytest.raises(Exception, match=r"lacks the placeholder\(s\) \{image_content\}, \{question\}, \{reference\}"):
        load_prompt(bad)
