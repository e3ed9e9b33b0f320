"""Every command keeps the converter's promises about its outputs: an output is never an input nor holds one, an
existing output is replaced only with --overwrite, a write is staged and swapped in, and resume counts only complete
rows. Each case is a one-line error (exit 1) with the input left byte for byte as it was."""

import json
import shutil
from pathlib import Path

import pytest
from cli_checks import one_line_error, run, write_jsonl

from data_tools.errors import CommandError


FIXTURES = Path(__file__).parent / "fixtures"
POPE = FIXTURES / "pope"


# ---- item 1: feedback ------------------------------------------------------------------------------------------
def feedback(prompts, out, policy):
    return run(
        [
            "feedback",
            "--prompts",
            prompts,
            "--policy",
            policy,
            "--output_dir",
            out,
            "--labeler",
            "self",
            "--no-progress",
        ]
    )


def test_feedback_out_holding_the_prompts_is_refused(tmp_path, capsys):
    folder = tmp_path / "d"
    prompts = write_jsonl(folder / "pairs.jsonl", [{"id": "a", "question": "What is here?"}])
    before = prompts.read_bytes()
    (tmp_path / "policy").mkdir()
    assert feedback(prompts, folder, tmp_path / "policy") == 1
    one_line_error(capsys, "--output_dir", "would overwrite the input", "pairs.jsonl")
    assert prompts.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["pairs.jsonl"]


def test_feedback_out_equal_to_the_prompts_file_is_one_line(tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"id": "a", "question": "What is here?"}])
    before = prompts.read_bytes()
    (tmp_path / "policy").mkdir()
    assert feedback(prompts, prompts, tmp_path / "policy") == 1
    one_line_error(capsys, "--output_dir", "prompts.jsonl")
    assert prompts.read_bytes() == before


def test_feedback_out_that_is_someone_elses_folder_is_refused(tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"id": "a", "question": "What is here?"}])
    (tmp_path / "policy").mkdir()
    mine = tmp_path / "mine"
    write_jsonl(mine / "pairs.jsonl", [{"keep": "me"}])  # a name feedback writes, but no feedback run
    assert feedback(prompts, mine, tmp_path / "policy") == 1
    one_line_error(capsys, "not a run of this command")
    assert json.loads((mine / "pairs.jsonl").read_text()) == {"keep": "me"}


# ---- item 2: eval reports never replace their inputs -----------------------------------------------------------
def test_chair_out_onto_its_answers_is_refused(tmp_path, capsys):
    answers = write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "image": "x.jpg", "answer": "A dog."}])
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps({"x.jpg": ["dog"]}))
    before = answers.read_bytes()
    for flag in ("--output_dir", "--details"):
        assert run(["eval", "chair", "--answers", answers, "--objects", objects, flag, answers]) == 1
        one_line_error(capsys, flag, "would overwrite the input")
        assert answers.read_bytes() == before
    # an existing report: replaced only with --overwrite
    out = tmp_path / "report.json"
    out.write_text("old")
    assert run(["eval", "chair", "--answers", answers, "--objects", objects, "--output_dir", out]) == 1
    one_line_error(capsys, "already exists; pass --overwrite")
    assert out.read_text() == "old"
    assert run(["eval", "chair", "--answers", answers, "--objects", objects, "--output_dir", out, "--overwrite"]) == 0
    assert json.loads(out.read_text())["chair_i"] == 0


def test_pope_details_onto_an_answers_file_is_refused(tmp_path, capsys):
    answers = tmp_path / "answers"
    shutil.copytree(POPE / "answers", answers)
    before = (answers / "random.jsonl").read_bytes()
    argv = ["eval", "pope", "score", "--pope-dir", POPE, "--answers", answers]
    assert run([*argv, "--details", answers / "random.jsonl"]) == 1
    one_line_error(capsys, "--details", "random.jsonl")
    assert (answers / "random.jsonl").read_bytes() == before
    # a report beside the answers is fine
    assert run([*argv, "--output_dir", answers / "pope.json"]) == 0
    assert json.loads((answers / "pope.json").read_text())["splits"]["random"]["n"] == 6


def test_report_out_onto_a_result_is_refused(tmp_path, capsys):
    result = tmp_path / "pope.json"
    assert (
        run(["eval", "pope", "score", "--pope-dir", POPE, "--answers", POPE / "answers", "--output_dir", result]) == 0
    )
    before = result.read_bytes()
    assert run(["eval", "report", "--result", f"sft={result}", "--output_dir", result]) == 1
    one_line_error(capsys, "--output_dir", "would overwrite the input")
    assert result.read_bytes() == before


# ---- item 5: a folder as a report file ------------------------------------------------------------------------
def test_pope_score_out_a_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    assert (
        run(
            [
                "eval",
                "pope",
                "score",
                "--pope-dir",
                POPE,
                "--answers",
                POPE / "answers",
                "--output_dir",
                tmp_path / "folder",
            ]
        )
        == 1
    )
    one_line_error(capsys, "is a folder; name a file")


def test_same_file_for_two_outputs_is_refused(tmp_path, capsys):
    out = tmp_path / "same.json"
    assert (
        run(
            [
                "eval",
                "pope",
                "score",
                "--pope-dir",
                POPE,
                "--answers",
                POPE / "answers",
                "--output_dir",
                out,
                "--details",
                out,
            ]
        )
        == 1
    )
    one_line_error(capsys, "--details", "is also --out")


# ---- item 3: generate resumes only from answers ----------------------------------------------------------------
def test_generate_onto_its_prompts_is_refused(tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": str(i), "question": "Hi?"} for i in range(4)])
    before = prompts.read_bytes()
    assert (
        run(["eval", "generate", "--model", tmp_path / "no-model", "--prompts", prompts, "--output_dir", prompts]) == 1
    )
    one_line_error(capsys, "--output_dir", "would overwrite the input")
    assert prompts.read_bytes() == before


def test_resume_counts_only_rows_with_an_answer(tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": str(i), "question": "Hi?"} for i in range(4)])
    copy = tmp_path / "copy.jsonl"
    shutil.copy(prompts, copy)  # a copy of the prompts given as the answers file: no row is answered
    assert run(["eval", "generate", "--model", tmp_path / "no-model", "--prompts", prompts, "--output_dir", copy]) == 1
    one_line_error(capsys, "copy.jsonl:line 1: no 'answer' field")


# ---- item 4: reward-pairs ------------------------------------------------------------------------------------
def test_reward_pairs_refuses_its_prompts_and_an_existing_dataset(tmp_path, capsys):
    from datasets import Dataset

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"id": "a", "question": "Q?", "samples": ["x", "y"]}])
    before = prompts.read_bytes()
    argv = ["reward-pairs", "--prompts", prompts, "--reward-model", tmp_path / "no-rm", "--output_dir"]
    assert run([*argv, prompts]) == 1
    one_line_error(capsys, "--output_dir", "would overwrite the input")
    assert prompts.read_bytes() == before

    existing = tmp_path / "dataset"
    Dataset.from_dict({"x": [1]}).save_to_disk(str(existing))
    capsys.readouterr()
    assert run([*argv, existing]) == 1
    one_line_error(capsys, "already exists; pass --overwrite")
    assert Dataset.load_from_disk(str(existing))["x"] == [1]


# ---- the staged write itself ---------------------------------------------------------------------------------
def test_a_failed_write_leaves_the_old_file(tmp_path):
    from data_tools.outputs import staged, write_text

    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), staged(target) as path:
        Path(path).write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    write_text(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_training_output_dir_holding_the_data_is_refused(tmp_path):
    from data_tools.outputs import check_training_output

    data = write_jsonl(tmp_path / "run" / "train.jsonl", [{"id": "a"}])
    with pytest.raises(CommandError, match="output_dir .* would overwrite the input"):
        check_training_output(str(tmp_path / "run"), [str(data), "tiny:llava"])
    check_training_output(str(tmp_path / "elsewhere"), [str(data), "tiny:llava"])
