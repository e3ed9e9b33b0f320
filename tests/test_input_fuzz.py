"""Seeded fuzzing of the other inputs: prompt files (`rlhfv feedback`, `rlhfv eval generate`) and the four benchmark
layouts (POPE, AMBER, Object HalBench, MMHal-Bench), in the manner of tests/test_convert_fuzz.py.

Valid rows of each layout are damaged in one or two ways (a field removed or given a value of another type, an id
repeated, a line cut short, bytes that are not UTF-8, a line that is not an object), then read or scored. What must
hold on every run: the command ends with exit 0 and a correct count, or with exit 1 and ONE line naming the file
(and, for a bad row, its line or row); never a traceback. Readers called directly raise only their one-line error.
"""

import json
import os
import random
import shutil
from pathlib import Path

import pytest
from fixtures.openai_server import Server

from data_tools.errors import CommandError
from rlhfv.cli import main as rlhfv_main
from rlhfv.eval.io import EvalInputError


FIXTURES = Path(__file__).parent / "fixtures"
POPE, AMBER, OHB, MMHAL = (FIXTURES / name for name in ("pope", "amber", "object_halbench", "mmhal"))
SEEDS = int(os.environ.get("FUZZ_SEEDS", 4))
ODD_VALUES = [None, "", "   ", 0, 3.5, True, [], {}, ["x"], {"value": 1}, "\ud800 lone surrogate", -1, "../../x.png"]


def damage(row: dict, rng: random.Random) -> dict:
    row = dict(row)
    for _ in range(rng.randint(1, 2)):
        if not row:
            break
        key = rng.choice(sorted(row))
        if rng.random() < 0.35:
            del row[key]
        else:
            row[key] = rng.choice(ODD_VALUES)
    return row


def encode(row, rng: random.Random) -> bytes:
    line = json.dumps(row, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    kind = rng.random()
    if kind < 0.03:
        return line[: rng.randint(0, len(line) - 1)] + b"\n"
    if kind < 0.05:
        position = rng.randint(1, len(line) - 2)
        return line[:position] + b"\xff\xfe" + line[position:] + b"\n"
    if kind < 0.07:
        return rng.choice([b"[]", b"null", b"42", b'"text"']) + b"\n"
    return line + b"\n"


def fuzz_rows(rows: list[dict], rng: random.Random, rate: float = 0.3) -> list:
    """Most rows as they were; some damaged, some repeated (a duplicate id), the order kept."""
    out = []
    for row in rows:
        out.append(damage(row, rng) if rng.random() < rate else row)
        if rng.random() < 0.03:
            out.append(row)
    return out


def write_jsonl(path: Path, rows: list, rng: random.Random) -> Path:
    path.write_bytes(b"".join(encode(row, rng) for row in rows))
    return path


def write_json_list(path: Path, rows: list, rng: random.Random) -> Path:
    text = json.dumps(rows, indent=1, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if rng.random() < 0.05:
        text = text[: rng.randint(1, len(text) - 1)]  # cut short
    path.write_bytes(text)
    return path


def run_command(argv, capsys) -> int:
    """rc 0, or rc 1 with one line on stderr; anything else (a traceback) fails the test."""
    capsys.readouterr()
    rc = rlhfv_main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if rc != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 1 and len(lines) == 1, err
    return rc


def jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---- prompt files ----------------------------------------------------------------------------------------------
def prompt_rows(rng: random.Random, folder: Path) -> list[dict]:
    from PIL import Image

    for name, color in (("a.png", "red"), ("b.png", "blue")):
        Image.new("RGB", (4, 4), color).save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    rows = []
    for index in range(30):
        key = rng.choice(["image", "image_path", "img_path", "image_src", None])
        row = {rng.choice(["id", "ds_question_id", "question_id"]): f"q{index}", "question": f"What is {index}?"}
        if key:
            row[key] = rng.choice(["a.png", "b.png", "missing.png", "broken.png", "https://x.org/a.png"])
        rows.append(row)
    return rows


@pytest.mark.parametrize("seed", range(SEEDS))
def test_fuzzed_prompt_files_for_feedback(tmp_path, seed):
    from rlhfv.feedback.instructions import read_instructions

    rng = random.Random(seed)
    path = write_jsonl(tmp_path / "prompts.jsonl", fuzz_rows(prompt_rows(rng, tmp_path), rng), rng)
    lines = sum(1 for line in path.read_bytes().splitlines() if line.strip())
    try:
        result = read_instructions(path, tmp_path / "images", strict_paths=rng.random() < 0.5)
    except CommandError as error:
        assert str(path) in str(error) and "\n" not in str(error)
        return
    # every row: one instruction, merged into one, or rejected with its line and field
    assert result.rows == lines == len(result.instructions) + result.merged_rows + len(result.rejects)
    for reject in result.rejects:
        assert reject["where"].startswith(f"{path}:line ") and reject["reason"]
    for instruction in result.instructions:
        assert instruction.question.strip()
        assert (instruction.image is None) == (instruction.image_path is None)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_fuzzed_prompt_files_for_eval_generate(tmp_path, seed):
    from rlhfv.generation.generate import read_prompts

    rng = random.Random(seed)
    rows = [{**row, "id": f"q{n}"} for n, row in enumerate(prompt_rows(rng, tmp_path))]
    path = write_jsonl(tmp_path / "prompts.jsonl", fuzz_rows(rows, rng), rng)
    try:
        read = read_prompts(path, strict_paths=rng.random() < 0.5)
    except EvalInputError as error:
        assert str(path) in str(error) and "\n" not in str(error)
    else:
        assert all(isinstance(row["question"], str) and row["question"].strip() for row in read)


# ---- POPE -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(SEEDS))
def test_fuzzed_pope_files(tmp_path, seed, capsys):
    rng = random.Random(seed)
    pope = tmp_path / "pope"
    (pope / "answers").mkdir(parents=True)
    for split_file in sorted(POPE.glob("coco_pope_*.json")):
        questions = fuzz_rows(jsonl_rows(split_file), rng, 0.2)
        write_jsonl(pope / split_file.name, questions, rng)
    for answers_file in sorted((POPE / "answers").glob("*.jsonl")):
        write_jsonl(pope / "answers" / answers_file.name, fuzz_rows(jsonl_rows(answers_file), rng, 0.2), rng)
    out = tmp_path / "pope.json"
    rc = run_command(
        [
            "eval",
            "pope",
            "score",
            "--pope-dir",
            pope,
            "--answers",
            pope / "answers",
            "--output_dir",
            out,
            *(["--allow-missing"] if rng.random() < 0.5 else []),
        ],
        capsys,
    )
    if rc == 0:  # every split's questions counted once
        report = json.loads(out.read_text())
        for split, numbers in report["splits"].items():
            questions = jsonl_rows(pope / f"coco_pope_{split}.json")
            assert numbers["n"] + len(report["missing_answers"].get(split, [])) == len(questions)
    rc = run_command(
        [
            "eval",
            "pope",
            "generate",
            "--pope-dir",
            pope,
            "--images",
            tmp_path / "images",
            "--model",
            tmp_path / "no-model",
            "--output_dir",
            tmp_path / "answers",
            "--strict-paths",
        ],
        capsys,
    )
    assert rc == 1  # no model (or a bad file) stops it before any answer


# ---- AMBER ------------------------------------------------------------------------------------------------------
def amber_score(answers, queries, out):
    return [
        "eval",
        "amber",
        "score",
        "--answers",
        answers,
        "--queries",
        queries,
        "--annotations",
        AMBER / "annotations.json",
        "--relation",
        AMBER / "relation.json",
        "--safe-words",
        AMBER / "safe_words.txt",
        "--allow-approximate",
        "--output_dir",
        out,
    ]


@pytest.mark.parametrize("seed", range(SEEDS))
def test_fuzzed_amber_files(tmp_path, seed, capsys):
    rng = random.Random(seed)
    queries = json.loads((AMBER / "query_all.json").read_text())
    answers = json.loads((AMBER / "answers.json").read_text())
    query_file = write_json_list(tmp_path / "query_all.json", fuzz_rows(queries, rng, 0.15), rng)
    answer_file = write_json_list(tmp_path / "answers.json", fuzz_rows(answers, rng, 0.3), rng)
    out = tmp_path / "amber.json"
    if run_command([*amber_score(answer_file, query_file, out), "--allow-missing"], capsys) == 0:
        report = json.loads(out.read_text())
        assert report["generative"]["n"] + report["discriminative"]["overall"]["n"] <= len(queries)
    run_command(
        [
            "eval",
            "amber",
            "generate",
            "--queries",
            query_file,
            "--images",
            tmp_path,
            "--model",
            tmp_path / "no-model",
            "--output_dir",
            tmp_path / "a.jsonl",
        ],
        capsys,
    )


# ---- Object HalBench --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(SEEDS))
def test_fuzzed_object_halbench_files(tmp_path, seed, capsys):
    rng = random.Random(seed)
    questions = write_jsonl(
        tmp_path / "questions.jsonl", fuzz_rows(jsonl_rows(OHB / "obj_halbench_questions.jsonl"), rng, 0.2), rng
    )
    answers = write_jsonl(tmp_path / "answers.jsonl", fuzz_rows(jsonl_rows(OHB / "answers.jsonl"), rng, 0.3), rng)
    out = tmp_path / "ohb.json"
    argv = [
        "eval",
        "object-halbench",
        "score",
        "--questions",
        questions,
        "--answers",
        answers,
        "--instances",
        OHB / "instances_val2014.json",
        "--captions",
        OHB / "captions_val2014.json",
        "--output_dir",
        out,
        "--allow-missing",
    ]
    if run_command(argv, capsys) == 0:
        assert json.loads(out.read_text())["responses"] <= len(jsonl_rows(OHB / "answers.jsonl"))
    run_command(
        [
            "eval",
            "object-halbench",
            "generate",
            "--questions",
            questions,
            "--images",
            tmp_path,
            "--model",
            tmp_path / "no-model",
            "--output_dir",
            tmp_path / "a.jsonl",
        ],
        capsys,
    )


# ---- MMHal-Bench ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(SEEDS))
def test_fuzzed_mmhal_files(tmp_path, seed, capsys):
    rng = random.Random(seed)
    items = json.loads((MMHAL / "response_template.json").read_text())
    for index, item in enumerate(items):
        item["model_answer"] = f"RATE-{index % 7} answer {index}"
    filled = write_json_list(tmp_path / "filled.json", fuzz_rows(items, rng, 0.2), rng)
    out = tmp_path / "mmhal.json"
    with Server() as server:
        argv = [
            "eval",
            "mmhal",
            "judge",
            "--responses",
            filled,
            "--base-url",
            server.url,
            "--model",
            "judge",
            "--cache-dir",
            tmp_path / "cache",
            "--max-retries",
            "0",
            "--quiet",
            "--output_dir",
            out,
        ]
        if run_command([*argv, *(["--allow-missing"] if rng.random() < 0.5 else [])], capsys) == 0:
            report = json.loads(out.read_text())
            assert report["items"] + len(report["missing_answers"]) == len(items)
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(filled, tmp_path / "template.json")
    run_command(
        [
            "eval",
            "mmhal",
            "generate",
            "--template",
            tmp_path / "template.json",
            "--images",
            images,
            "--model",
            tmp_path / "no-model",
            "--output_dir",
            tmp_path / "out.json",
        ],
        capsys,
    )
