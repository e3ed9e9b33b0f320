"""`rlhfv inspect` on a feedback run folder, written here in the files `rlhfv feedback` writes (answers, claims with
offsets, labels with P(yes)/P(no) and a verdict, scores, pairs, pairs_stats.json)."""

import json

from rlhfv.cli import main


def write_run(folder):
    folder.mkdir()
    answers = ["A red cup. A cat sleeps.", "A red cup.", "A blue cup. A dog runs.", "A red cup."]
    rows = {
        "answers.jsonl": [{"id": "q1", "question": "Describe the image.", "answers": answers, "image": "images/q1.png"}],
        "claims.jsonl": [
            {"id": "q1", "answer_index": 0, "answer": answers[0], "claims": [
                {"text": "A red cup.", "start": 0, "end": 10}, {"text": "A cat sleeps.", "start": 11, "end": 24}]},
            {"id": "q1", "answer_index": 1, "answer": answers[1], "claims": [{"text": "A red cup.", "start": 0, "end": 10}]},
            {"id": "q1", "answer_index": 2, "answer": answers[2], "claims": [
                {"text": "A blue cup.", "start": 0, "end": 11}, {"text": "A dog runs.", "start": 12, "end": 23}]},
            {"id": "q1", "answer_index": 3, "answer": answers[3], "claims": [{"text": "A red cup.", "start": 0, "end": 10}]},
        ],
        "labels.jsonl": [
            {"id": "q1", "answer_index": 0, "labels": [{"p_yes": 0.9, "p_no": 0.1, "verdict": True},
                                                         {"p_yes": 0.2, "p_no": 0.6, "verdict": False}]},
            {"id": "q1", "answer_index": 1, "labels": [{"p_yes": 0.8, "p_no": 0.2, "verdict": True}]},
            {"id": "q1", "answer_index": 2, "labels": [{"p_yes": 0.1, "p_no": 0.9, "verdict": False},
                                                         {"p_yes": 0.3, "p_no": 0.3, "verdict": False}]},
            {"id": "q1", "answer_index": 3, "labels": [{"p_yes": 0.7, "p_no": 0.3, "verdict": True}]},
        ],
        "scores.jsonl": [
            {"id": "q1", "answer_index": 0, "score": -1, "claims": 2, "false": 1},
            {"id": "q1", "answer_index": 1, "score": 0, "claims": 1, "false": 0},
            {"id": "q1", "answer_index": 2, "score": -2, "claims": 2, "false": 2},
            {"id": "q1", "answer_index": 3, "score": 0, "claims": 1, "false": 0},
        ],
        "pairs.jsonl": [{"pair_id": "q1-1-2", "id": "q1", "question": "Describe the image.", "chosen": answers[1],
                         "rejected": answers[2], "chosen_index": 1, "rejected_index": 2, "chosen_score": 0,
                         "rejected_score": -2, "chosen_spans": [], "rejected_spans": [[0, 23]]}],
    }  # fmt: skip
    for name, records in rows.items():
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "pairs_stats.json").write_text(json.dumps({"candidate_pairs": 5, "over_cap_dropped": 1, "pairs": 1}))


def test_feedback_run_terminal_and_html(tmp_path, capsys):
    run = tmp_path / "feedback"
    write_run(run)
    page = tmp_path / "run.html"
    assert main(["inspect", str(run), "--no-color", "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert (
        "answer 0 (score -1; 1 of 2 claims false): {+A red cup.+}[P(yes) 0.90] {-A cat sleeps.-}[P(yes) 0.25]" in out
    )
    assert "chosen 1 (score 0) > rejected 2 (score -2)" in out
    # why the other five pairs of the four answers were not made
    assert "    1 vs 0: score gap 1 < min_score_gap 2" not in out
    assert "    1 vs 3: equal scores (0)" in out
    assert "    1 vs 0: identical text" not in out
    assert "    3 vs 1: identical text" not in out  # equal scores come first
    assert "    0 vs 2: dropped after pairing: over the per-instruction cap, or by length balancing" in out
    assert "    3 vs 0: dropped after pairing" in out and "    3 vs 2: dropped after pairing" in out
    assert "Showing 1 of 1 instructions" in out
    html = page.read_text()
    assert '<span class="c false" title="false; P(yes) 0.25">A cat sleeps.</span>' in html
    assert '<span class="c true" title="true; P(yes) 0.90">A red cup.</span>' in html
    assert "Pairs made: 1" in html and "equal scores (0)" in html

    assert main(["inspect", str(run), "--no-color", "--min-score-gap", "2"]) == 0
    assert "    1 vs 0: score gap 1 < min_score_gap 2" in capsys.readouterr().out
