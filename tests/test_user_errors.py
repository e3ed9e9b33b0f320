"""Mistakes a new user makes, each answered in one line that names the fix."""

import json
from pathlib import Path

from rlhfv.cli import main


ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "recipes" / "demo" / "config_demo.yaml"
CORRECTIONS = ROOT / "recipes" / "demo" / "prior" / "corrections.jsonl"


def last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_dataset_format_typo_lists_the_choices(tmp_path, capsys):
    code = main(["train", "--config", str(DEMO), "--dataset_format", "rlhfv", "--output_dir", str(tmp_path)])
    assert code == 1
    assert last_error(capsys) == (
        "rlhfv train: error: `dataset_format`: unknown format 'rlhfv' (did you mean rlhf-v?); choose from: auto, "
        "rlhf-v, llava-rlhf, corrections, rlaif-v, pairs"
    )


def test_missing_local_dataset_is_not_blamed_on_the_hub(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--config", str(DEMO), "--dataset_format", "", "--output_dir", str(tmp_path / "out")]
    assert main([*argv, "--dataset_name", "data/rlhf_v/dense"]) == 1
    assert last_error(capsys) == (
        f"rlhfv train: error: `dataset_name`: data/rlhf_v/dense: no such file or folder (relative to {tmp_path}); "
        "`rlhfv data get rlhf-v` writes it"
    )
    assert main([*argv, "--dataset_name", "my_pairs.jsonl"]) == 1
    assert "my_pairs.jsonl: no such file or folder" in last_error(capsys)


def test_convert_with_the_wrong_format_names_the_right_one(tmp_path, capsys):
    code = main(["convert", str(CORRECTIONS), "--format", "rlaif-v", "--output", str(tmp_path / "o"), "--no-progress"])
    assert code == 1
    assert last_error(capsys).endswith(
        "field 'chosen': is missing [missing_field]; the file looks like `corrections` (it has 'response' and "
        "'corrected' columns): use --format corrections (or auto)"
    )


def test_eval_report_reads_what_eval_chair_writes(tmp_path, capsys):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(
        json.dumps({"id": "1", "image": "COCO_val2014_000000000001.jpg", "answer": "A dog and a cat."}) + "\n"
    )
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps({"COCO_val2014_000000000001.jpg": ["dog"]}))
    out = tmp_path / "chair.json"
    assert main(["eval", "chair", "--answers", str(answers), "--objects", str(objects), "--output_dir", str(out)]) == 0
    report = json.loads(out.read_text())
    # one of two mentions is hallucinated (cat), the only answer hallucinates, the dog is recalled
    assert report["headline"] == {"CHAIR CHAIR_s": 100.0, "CHAIR CHAIR_i": 50.0, "CHAIR recall": 100.0}
    capsys.readouterr()
    assert main(["eval", "report", "--result", f"model={out}"]) == 0
    assert "| model | 100.0 | 50.0 | 100.0 |" in capsys.readouterr().out


def test_token_columns_from_another_tokenizer_are_dropped_with_a_warning(caplog):
    from datasets import Dataset

    from rlhfv.data import _drop_token_columns

    message = [{"role": "user", "content": "Hi"}]
    dataset = Dataset.from_list([{"prompt": message, "chosen": "a", "rejected": "b", "chosen_input_ids": [1, 2],
                                  "prompt_input_ids": [5]}])  # fmt: skip
    with caplog.at_level("WARNING", logger="rlhfv.data"):
        cleaned = _drop_token_columns(dataset, "pairs")
    assert cleaned.column_names == ["prompt", "chosen", "rejected"]
    assert "['chosen_input_ids', 'prompt_input_ids']" in caplog.text and "tokenized again" in caplog.text
    assert _drop_token_columns(cleaned, "pairs") is cleaned


def test_train_help_shows_rlhfv_fields_first(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "usage: rlhfv train --config RECIPE.yaml [--FIELD VALUE ...]"
    titles = [line for line in lines if line and not line.startswith(" ") and line.endswith(":")]
    assert titles == ["DenseDPOConfig (rlhfv's own training fields):",
                      "DenseDPOScriptArguments (data, recipe and run):", "TRL / transformers / model options:"]  # fmt: skip
    gamma = next(i for i, line in enumerate(lines) if line.lstrip().startswith("--gamma"))
    dataset_format = next(i for i, line in enumerate(lines) if line.lstrip().startswith("--dataset_format"))
    learning_rate = next(i for i, line in enumerate(lines) if line.lstrip().startswith("--learning_rate"))
    assert gamma < 10 and dataset_format < learning_rate
