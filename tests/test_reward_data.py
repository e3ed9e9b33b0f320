"""Reward-model data: LLaVA-RLHF rows with facts; every row kept or reported with file, line and field."""

import json

import pytest
from PIL import Image

from data_tools.errors import CommandError
from rlhfv.reward.data import load_reward_data


def write_rows(tmp_path, rows):
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "a.png")
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def row(preference=1, **extra):
    return {
        "id": "x",
        "image": "a.png",
        "conversations": [{"from": "human", "value": "<image>\nWhat is there?"}],
        "output_1": {"from": "llava", "value": "A red cup."},
        "output_2": {"from": "llava", "value": "A red cup and a cat."},
        "preference": preference,
        **extra,
    }


def test_rows_with_facts(tmp_path):
    path = write_rows(
        tmp_path, [row(1, facts=["a red cup"]), row(2, facts={"captions": ["c"], "options": ["x", "y"]})]
    )
    dataset, report = load_reward_data(path, use_facts=True)
    assert (report.read, report.kept, report.rejected) == (2, 2, [])
    first, second = dataset[0], dataset[1]
    assert first["prompt"] == [{"role": "user", "content": "What is there?"}]
    assert (first["chosen"], first["rejected"]) == ("A red cup.", "A red cup and a cat.")
    assert (second["chosen"], second["rejected"]) == ("A red cup and a cat.", "A red cup.")  # preference 2
    assert first["facts"] == ["a red cup"]
    assert second["facts"] == ["c", "Options: A. x; B. y"]
    assert first["images"][0].size == (8, 8)


def test_missing_facts_fail_with_file_line_and_field(tmp_path):
    path = write_rows(tmp_path, [row(facts=["f"]), row()])
    with pytest.raises(CommandError, match=r"prefs.jsonl, line 2, field 'facts': is missing \(train the plain"):
        load_reward_data(path, use_facts=True)
    # The plain reward model needs no facts
    dataset, _ = load_reward_data(path, use_facts=False)
    assert "facts" not in dataset.column_names and len(dataset) == 2


def test_skip_reports_each_bad_row(tmp_path):
    path = write_rows(tmp_path, [row(facts=["f"]), row(preference=3, facts=["f"]), row(facts=["f"], image="nope.png")])
    with open(path, "a") as handle:
        handle.write("{not json\n")
    dataset, report = load_reward_data(path, use_facts=True, on_error="skip")
    assert len(dataset) == 1 and (report.read, report.kept) == (4, 1)
    assert [message.split(": ")[0] for message in report.rejected] == [
        f"{path}, line 2, field 'preference'",
        f"{path}, line 3, field 'image'",
        f"{path}, line 4",
    ]


def test_captions_file_supplies_missing_facts(tmp_path):
    path = write_rows(tmp_path, [row(facts=["own fact"]), row(image="train2014/a.png")])
    (tmp_path / "train2014").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "train2014" / "a.png")
    captions = tmp_path / "image_to_caption.json"
    captions.write_text(json.dumps({"a.png": ["A cup on a table.", "A red mug."]}))
    dataset, _ = load_reward_data(path, use_facts=True, image_captions=str(captions))
    assert dataset[0]["facts"] == ["own fact"]  # a row's own facts win
    assert dataset[1]["facts"] == ["A cup on a table.", "A red mug."]
    captions.write_text(json.dumps({"b.png": ["other"]}))
    with pytest.raises(
        CommandError, match="line 1, field 'facts': is missing and its image is not in `image_captions`"
    ):
        load_reward_data(write_rows(tmp_path, [row()]), use_facts=True, image_captions=str(captions))
