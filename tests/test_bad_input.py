"""Bad or unusual input files give one line naming file, row and field (exit 1), or the right result; never a
traceback, never a silently dropped image or a row counted twice."""

import json
import shutil
from pathlib import Path

import pytest
from cli_checks import one_line_error, run, write_jsonl

from data_tools.errors import IMAGE_OUTSIDE_ROOT, CommandError, RowError
from rlhfv.feedback.instructions import read_instructions


FIXTURES = Path(__file__).parent / "fixtures"
POPE = FIXTURES / "pope"


def png(path, color=(255, 0, 0)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), color).save(path)
    return path


# ---- item 9: empty files and files without a JSON object -----------------------------------------------------
@pytest.mark.parametrize("text", ["", "\n\n", "[1, 2]\n", '"just a string"\n3\n', "not json at all\n"])
def test_prompts_files_without_a_row_are_one_line(tmp_path, text):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(text)
    with pytest.raises(CommandError) as caught:
        read_instructions(prompts, tmp_path / "images")
    assert "prompts.jsonl" in str(caught.value) and "\n" not in str(caught.value)


def test_layout_detection_reads_short_files(tmp_path):
    from data_tools.readers import open_inputs

    path = tmp_path / "short.jsonl"
    path.write_text('"a"\n{"question": "Q?", "chosen": "a", "rejected": "b"}\n')
    assert open_inputs([str(path)])[0].columns() == {"question", "chosen", "rejected"}
    path.write_text("")
    assert open_inputs([str(path)])[0].columns() == set()


def test_feedback_on_an_empty_prompts_file_is_one_line(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("")
    (tmp_path / "policy").mkdir()
    argv = ["feedback", "--prompts", prompts, "--policy", tmp_path / "policy", "--output_dir", tmp_path / "fb"]
    assert run([*argv, "--no-progress"]) == 1
    one_line_error(capsys, "prompts.jsonl", "holds no rows")


# ---- item 10: POPE question ids --------------------------------------------------------------------------------
def test_pope_split_with_a_duplicated_question_id_is_refused(tmp_path, capsys):
    pope = tmp_path / "pope"
    shutil.copytree(POPE, pope)
    split = pope / "coco_pope_random.json"
    lines = split.read_text().splitlines()
    split.write_text("\n".join([*lines, lines[0]]) + "\n")
    assert run(["eval", "pope", "score", "--pope-dir", pope, "--answers", pope / "answers"]) == 1
    one_line_error(capsys, f"coco_pope_random.json:line {len(lines) + 1}", "'question_id'", "duplicate id '1'")


def test_pope_split_with_a_non_text_image_is_one_line(tmp_path, capsys):
    pope = tmp_path / "pope"
    shutil.copytree(POPE, pope)
    split = pope / "coco_pope_random.json"
    rows = [json.loads(line) for line in split.read_text().splitlines()]
    rows[1]["image"] = 7
    write_jsonl(split, rows)
    assert (
        run(
            [
                "eval",
                "pope",
                "generate",
                "--pope-dir",
                pope,
                "--images",
                tmp_path,
                "--model",
                tmp_path / "m",
                "--output_dir",
                tmp_path / "out",
            ]
        )
        == 1
    )
    one_line_error(capsys, "coco_pope_random.json:line 2", "'image'")


# ---- item 11: non-UTF-8 and empty answer files --------------------------------------------------------------
def test_non_utf8_answers_are_one_line(tmp_path, capsys):
    answers = tmp_path / "a.jsonl"
    answers.write_bytes(b'{"id": "1", "answer": "A dog."}\n{"id": "2", "answer": "A caf\xe9."}\n')
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps({"1": ["dog"], "2": ["cup"]}))
    assert run(["eval", "chair", "--answers", answers, "--objects", objects]) == 1
    one_line_error(capsys, "a.jsonl:line 2", "not UTF-8")
    pope_answers = tmp_path / "pope_answers"
    shutil.copytree(POPE / "answers", pope_answers)
    (pope_answers / "popular.jsonl").write_bytes(b'{"id": "1", "answer": "\xff"}\n')
    assert run(["eval", "pope", "score", "--pope-dir", POPE, "--answers", pope_answers]) == 1
    one_line_error(capsys, "popular.jsonl:line 1", "not UTF-8")


def test_judge_on_an_empty_answers_file_is_one_line(tmp_path, capsys):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("")
    assert run(["eval", "judge", "--answers", answers, "--model", "judge", "--base-url", "http://127.0.0.1:9/v1"]) == 1
    one_line_error(capsys, "answers.jsonl", "no answers")


# ---- item 15: image columns under other names, ids, LLaVA-RLHF's closing model turn ---------------------------
def test_rlaif_v_prompt_file_keeps_images_and_ids(tmp_path):
    png(tmp_path / "img" / "a.png")
    png(tmp_path / "img" / "b.png", (0, 0, 255))
    rows = [
        {"image_path": "img/a.png", "question": "Describe the image.", "ds_question_id": "q-1"},
        {"image_path": "img/b.png", "question": "Describe the image.", "ds_question_id": "q-2"},
        {"image_path": "img/a.png", "question": "Describe the image.", "ds_question_id": "q-3"},
    ]
    result = read_instructions(write_jsonl(tmp_path / "rlaifv_prompts.jsonl", rows), tmp_path / "images")
    got = [(i.id, i.image, i.image_path) for i in result.instructions]
    assert got == [
        ("q-1", "img/a.png", str(tmp_path / "img" / "a.png")),
        ("q-2", "img/b.png", str(tmp_path / "img" / "b.png")),
    ]
    # the same image and question: merged, and reported (not rows about different images)
    assert result.instructions[0].merged == [{"id": "q-3", "where": f"{tmp_path / 'rlaifv_prompts.jsonl'}:line 3"}]


def test_mmhal_template_images_come_from_image_src(tmp_path):
    items = json.loads((FIXTURES / "mmhal" / "response_template.json").read_text())
    for item in items:
        item["question"] = "What is in the picture?"  # one question for every image: no merging across images
    path = tmp_path / "response_template.json"
    path.write_text(json.dumps(items))
    result = read_instructions(path, tmp_path / "images")
    assert len(result.instructions) == len(items) and result.merged_rows == 0
    first = result.instructions[0]
    assert first.image == items[0]["image_src"] and first.image_path == str(tmp_path / "mmhal_00_o.jpg")


def test_an_image_column_no_rule_places_is_refused_by_name(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "question": "Q?", "picture_file": "x.png"}])
    with pytest.raises(CommandError, match="field 'picture_file'"):
        read_instructions(
            path,
            tmp_path / "images",
            fail=lambda reject: (_ for _ in ()).throw(
                CommandError(f"{reject['where']}, field '{reject['field']}': {reject['detail']}")
            ),
        )
    result = read_instructions(path, tmp_path / "images")
    assert result.instructions == [] and result.rejects[0]["field"] == "picture_file"
    # columns about an image that are not one are fine (MMHal's image_id and image_content)
    ok = write_jsonl(tmp_path / "ok.jsonl", [{"id": "b", "question": "Q?", "image_id": 3, "image_content": ["Cat"]}])
    assert [i.image for i in read_instructions(ok, tmp_path / "images").instructions] == [None]


LLAVA_RLHF_ROW = {
    "id": "GQA_1",
    "image": "img/a.png",
    "conversations": [
        {"from": "human", "value": "<image>\nWhat is on the table?"},
        {"from": "gpt", "value": "A laptop."},
    ],
    "output_1": {"from": "llava", "value": "A laptop and a cup."},
    "output_2": {"from": "llava", "value": "A laptop, a cup and a cat."},
    "preference": 1,
    "hallucination": 1,
}


def test_llava_rlhf_rows_ending_with_the_models_turn(tmp_path):
    from data_tools.formats import llava_rlhf

    parsed = llava_rlhf.parse(LLAVA_RLHF_ROW)
    assert parsed.prompt == [{"role": "user", "content": "What is on the table?"}]
    assert (parsed.chosen, parsed.rejected) == ("A laptop and a cup.", "A laptop, a cup and a cat.")
    wrapped = {**LLAVA_RLHF_ROW, "conversations": [LLAVA_RLHF_ROW["conversations"]]}
    assert llava_rlhf.parse(wrapped).prompt == parsed.prompt
    png(tmp_path / "img" / "a.png")
    result = read_instructions(write_jsonl(tmp_path / "human_pref.jsonl", [LLAVA_RLHF_ROW]), tmp_path / "images")
    assert [(i.id, i.question) for i in result.instructions] == [("GQA_1", "What is on the table?")]
    # a conversation of the model's turn alone has no question
    with pytest.raises(RowError, match="must end with the human's question"):
        llava_rlhf.parse({**LLAVA_RLHF_ROW, "conversations": [{"from": "gpt", "value": "Hi."}]})


# ---- item 17: --strict-paths ----------------------------------------------------------------------------------
def test_feedback_strict_paths_refuses_images_outside_the_prompts_folder(tmp_path):
    png(tmp_path / "outside.png")
    path = write_jsonl(tmp_path / "data" / "p.jsonl", [{"id": "a", "question": "Q?", "image": "../outside.png"}])
    assert read_instructions(path, tmp_path / "images").instructions[0].image_path == str(tmp_path / "outside.png")
    result = read_instructions(path, tmp_path / "images", strict_paths=True)
    assert result.instructions == [] and result.rejects[0]["reason"] == IMAGE_OUTSIDE_ROOT
    assert result.rejects[0]["field"] == "image"


def test_feedback_strict_paths_flag(tmp_path, capsys):
    png(tmp_path / "outside.png")
    prompts = write_jsonl(tmp_path / "data" / "p.jsonl", [{"id": "a", "question": "Q?", "image": "../outside.png"}])
    (tmp_path / "policy").mkdir()
    argv = ["feedback", "--prompts", prompts, "--policy", tmp_path / "policy", "--output_dir", tmp_path / "fb"]
    assert run([*argv, "--strict-paths", "--no-progress"]) == 1
    one_line_error(capsys, "p.jsonl:line 1", "field 'image'", "outside the image root")


def test_eval_generate_strict_paths(tmp_path, capsys):
    png(tmp_path / "outside.png")
    prompts = write_jsonl(tmp_path / "data" / "p.jsonl", [{"id": "a", "question": "Q?", "image": "../outside.png"}])
    argv = ["eval", "generate", "--model", tmp_path / "m", "--prompts", prompts, "--output_dir", tmp_path / "a.jsonl"]
    assert run([*argv, "--strict-paths"]) == 1
    one_line_error(capsys, "p.jsonl:line 1", "field 'image'", "--strict-paths")


def test_benchmark_generate_strict_paths(tmp_path, capsys):
    pope = tmp_path / "pope"
    pope.mkdir()
    split = [{"question_id": 1, "image": "../secret.jpg", "text": "Is there a dog?", "label": "yes"}]
    write_jsonl(pope / "coco_pope_random.json", split)
    (tmp_path / "images").mkdir()
    argv = [
        "eval",
        "pope",
        "generate",
        "--pope-dir",
        pope,
        "--images",
        tmp_path / "images",
        "--model",
        tmp_path / "m",
        "--output_dir",
        tmp_path / "answers",
        "--strict-paths",
    ]
    assert run(argv) == 1
    one_line_error(capsys, "coco_pope_random.json:line 1", "leads outside")


def test_eval_prompts_image_under_another_name(tmp_path):
    from rlhfv.generation.generate import read_prompts

    png(tmp_path / "a.png")
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "question": "Q?", "image_path": "a.png"}])
    row = read_prompts(path)[0]
    assert row["_image_path"] == tmp_path / "a.png" and row["image"] == "a.png"


AMBER, OHB = FIXTURES / "amber", FIXTURES / "object_halbench"


@pytest.mark.parametrize(
    "argv",
    [
        [
            "eval",
            "amber",
            "score",
            "--answers",
            AMBER / "answers.json",
            "--queries",
            AMBER / "query_all.json",
            "--annotations",
            AMBER / "annotations.json",
            "--relation",
            "BAD",
            "--safe-words",
            AMBER / "safe_words.txt",
            "--allow-approximate",
        ],
        [
            "eval",
            "amber",
            "score",
            "--answers",
            AMBER / "answers.json",
            "--queries",
            AMBER / "query_all.json",
            "--annotations",
            AMBER / "annotations.json",
            "--relation",
            AMBER / "relation.json",
            "--safe-words",
            "BAD",
            "--allow-approximate",
        ],
        [
            "eval",
            "object-halbench",
            "score",
            "--questions",
            OHB / "obj_halbench_questions.jsonl",
            "--answers",
            OHB / "answers.jsonl",
            "--instances",
            "BAD",
            "--captions",
            OHB / "captions_val2014.json",
        ],
        ["eval", "chair", "--answers", OHB / "answers.jsonl", "--objects", "BAD"],
        [
            "eval",
            "chair",
            "--answers",
            OHB / "answers.jsonl",
            "--objects",
            OHB / "instances_val2014.json",
            "--synonyms",
            "BAD",
        ],
        ["eval", "judge", "--answers", OHB / "answers.jsonl", "--prompt-file", "BAD", "--model", "m"],
        ["eval", "report", "--result", "a=BAD"],
    ],
)
def test_every_non_utf8_input_is_one_line(tmp_path, capsys, argv):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"a": "caf\xe9"}\n')
    assert run([str(bad) if a == "BAD" else str(a).replace("=BAD", f"={bad}") for a in argv]) == 1
    one_line_error(capsys, "bad.json:line 1", "not UTF-8")


def test_mmhal_judge_on_an_empty_response_list_is_one_line(tmp_path, capsys):
    responses = tmp_path / "filled.json"
    responses.write_text("[]")
    assert run(["eval", "mmhal", "judge", "--responses", responses, "--model", "m", "--allow-missing"]) == 1
    one_line_error(capsys, "filled.json", "no answered item")


def _objhal_score(questions=OHB / "obj_halbench_questions.jsonl", answers=OHB / "answers.jsonl"):
    return ["eval", "object-halbench", "score", "--questions", questions, "--answers", answers,
            "--instances", OHB / "instances_val2014.json", "--captions", OHB / "captions_val2014.json",
            "--synonyms", OHB / "synonyms_refine.txt", "--allow-approximate"]  # fmt: skip


def _amber_score(questions=AMBER / "query_all.json", answers=AMBER / "answers.json"):
    return ["eval", "amber", "score", "--queries", questions, "--answers", answers,
            "--annotations", AMBER / "annotations.json", "--relation", AMBER / "relation.json",
            "--safe-words", AMBER / "safe_words.txt", "--allow-approximate"]  # fmt: skip


@pytest.mark.parametrize("text", ["", "\n\n", "[]"])
@pytest.mark.parametrize(
    ("build", "empty_role", "extra", "message"),
    [
        (_objhal_score, "questions", [], "no questions"),
        (_objhal_score, "answers", [], "no answers"),
        (_objhal_score, "answers", ["--allow-missing"], "no answers"),
        (_amber_score, "questions", [], "no queries"),
        (_amber_score, "answers", [], "no answers"),
        (_amber_score, "answers", ["--allow-missing"], "no answers"),
    ],
)
def test_an_empty_benchmark_file_is_one_line_naming_it(tmp_path, capsys, text, build, empty_role, extra, message):
    # scored, an empty question or answer file would report zero items and exit 0
    empty = tmp_path / f"empty_{empty_role}{'.json' if text == '[]' else '.jsonl'}"
    empty.write_text(text, encoding="utf-8")
    assert run([*build(**{empty_role: empty}), *extra, "--output_dir", tmp_path / "out"]) == 1
    one_line_error(capsys, str(empty), message)
    assert not (tmp_path / "out").exists()
