"""Judge scoring against a real OpenAI-compatible HTTP server started on 127.0.0.1 by the test."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rlhfv.cli import main as rlhfv_main
from rlhfv.eval.io import read_rows
from rlhfv.eval.judge import QUESTION_TYPES, JudgeClient, JudgeError, judge_items, normalize_items, parse_rating


class CannedJudge(BaseHTTPRequestHandler):
    """Rates an answer "RATE-N ..." with N; "FLAKY" answers get one HTTP 500 first; "GARBLED" ones get no rating."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        with server.lock:
            server.requests.append(body)
        prompt = body["messages"][-1]["content"]
        answer = prompt.split("## Assistant's answer\n", 1)[1].split("\n", 1)[0]
        if "FLAKY" in answer:
            with server.lock:
                first = answer not in server.failed_once
                server.failed_once.add(answer)
            if first:
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b'{"error": "overloaded"}')
                return
        if "GARBLED" in answer:
            content = "The answer looks fine to me, I would give it a good grade."
        else:
            rating = re.search(r"RATE-(\d)", answer).group(1)
            content = f"The claims are checked.\nRating: {rating}"
        reply = {"choices": [{"message": {"role": "assistant", "content": content}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), CannedJudge)
    httpd.requests, httpd.failed_once, httpd.lock = [], set(), threading.Lock()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


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
    client = JudgeClient(url, "judge-model", cache_dir=tmp_path / "cache", retry_delay=0.01)
    results = judge_items(client, items, workers=3, progress=False)
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
    argv = ["eval", "judge", "--answers", str(path), "--base-url", url, "--model", "m", "--api-key", "k",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--quiet"]  # fmt: skip
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
    client = JudgeClient(url, "m", cache_dir=tmp_path / "cache", retry_delay=0.01)
    with pytest.raises(JudgeError, match=r"(?s)item 1 .*malformed judge reply.*I would give it a good grade"):
        judge_items(client, items, workers=1, progress=False)
    # malformed replies are not cached: the fixed judge gets asked again
    assert not any("GARBLED" in json.loads(p.read_text())["reply"] for p in (tmp_path / "cache").glob("*.json"))
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
    client = JudgeClient(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, retry_delay=0.01, timeout=2)
    with pytest.raises(JudgeError, match="giving up after 3 attempts"):
        client.complete([{"role": "user", "content": "hi"}])
    assert client.requests_made == 3
