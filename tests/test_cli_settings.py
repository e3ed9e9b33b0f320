"""Every command's settings: one parser (YAML + flags), checked at start, one-line errors, one output flag.

The CLI behaviour is the point, so most tests run `python -m rlhfv.cli` as a subprocess and read its exit code and
stderr. No test here loads a model: every bad setting must stop the command before anything heavy starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from data_tools.errors import CommandError


ROOT = Path(__file__).resolve().parents[1]


def rlhfv(*argv, cwd=None, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "rlhfv.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def one_line_error(result, *words, code=1):
    """Exit `code`, no traceback, and the last stderr line names every word."""
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in last, (word, last)
    return last


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"id": "a", "question": "What is shown?"}) + "\n")
    return path


# ---- the parser itself ---------------------------------------------------------------------------------------------
@dataclass
class Example:
    name: str = field(default="", metadata={"help": "A name.", "required": True})
    count: int = field(default=2, metadata={"help": "How many."})
    rate: float = field(default=0.5, metadata={"help": "A rate."})
    loud: bool = field(default=False, metadata={"help": "Say more."})
    out: str = field(default="", metadata={"help": "Output.", "flag": "output_dir", "deprecated": ("--out", "-o")})


def parse(argv, tmp_path=None):
    import argparse

    from data_tools.settings import add_settings_arguments, read_settings

    parser = argparse.ArgumentParser(prog="example")
    add_settings_arguments(parser, Example)
    return read_settings(parser.parse_args(argv), Example)[0]


def test_flags_override_the_yaml_and_both_flag_spellings_work(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\ncount: 3\nrate: 0.25\noutput_dir: d\n")
    config = parse(["--config", str(recipe), "--count", "4", "--loud"])
    assert (config.name, config.count, config.rate, config.loud, config.out) == ("x", 4, 0.25, True, "d")
    config = parse(["--name", "y", "--output-dir", "e", "--no-loud"])
    assert (config.name, config.count, config.out, config.loud) == ("y", 2, "e", False)


def test_unknown_yaml_key_is_named_with_a_suggestion(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\ncuont: 3\n")
    with pytest.raises(CommandError, match=r"r\.yaml: unknown field `cuont` \(did you mean `count`\?\)"):
        parse(["--config", str(recipe)])


def test_yaml_type_error_names_the_field(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\ncount: ten\n")
    with pytest.raises(CommandError, match=r"r\.yaml: field `count` expects int, got str 'ten'"):
        parse(["--config", str(recipe)])


def test_required_field_is_named():
    with pytest.raises(CommandError, match=r"--name is required"):
        parse([])


def test_old_output_names_still_work_and_warn(tmp_path, capsys):
    assert parse(["--name", "x", "--out", "d"]).out == "d"
    assert "--out is deprecated; use --output_dir" in capsys.readouterr().err
    assert parse(["--name", "x", "-o", "d"]).out == "d"
    assert "-o is deprecated; use --output_dir" in capsys.readouterr().err
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nout: d\n")
    assert parse(["--config", str(recipe)]).out == "d"
    assert "`out` is deprecated; use `output_dir`" in capsys.readouterr().err


# ---- unknown flags, usage errors -----------------------------------------------------------------------------------
def test_unknown_flag_gets_a_suggestion(prompts, tmp_path):
    result = rlhfv(
        "feedback", "--prompts", prompts, "--policy", "x", "--output_dir", tmp_path / "o", "--tempreature", "1"
    )
    one_line_error(result, "--tempreature", "did you mean", "--temperature", code=2)


def test_unknown_recipe_key_of_feedback_gets_a_suggestion(prompts, tmp_path):
    recipe = tmp_path / "fb.yaml"
    recipe.write_text(f"prompts: {prompts}\npolicy: x\noutput_dir: {tmp_path / 'o'}\nnum_sample: 4\n")
    one_line_error(rlhfv("feedback", "--config", recipe), "fb.yaml", "`num_sample`", "did you mean `num_samples`")


# ---- nonsense settings stop at start (issue 23, items 8, 12, 13, 16) ------------------------------------------------
@pytest.mark.parametrize(
    "flag, value, field_name",
    [
        ("--sample-batch-size", "0", "sample_batch_size"),
        ("--label-batch-size", "0", "label_batch_size"),
        ("--max-new-tokens", "0", "max_new_tokens"),
        ("--temperature", "nan", "temperature"),
        ("--top-p", "1.5", "top_p"),
        ("--min-score-gap", "0", "min_score_gap"),
        ("--min-score-gap", "-1", "min_score_gap"),
        ("--min-answer-probability", "5", "min_answer_probability"),
        ("--endpoint-timeout", "nan", "endpoint_timeout"),
        ("--endpoint-timeout", "inf", "endpoint_timeout"),
        ("--endpoint-concurrency", "0", "endpoint_concurrency"),
        ("--top-logprobs", "0", "top_logprobs"),
    ],
)
def test_feedback_refuses_nonsense_settings_at_start(prompts, tmp_path, flag, value, field_name):
    result = rlhfv("feedback", "--prompts", prompts, "--policy", tmp_path, "--output_dir", tmp_path / "o", flag, value)
    last = one_line_error(result, field_name)
    assert "must be" in last
    assert not (tmp_path / "o").exists()


def test_feedback_with_a_missing_policy_folder_is_one_line(prompts, tmp_path):
    result = rlhfv("feedback", "--prompts", prompts, "--policy", tmp_path / "nowhere", "--output_dir", tmp_path / "o")
    one_line_error(result, "nowhere", "policy")


@pytest.mark.parametrize(
    "argv, field_name",
    [
        (["--timeout", "nan"], "timeout"),
        (["--timeout", "-1"], "timeout"),
        (["--concurrency", "0"], "concurrency"),
    ],
)
def test_judge_refuses_nonsense_endpoint_settings(tmp_path, argv, field_name):
    answers = tmp_path / "a.jsonl"
    answers.write_text(json.dumps({"id": "1", "question": "q", "answer": "a", "image_content": "c"}) + "\n")
    result = rlhfv("eval", "judge", "--answers", answers, "--model", "m", "--base-url", "http://127.0.0.1:9/v1", *argv)
    one_line_error(result, field_name)


@pytest.mark.parametrize(
    "argv, field_name",
    [
        (["--max-new-tokens", "0"], "max_new_tokens"),
        (["--temperature", "nan"], "temperature"),
        (["--batch-size", "0"], "batch_size"),
        (["--top-k", "-1"], "top_k"),
        (["--beta", "inf"], "beta"),
    ],
)
def test_eval_generate_refuses_nonsense_settings(prompts, tmp_path, argv, field_name):
    result = rlhfv(
        "eval", "generate", "--model", tmp_path, "--prompts", prompts, "--output_dir", tmp_path / "a.jsonl", *argv
    )
    one_line_error(result, field_name)


@pytest.mark.parametrize(
    "argv, field_name",
    [
        (["--margin", "-5"], "margin"),
        (["--margin", "nan"], "margin"),
        (["--n", "1"], "n"),
        (["--batch-size", "0"], "batch_size"),
    ],
)
def test_reward_pairs_refuses_nonsense_settings(prompts, tmp_path, argv, field_name):
    result = rlhfv(
        "reward-pairs", "--prompts", prompts, "--reward-model", tmp_path, "--output_dir", tmp_path / "o", *argv
    )
    one_line_error(result, field_name)


def test_rl_refuses_a_zero_completion_length(tmp_path):
    result = rlhfv("rl", "--output_dir", tmp_path / "o", "--max_completion_length", "0", "--use_cpu", "true")
    one_line_error(result, "max_completion_length")


def test_iterate_refuses_zero_rounds_and_nonsense_feedback_settings(tmp_path):
    recipe = tmp_path / "it.yaml"
    recipe.write_text(f"rounds: 0\ninitial_policy: {tmp_path}\noutput_dir: {tmp_path / 'o'}\n")
    one_line_error(rlhfv("iterate", "--config", recipe), "rounds")
    recipe.write_text(f"initial_policy: {tmp_path}\noutput_dir: {tmp_path / 'o'}\nfeedback:\n  temperature: .nan\n")
    one_line_error(rlhfv("iterate", "--config", recipe), "temperature")


# ---- iterate: a rerun with other settings says so (issue 23, item 14) ------------------------------------------------
def test_iterate_rerun_with_changed_settings_warns_with_the_changes(tmp_path):
    from rlhfv.iterate import IterateConfig, Iteration

    out = tmp_path / "o"
    first = IterateConfig(initial_policy=str(tmp_path), out=str(out), feedback={"num_samples": 4})
    assert Iteration(first).check_previous_settings() == []
    same = IterateConfig(initial_policy=str(tmp_path), out=str(out), feedback={"num_samples": 4})
    assert Iteration(same).check_previous_settings() == []
    other = IterateConfig(initial_policy=str(tmp_path), out=str(out), seed=3, feedback={"num_samples": 6})
    changed = Iteration(other).check_previous_settings()
    assert changed == ["feedback.num_samples: 4 -> 6", "seed: 0 -> 3"]


# ---- expected failures are one line; bugs keep their traceback; `| head` is quiet ----------------------------------
def test_a_real_bug_keeps_its_traceback(monkeypatch):
    import data_tools.inspect
    from rlhfv import cli

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(data_tools.inspect, "run", broken)
    with pytest.raises(ZeroDivisionError):
        cli.main(["inspect", "x"])


def test_output_piped_into_head_ends_quietly(tmp_path):
    rows = tmp_path / "pairs.jsonl"

    def turn(role, text):
        return [{"role": role, "content": text}]

    row = {"prompt": turn("user", "What is in the picture?"), "chosen": turn("assistant", "A cat on a mat. " * 20)}
    row.update(rejected=turn("assistant", "A dog. " * 20), chosen_spans=[], rejected_spans=[])
    rows.write_text("".join(json.dumps({**row, "id": str(i)}) + "\n" for i in range(400)))
    command = f"{sys.executable} -m rlhfv.cli inspect {rows} --rows 400 --no-stats --no-color | head -n 1"
    result = subprocess.run(
        command, shell=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120
    )
    assert result.stdout.count("\n") == 1
    assert result.stderr == "", result.stderr


def test_convert_takes_output_dir_and_the_old_names_warn(tmp_path):
    rows = tmp_path / "pairs.jsonl"
    rows.write_text(json.dumps({"prompt": "q?", "chosen": "a cat", "rejected": "a dog"}) + "\n")
    new = rlhfv("convert", rows, "--output_dir", tmp_path / "new", "--no-progress")
    assert new.returncode == 0, new.stderr
    assert "deprecated" not in new.stderr
    old = rlhfv("convert", rows, "-o", tmp_path / "old", "--no-progress")
    assert old.returncode == 0, old.stderr
    assert "-o is deprecated; use --output_dir" in old.stderr
    assert (tmp_path / "old").is_dir() and (tmp_path / "new").is_dir()


@pytest.mark.parametrize(
    "argv, field_name",
    [
        (["train", "--gradient_accumulation_steps", "0"], "gradient_accumulation_steps"),
        (["train", "--learning_rate", "nan"], "learning_rate"),
        (["reward", "--per_device_train_batch_size", "0"], "per_device_train_batch_size"),
        (["reward", "--max_length", "0"], "max_length"),
        (["rl", "--num_generations", "1"], "num_generations"),
        (["rl", "--temperature", "nan"], "temperature"),
    ],
)
def test_training_commands_refuse_nonsense_numbers_at_start(tmp_path, argv, field_name):
    result = rlhfv(*argv, "--output_dir", tmp_path / "o", "--use_cpu", "true")
    one_line_error(result, field_name, "must be")


def test_a_folder_that_holds_no_model_is_one_line(prompts, tmp_path):
    (tmp_path / "not_a_model").mkdir()
    result = rlhfv(
        "eval",
        "generate",
        "--model",
        tmp_path / "not_a_model",
        "--prompts",
        prompts,
        "--output_dir",
        tmp_path / "a.jsonl",
    )
    one_line_error(result, "not_a_model", "not a model folder")


def test_iterate_rerun_into_the_same_folder_names_the_changed_settings(prompts, tmp_path):
    (tmp_path / "not_a_model").mkdir()
    recipe = tmp_path / "it.yaml"
    recipe.write_text(
        f"initial_policy: {tmp_path / 'not_a_model'}\noutput_dir: {tmp_path / 'o'}\n"
        f"feedback:\n  prompts: {prompts}\n  num_samples: 4\n"
    )
    first = rlhfv("iterate", "--config", recipe)
    one_line_error(first, "not_a_model", "not a model folder")
    assert "warning" not in first.stderr
    again = rlhfv("iterate", "--config", recipe, "--seed", "3")
    one_line_error(again, "not_a_model")
    assert "seed: 0 -> 3" in again.stderr


def test_iterate_without_prompts_or_a_world_stops_at_start(tmp_path):
    recipe = tmp_path / "it.yaml"
    recipe.write_text(f"initial_policy: {tmp_path}\noutput_dir: {tmp_path / 'o'}\n")
    one_line_error(rlhfv("iterate", "--config", recipe), "feedback", "prompts")
    assert not (tmp_path / "o").exists()


def leaf_parsers(parser, path=()):
    """(command words, parser) of every command that runs, walking the sub-command tree."""
    import argparse

    children = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not children:
        yield path, parser
    for action in children:
        for name, child in action.choices.items():
            yield from leaf_parsers(child, (*path, name))


def test_every_command_builds_its_flags_and_names_its_output_flag_output_dir():
    from rlhfv.cli import build_parser

    found = dict(leaf_parsers(build_parser()))
    assert len(found) >= 20
    for words, parser in found.items():
        if words[0] in ("train", "reward", "rl", "bench", "inspect") or words == ("data", "list"):
            continue  # TRL's parser (output_dir is TrainingArguments'), or no output file at all
        options = {option for action in parser._actions for option in action.option_strings}
        assert "--output_dir" in options, words


def test_inspect_refuses_a_negative_row_count(tmp_path):
    rows = tmp_path / "pairs.jsonl"
    rows.write_text("{}\n")
    one_line_error(rlhfv("inspect", rows, "--rows", "-1"), "rows", ">= 0")


# Commands whose settings TRL's own parser reads (`TrainingArguments` and the recipe's dataclasses, through
# `rlhfv.recipe`), not data_tools.settings
TRL_PARSED = {("train",), ("reward",), ("rl",)}


def test_every_leaf_command_reads_its_flags_from_settings_dataclasses():
    """A command added with plain argparse flags fails here: every option of every leaf command is a field of the
    settings dataclasses its parser names (`settings_types`, left by `add_settings_arguments`), plus `--config`."""
    import argparse
    from dataclasses import fields, is_dataclass

    from rlhfv.cli import build_parser

    found = dict(leaf_parsers(build_parser()))
    assert {("eval", "pope", "score"), ("eval", "report"), ("data", "get"), ("feedback-pairs",), ("bench",)} <= set(
        found
    )
    for words, parser in found.items():
        if words in TRL_PARSED:
            continue
        types = parser.get_default("settings_types")
        assert types and all(is_dataclass(t) for t in types), words
        names = {item.name for t in types for item in fields(t)}
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.dest == "config":
                continue
            if action.dest == "api_key":  # refuses a key on the command line (rlhfv/endpoint_settings.py)
                continue
            assert action.dest in names, (words, action.option_strings)


def test_a_benchmark_command_reads_a_config_file_and_names_a_misspelt_key(tmp_path):
    config = tmp_path / "pope.yaml"
    config.write_text("pope_dir: nowhere\nanswers: nowhere\nunclear_ass: wrong\n")
    last = one_line_error(rlhfv("eval", "pope", "score", "--config", config), "unclear_ass", "unclear_as")
    assert "did you mean" in last
    config.write_text("pope_dir: nowhere\nanswers: nowhere\nunclear_as: maybe\n")
    one_line_error(rlhfv("eval", "pope", "score", "--config", config), "unclear_as", "pope, wrong")


AMBER_FILES = ["--answers", "a", "--queries", "q", "--annotations", "n", "--relation", "r", "--safe-words", "s"]


@pytest.mark.parametrize(
    "argv, words, code",
    [
        (["eval", "amber", "score", *AMBER_FILES, "--similarity-threshold", "nan"], ["similarity_threshold"], 1),
        (["eval", "mmhal", "judge", "--responses", "r.json", "--ratings", "strict"], ["--ratings", "strict"], 2),
        (["eval", "mmhal", "judge", "--responses", "r.json", "--timeout", "0"], ["timeout"], 1),
        (["eval", "mmhal", "judge", "--responses", "r.json", "--max-tokens", "0"], ["max_tokens"], 1),
        (["eval", "object-halbench", "generate", "--questions", "q", "--output_dir", "o"], ["--model"], 2),
        (
            [
                "eval",
                "pope",
                "generate",
                "--model",
                "m",
                "--pope-dir",
                "p",
                "--images",
                "i",
                "--output_dir",
                "o",
                "--num-beams",
                "0",
            ],
            ["num_beams"],
            1,
        ),
        (
            ["feedback-pairs", "--answers", "a", "--judgements", "j", "--output_dir", "o", "--min-score-gap", "0"],
            ["min_score_gap"],
            1,
        ),
        (["data", "get", "rlhf-v", "--heldout", "-1"], ["heldout"], 1),
        (["bench", "--only", "loss_head,nope"], ["only", "nope"], 1),
    ],
)
def test_converted_commands_check_their_settings_at_start(tmp_path, argv, words, code):
    one_line_error(rlhfv(*argv, cwd=tmp_path), *words, code=code)
