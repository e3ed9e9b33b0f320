"""rlhfv's benchmark scorers against the numbers the official scoring scripts print on the same fixture files.

The expected numbers (tests/fixtures/*/expected_official.json) come from running each benchmark's own code, unchanged,
on these fixtures, with tests/language_standins.py in place of NLTK's data and spaCy's models; each file names the
repository, file and commit. rlhfv gets the same stand-ins here (`--language-tools language_standins:tools`).
"""

import json
import sys
from pathlib import Path

import pytest

from rlhfv.cli import main as rlhfv_main


TESTS = Path(__file__).parent
FIXTURES = TESTS / "fixtures"
AMBER = FIXTURES / "amber"
sys.path.insert(0, str(TESTS))  # language_standins, for --language-tools
STANDINS = ["--language-tools", "language_standins:tools"]


def run(argv) -> int:
    return rlhfv_main([str(a) for a in argv])


def expected(folder: Path) -> dict:
    return json.loads((folder / "expected_official.json").read_text())["cases"]


# ---- AMBER ----------------------------------------------------------------------------------------------------------
def amber_args(answers, out, queries="query_all.json", *extra):
    return ["eval", "amber", "score", "--answers", AMBER / answers, "--queries", AMBER / queries,
            "--annotations", AMBER / "annotations.json", "--relation", AMBER / "relation.json",
            "--safe-words", AMBER / "safe_words.txt", "--output_dir", out, *extra]  # fmt: skip


@pytest.mark.parametrize("case, queries", [("all", "query_all.json"), ("generative_only", "query_generative.json")])
def test_amber_equals_inference_py(tmp_path, capsys, case, queries):
    want = expected(AMBER)[case]
    out = tmp_path / "amber.json"
    assert run(amber_args(want["answers"], out, queries, *STANDINS)) == 0
    rep = json.loads(out.read_text())
    got = {"generative": {k: rep["generative"][k] for k in ("chair", "cover", "hal", "cog")}}
    for part in want["printed"]:
        if part != "generative":
            got[part] = {k: rep["discriminative"][part][k] for k in ("accuracy", "precision", "recall", "f1")}
    assert got == want["printed"]  # every number inference.py printed, exactly
    assert rep["mode"] == "official (AMBER inference.py)" and not rep["approximate"]
    assert "language_standins:tools" in capsys.readouterr().out


def test_amber_cases_of_the_official_protocol():
    """The cases behind the numbers: nouns only (not the modal 'can' or the verb 'watch'), the vocabulary's case
    ('TV'), exact-plus-first-similar for Cog, safe words in the denominator, exact 'Yes'/'No'."""
    import language_standins

    from rlhfv.eval import amber

    association = amber.load_association(AMBER / "relation.json")
    vocabulary = set(association) | {w for words in association.values() for w in words}
    safe = amber.load_safe_words(AMBER / "safe_words.txt")
    tools = language_standins.tools()
    annotations = amber.load_annotations(AMBER / "annotations.json")

    def counts(item, answer=None):
        answer = (
            answer if answer is not None else json.loads((AMBER / "answers.json").read_text())[item - 1]["response"]
        )
        return amber.score_generative(annotations[str(item)], answer, association, safe, vocabulary, tools)

    second = counts(2)  # "... A dog can be seen.": "can" is a modal, not the vocabulary's "can"
    assert "can" not in second["object_words"] and second["hallucinated_words"] == ["tree", "dog"]
    fourth = counts(4)  # "watches" is a verb; "TV" keeps its case and covers the television; the monitor is near TV
    assert "watch" not in fourth["object_words"] and (fourth["covered"], fourth["truth"]) == (2, 2)
    fifth = counts(5)  # "plants": exact match with the 2nd likely hallucination and similar to the 1st: both count
    assert (fifth["produced"], fifth["hallu"]) == (2, 2) and fifth["hallucinated_words"] == ["plant"]
    sixth = counts(6)  # the safe word "sky" counts in CHAIR's denominator, never as a hallucination
    assert sixth["object_words"] == ["boy", "bench", "sky", "sky"] and sixth["hallucinated_words"] == []
    assert amber.read_yes_no("Yes, there is.") == "Yes, there is." and amber.read_yes_no("yes", "first-word") == "Yes"


def test_amber_first_word_is_a_named_deviation(tmp_path, capsys):
    out = tmp_path / "amber.json"
    assert run(amber_args("answers.json", out, "query_all.json", *STANDINS, "--yes-no", "first-word")) == 0
    rep = json.loads(out.read_text())
    assert rep["mode"] == "deviating: see deviations" and "first-word" in rep["deviations"][0]
    # "No.", "yes", "Yes, it is." and " No" now count as answers (official: 6 of 14 right): accuracy 10 of 14
    assert rep["discriminative"]["overall"]["accuracy"] == 71.4
    assert "deviation: --yes-no first-word" in capsys.readouterr().out


def test_amber_missing_language_resources(tmp_path, capsys, monkeypatch):
    """Without NLTK's data: one line naming the install command; with --allow-approximate every number is marked."""
    from rlhfv.eval import language

    def lookup(_model):
        raise LookupError("Resource punkt_tab not found.")

    monkeypatch.setitem(language._LOADERS, "split_sentences", lookup)
    assert run(amber_args("answers.json", tmp_path / "a.json")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "python -m nltk.downloader punkt_tab" in err[0] and "--allow-approximate" in err[0]
    assert run(amber_args("answers.json", tmp_path / "a.json", "query_all.json", "--allow-approximate")) == 0
    rep = json.loads((tmp_path / "a.json").read_text())
    assert rep["approximate"] and rep["deviations"][0].startswith("APPROXIMATE: NLTK's punkt sentence splitter")
    assert "NOT the official script" in rep["comparable_with_papers"]


def test_amber_unknown_type_names_the_row(tmp_path, capsys):
    rows = json.loads((AMBER / "annotations.json").read_text())
    rows[9]["type"] = "discriminative-existence"
    bad = tmp_path / "annotations.json"
    bad.write_text(json.dumps(rows))
    for name in ("relation.json", "safe_words.txt", "metrics.txt"):
        (tmp_path / name).write_text((AMBER / name).read_text())
    argv = amber_args("answers.json", tmp_path / "a.json", "query_all.json", *STANDINS)
    argv[argv.index(AMBER / "annotations.json")] = bad
    assert run(argv) == 1
    assert "annotations.json:row 9: field 'type' is 'discriminative-existence'" in capsys.readouterr().err


# ---- MMHal-Bench ----------------------------------------------------------------------------------------------------
MMHAL = FIXTURES / "mmhal"


def mmhal_judge(tmp_path, *extra):
    """Judge response_filled_96.json with the recorded replies (judge_replies.json) served per item."""
    from fixtures.openai_server import Server

    replies = json.loads((MMHAL / "judge_replies.json").read_text())
    scripted = {f"[mmhal-item-{i:03d}]": r["choices"][0]["message"]["content"] for i, r in enumerate(replies)}
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Image contents: {}\nQuestion: {}\nStandard answer: {}\nResponse: {}\nRate it.")
    out = tmp_path / "mmhal.json"
    with Server(scripted) as server:
        argv = ["eval", "mmhal", "judge", "--responses", MMHAL / "response_filled_96.json", "--base-url", server.url,
                "--model", "judge", "--cache-dir", tmp_path / "cache", "--prompt-file", prompt, "--output_dir", out,
                "--quiet", *extra]  # fmt: skip
        code = run(argv)
        requests = list(server.requests)
    return code, (json.loads(out.read_text()) if code == 0 else None), requests


def test_mmhal_equals_summarize_gpt_mmhal(tmp_path, capsys):
    want = expected(MMHAL)["judge_replies"]["printed"]
    code, rep, requests = mmhal_judge(tmp_path)
    assert code == 0 and rep["printed"] == want  # the three lines, as printed
    assert rep["mode"] == "official (LLaVA-RLHF summarize_gpt_mmhal.py)" and rep["judge_model"] == "judge"
    # sent as eval_gpt_mmhal.py sends it: one user message, the template filled in order, temperature 0, no limit
    first = requests[0]
    assert [m["role"] for m in first["messages"]] == ["user"] and "max_tokens" not in first
    assert first["temperature"] == 0.0
    assert first["messages"][0]["content"].startswith("Image contents: ")
    out = capsys.readouterr().out
    assert "Average score: 2.26" in out and "judge judge" in out


def test_mmhal_lenient_ratings_are_a_named_option(tmp_path, capsys):
    code, _, _ = mmhal_judge(tmp_path, "--ratings", "lenient")
    # "Rating = 3"-style forms are read, but replies with no or several ratings stop the run, naming the item
    assert code == 1 and "malformed judge reply" in capsys.readouterr().err


def test_mmhal_official_rating_reading():
    from rlhfv.eval.judge import official_rating, parse_rating

    assert official_rating("Rating: 10") == 1  # the substring test finds "rating: 1"
    assert official_rating("**Rating:** 5") == 0 and parse_rating("**Rating:** 5") == 5
    assert official_rating("Rating = 3") == 0 and parse_rating("Rating = 3") == 3
    assert official_rating("rating: 2 ... Rating: 4") == 0 and official_rating("Rating: 4\nRating: 4") == 4


# ---- Object HalBench ------------------------------------------------------------------------------------------------
OHB = FIXTURES / "object_halbench"
# The extraction prompt as a text file in the layout of the official one ({question} and {answer} filled in, sent as
# the system message); with RLHF-V's own eval/eval_gpt_obj_halbench.py as --prompt-file the messages sent were
# checked byte for byte against the ones the official script sent.
PROMPT = "Extract the objects.\n\n[Question]\n<image> {question}\n\n[Answer]\n\n{answer}\n\nReply with a JSON list."


def ohb_score(tmp_path, *extra):
    return ["eval", "object-halbench", "score", "--questions", OHB / "obj_halbench_questions.jsonl",
            "--answers", OHB / "answers.jsonl", "--instances", OHB / "instances_val2014.json",
            "--captions", OHB / "captions_val2014.json", "--synonyms", OHB / "synonyms_refine.txt",
            *STANDINS, "--output_dir", tmp_path / "ohb.json", "--details", tmp_path / "d.jsonl", *extra]  # fmt: skip


def test_object_halbench_rule_equals_official(tmp_path, capsys):
    want = expected(OHB)["rule"]
    assert run(ohb_score(tmp_path)) == 0
    rep = json.loads((tmp_path / "ohb.json").read_text())
    assert rep["printed"] == want["summary_printed"] and rep["printed_eval"] == want["eval_printed"]
    assert rep["mode"] == "official (eval_gpt_obj_halbench.py without --use_gpt)"
    details = {d["id"]: d for d in map(json.loads, (tmp_path / "d.jsonl").read_text().splitlines())}
    # two-word names: "train track" is no train, "toilet seat" is a toilet, "passenger train" a train
    assert details["6"]["names"] == [["toilet", "toilet"], ["toilet", "toilet"], ["train", "train"]]
    # the benchmark's table: desk -> dining table and mother -> person; a mug is nothing
    assert details["7"]["names"] == [["mother", "person"], ["desk", "dining table"], ["laptop", "laptop"]]


def test_object_halbench_llm_equals_official(tmp_path, capsys):
    from fixtures.openai_server import Server

    want = expected(OHB)["llm"]
    rows = [json.loads(line) for line in (OHB / "answers.jsonl").read_text().splitlines()]
    replies = json.loads((OHB / "extractor_replies.json").read_text())
    texts = {row["id"]: row["answer"].replace("Assistant:", "").strip() for row in rows}
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT)
    with Server({f"\n\n{texts[key]}\n\n": reply for key, reply in replies.items()}) as server:
        assert run(ohb_score(tmp_path, "--extract", "llm", "--prompt-file", prompt, "--base-url", server.url,
                             "--quiet", "--cache-dir", tmp_path / "cache")) == 0  # fmt: skip
        requests = list(server.requests)
    rep = json.loads((tmp_path / "ohb.json").read_text())
    assert rep["printed"] == want["summary_printed"] and rep["printed_eval"] == want["eval_printed"]
    # the official extractor is the default model; answers of <= 3 words are not sent; system message, T 0.2
    assert rep["extractor_model"] == "gpt-3.5-turbo-0613" and len(requests) == want["requests_sent"] == 9
    assert {r["model"] for r in requests} == {"gpt-3.5-turbo-0613"}
    assert all([m["role"] for m in r["messages"]] == ["system"] for r in requests)
    assert all(r["temperature"] == 0.2 and r["max_tokens"] == 512 for r in requests)
    assert any("<image> Describe this image in detail.\n\n[Answer]\n\nA mother sits" in r["messages"][0]["content"]
               for r in requests)  # fmt: skip
    details = {d["id"]: d for d in map(json.loads, (tmp_path / "d.jsonl").read_text().splitlines())}
    # baby/adult + animal is the animal; the repeated dog counts once; "coffee mug" (not in the table) is dropped
    assert details["5"]["names"] == [["elephant", "elephant"], ["dog", "dog"], ["frisbee", "frisbee"],
                                     ["person", "person"]]  # fmt: skip
    assert details["7"]["names"] == [["mother", "person"], ["desk", "dining table"], ["laptop", "laptop"]]
    assert details["3"]["extracted"] == ["cars", "field"]  # a reply with text before its JSON list: the last line


def test_object_halbench_extractor_replies_are_checked_before_they_are_cached(tmp_path, capsys):
    # a reply the official parse_object_list cannot read (no JSON, or JSON that is no list) is never cached: the run
    # stops on one line naming the answer, and a rerun once the server is fixed asks again (and scores as official)
    from fixtures.openai_server import Server

    want = expected(OHB)["llm"]
    rows = [json.loads(line) for line in (OHB / "answers.jsonl").read_text().splitlines()]
    replies = json.loads((OHB / "extractor_replies.json").read_text())
    texts = {row["id"]: row["answer"].replace("Assistant:", "").strip() for row in rows}
    prompt, cache = tmp_path / "prompt.txt", tmp_path / "cache"
    prompt.write_text(PROMPT)
    scripted = {f"\n\n{texts[key]}\n\n": reply for key, reply in replies.items()}
    bad = {"7": "Objects: mother, desk, laptop.", "1": "42"}
    for key, reply in bad.items():
        scripted[f"\n\n{texts[key]}\n\n"] = reply
    argv = ohb_score(tmp_path, "--extract", "llm", "--prompt-file", prompt, "--quiet", "--cache-dir", cache)

    def cached_texts():
        return [json.loads(path.read_text())["reply"]["text"] for path in cache.glob("*.json")]

    with Server(scripted) as server:
        assert run([*argv, "--base-url", server.url]) == 1
        line = one_error_line(capsys)
        assert "answers.jsonl:line" in line and "not a JSON list" in line and "Traceback" not in line
        assert not set(bad.values()) & set(cached_texts())
        assert not (tmp_path / "ohb.json").exists()

        for key in bad:  # the server is fixed
            scripted[f"\n\n{texts[key]}\n\n"] = replies[key]
        before = len(server.requests)
        assert run([*argv, "--base-url", server.url]) == 0
        asked_again = [r["messages"][0]["content"] for r in server.requests[before:]]
        assert all(any(texts[key] in content for content in asked_again) for key in bad)
        rep = json.loads((tmp_path / "ohb.json").read_text())
        assert rep["printed"] == want["summary_printed"] and rep["printed_eval"] == want["eval_printed"]
        assert sorted(cached_texts()) == sorted(replies.values())

        # a bad reply already in the cache (kept by a version that did not check) is asked again, the rest is not
        for path in cache.glob("*.json"):
            entry = json.loads(path.read_text())
            if entry["reply"]["text"] == replies["7"]:
                entry["reply"]["text"] = bad["7"]
                path.write_text(json.dumps(entry))
        before = len(server.requests)
        assert run([*argv, "--base-url", server.url, "--overwrite"]) == 0
        assert [texts["7"] in r["messages"][0]["content"] for r in server.requests[before:]] == [True]
    assert json.loads((tmp_path / "ohb.json").read_text())["printed"] == want["summary_printed"]


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_object_halbench_without_the_benchmark_files_is_marked(tmp_path, capsys):
    argv = ohb_score(tmp_path)
    del argv[argv.index("--synonyms") : argv.index("--synonyms") + 2]
    assert run(argv) == 0
    rep = json.loads((tmp_path / "ohb.json").read_text())
    assert rep["mode"] == "deviating: see deviations" and rep["synonyms"] == "rlhfv"
    assert rep["comparable_with_papers"].startswith("NOT comparable with papers: rlhfv's own synonym table")
