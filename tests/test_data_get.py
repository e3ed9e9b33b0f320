"""`rlhfv data get`: each source, in the structure its published files have, read by the real readers downstream.

The rows are written here, not copied. Their structure follows the dataset cards and the official loaders:
- RLHF-V-Dataset (card at 1d8e980): ds_name str, image (HF Image: {bytes, path}), text str (JSON: question, chosen,
  rejected), origin_dataset str, origin_split str (JSON), idx int64, image_path str.
- RLAIF-V-Dataset (card): ds_name, image, question, chosen, rejected, origin_dataset, origin_split, idx (str),
  image_path; several pairs share one image and question.
- LLaVA-Human-Preference-10K: a JSON list of {id, image (COCO train2017 file name), conversations [{from, value}]
  ending with a "gpt" turn that LLaVA-RLHF's reward code replaces by output_1/output_2 (data_utils_rm.py),
  output_1/output_2 {from, value}, preference 1|2, hallucination}. LLaVA-RLHF-Data/image_to_caption.json maps
  "000000224052.jpg"-style names to caption lists (the Hub viewer's error message lists such keys).
- llava_ppo50k-aokvqa12k-vqa10k.json: {image, conversations [human, gpt]} (data_utils_ppo.py keeps the first two
  turns and reads `image` as a COCO file name whose stem is an integer).
- MMHal-Bench response_template.json: a list of {question_type, question_topic, image_id, image_src, image_content,
  question, gt_answer, model_answer} (its loading script); images in test_data.zip.
- lmms-lab/POPE: data/test-*.parquet with question_id, question, answer ("yes"/"no"), category
  (random/popular/adversarial), image (HF Image) (lmms-eval's pope utils) and image_source.
Not confirmed from a published file: the `id` of LLaVA-RLHF rows, output_*.from ("llava" here), POPE's image_source
values, the folder layout inside MMHal-Bench's test_data.zip, how the PPO file marks multiple-choice answers.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import pytest

from rlhfv.cli import main


def jpeg(color=(200, 30, 30)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_parquet(path: Path, rows: list[dict], features: dict) -> None:
    from datasets import Dataset, Features, Image, Value

    spec = Features({name: Image() if kind == "image" else Value(kind) for name, kind in features.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows, features=spec).to_parquet(str(path))


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """Stand-in for the Hub's servers: repo id -> local folder; records the revisions asked for."""
    import huggingface_hub

    folders, asked = {}, []

    def snapshot_download(repo_id, repo_type=None, revision=None, allow_patterns=None, **_):
        asked.append((repo_id, repo_type, revision))
        return str(folders[repo_id])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return folders, asked


def run(*argv) -> int:
    return main(["data", "get", *map(str, argv)])


def test_rlhf_v_pinned_download_converts(tmp_path, hub):
    from datasets import load_from_disk

    from data_tools.sources import SOURCES

    folders, asked = hub
    folders["openbmb/RLHF-V-Dataset"] = tmp_path / "hub"
    rows = [
        {"ds_name": "RLHF-V-Dataset", "image": {"bytes": jpeg(), "path": None},
         "text": json.dumps({"question": "What is on the plate?", "chosen": "A sandwich and two apples.",
                             "rejected": "A sandwich, two apples and a fork."}),
         "origin_dataset": "OK-VQA", "origin_split": json.dumps({"model": "Muffin", "type": "question answering"}),
         "idx": 0, "image_path": "okvqa/COCO_val2014_000000000042.jpg"},
        {"ds_name": "RLHF-V-Dataset", "image": {"bytes": jpeg((0, 90, 200)), "path": None},
         "text": json.dumps({"question": "Describe the image.", "chosen": "A blue wall.",
                             "rejected": "A blue wall with a clock."}),
         "origin_dataset": "detail", "origin_split": json.dumps({"model": "Muffin", "type": "detailed description"}),
         "idx": 1, "image_path": "detail/img_1.jpg"},
    ]  # fmt: skip
    write_parquet(tmp_path / "hub" / "RLHF-V-Dataset.parquet", rows,
                  {"ds_name": "string", "image": "image", "text": "string", "origin_dataset": "string",
                   "origin_split": "string", "idx": "int64", "image_path": "string"})  # fmt: skip
    assert run("rlhf-v", "--output_dir", tmp_path / "out") == 0
    assert asked == [("openbmb/RLHF-V-Dataset", "dataset", SOURCES["rlhf-v"].hub[0].revision)]
    dense = load_from_disk(str(tmp_path / "out" / "dense"))
    assert len(dense) == 2
    assert dense[0]["chosen"] == [{"role": "assistant", "content": "A sandwich and two apples."}]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["source"][0]["revision"] == SOURCES["rlhf-v"].hub[0].revision


def test_rlaif_v_prompts_one_per_instruction(tmp_path, hub):
    from rlhfv.feedback.instructions import read_instructions

    folders, _ = hub
    folders["openbmb/RLAIF-V-Dataset"] = tmp_path / "hub"
    red, blue = jpeg(), jpeg((0, 0, 255))
    common = {"ds_name": "RLAIF-V-Dataset", "origin_dataset": "COCO",
              "origin_split": json.dumps({"model": "OmniLMM-12B", "feedback_model": "OmniLMM-12B",
                                          "type": "detailed description"})}  # fmt: skip
    rows = [
        {**common, "image": {"bytes": red, "path": None}, "question": "Describe the image.",
         "chosen": "A red square.", "rejected": "A red square with a cat.", "idx": "OmniLMM-12B_0",
         "image_path": "coco/train2014/COCO_train2014_000000000001.jpg"},
        {**common, "image": {"bytes": red, "path": None}, "question": "Describe the image.",
         "chosen": "A red square on its own.", "rejected": "A red square and a dog.", "idx": "OmniLMM-12B_1",
         "image_path": "coco/train2014/COCO_train2014_000000000001.jpg"},
        {**common, "image": {"bytes": blue, "path": None}, "question": "What colour is it?",
         "chosen": "Blue.", "rejected": "Green.", "idx": "OmniLMM-12B_2",
         "image_path": "coco/train2014/COCO_train2014_000000000002.jpg"},
    ]  # fmt: skip
    features = {"ds_name": "string", "image": "image", "question": "string", "chosen": "string",
                "rejected": "string", "origin_dataset": "string", "origin_split": "string", "idx": "string",
                "image_path": "string"}  # fmt: skip
    write_parquet(tmp_path / "hub" / "RLAIF-V-Dataset_000.parquet", rows[:2], features)
    write_parquet(tmp_path / "hub" / "RLAIF-V-Dataset_001.parquet", rows[2:], features)
    assert run("rlaif-v", "--output_dir", tmp_path / "out") == 0
    prompts = [json.loads(line) for line in (tmp_path / "out" / "prompts.jsonl").read_text().splitlines()]
    assert [p["question"] for p in prompts] == ["Describe the image.", "What colour is it?"]
    assert len(list((tmp_path / "out" / "images").iterdir())) == 2
    result = read_instructions(str(tmp_path / "out" / "prompts.jsonl"), str(tmp_path / "images_out"), "auto", None,
                               lambda message: pytest.fail(message), False)  # fmt: skip
    assert len(result.instructions) == 2 and not result.rejects
    from datasets import load_from_disk

    assert len(load_from_disk(str(tmp_path / "out" / "dense"))) == 3


LLAVA_ROWS = [
    {"id": "gqa_1", "image": "000000000101.jpg",
     "conversations": [{"from": "human", "value": "<image>\nWhat is on the table?"},
                       {"from": "gpt", "value": "A laptop."}],
     "output_1": {"from": "llava", "value": "A laptop and a cup."},
     "output_2": {"from": "llava", "value": "A laptop, a cup and a cat."}, "preference": 1, "hallucination": 1},
    {"id": "detail_2", "image": "000000000102.jpg",
     "conversations": [{"from": "human", "value": "Describe the image.\n<image>"},
                       {"from": "gpt", "value": "A dog on grass."},
                       {"from": "human", "value": "What colour is the dog?"},
                       {"from": "gpt", "value": "Brown."}],
     "output_1": {"from": "llava", "value": "The dog is black and holds a frisbee."},
     "output_2": {"from": "llava", "value": "The dog is brown."}, "preference": 2, "hallucination": 0},
    {"id": "vqa_3", "image": "000000000101.jpg",
     "conversations": [{"from": "human", "value": "<image>\nHow many cups?"}, {"from": "gpt", "value": "One."}],
     "output_1": {"from": "llava", "value": "One cup."}, "output_2": {"from": "llava", "value": "Three cups."},
     "preference": 1, "hallucination": 1},
]  # fmt: skip
CAPTIONS = {"000000000101.jpg": ["A laptop and a mug on a desk.", "A desk with a computer."],
            "000000000102.jpg": ["A brown dog on a lawn."]}  # fmt: skip


def test_llava_rlhf_preference_heldout_and_reward_loader(tmp_path, hub):
    from rlhfv.reward.data import load_reward_data

    folders, asked = hub
    folders["zhiqings/LLaVA-Human-Preference-10K"] = tmp_path / "pref"
    folders["zhiqings/LLaVA-RLHF-Data"] = tmp_path / "rlhf"
    (tmp_path / "pref").mkdir()
    (tmp_path / "rlhf").mkdir()
    (tmp_path / "pref" / "llava_7b_v1_preference.json").write_text(json.dumps(LLAVA_ROWS))
    (tmp_path / "rlhf" / "image_to_caption.json").write_text(json.dumps(CAPTIONS))
    coco = tmp_path / "coco"
    coco.mkdir()
    for name in CAPTIONS:
        (coco / name).write_bytes(jpeg())
    out = tmp_path / "out"
    assert run("llava-rlhf-preference", "--output_dir", out, "--heldout", 1, "--images", coco) == 0
    assert [repo for repo, _, _ in asked] == ["zhiqings/LLaVA-Human-Preference-10K", "zhiqings/LLaVA-RLHF-Data"]
    train = json.loads((out / "preference_train.json").read_text())
    heldout = json.loads((out / "preference_heldout1.json").read_text())
    assert len(train) == 2 and len(heldout) == 1
    assert {r["id"] for r in train + heldout} == {"gqa_1", "detail_2", "vqa_3"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"]["missing"] == 0 and summary["problems"] == {}
    dataset, report = load_reward_data(str(out / "preference_train.json"), use_facts=True, image_root=str(coco),
                                       on_error="fail", image_captions=str(out / "image_to_caption.json"))  # fmt: skip
    assert len(dataset) == 2
    by_chosen = {row["chosen"]: row for row in dataset}
    if "The dog is brown." in by_chosen:  # the multi-turn row: the prompt ends with the last human question
        row = by_chosen["The dog is brown."]
        assert [m["role"] for m in row["prompt"]] == ["user", "assistant", "user"]
        assert row["prompt"][-1]["content"] == "What colour is the dog?"
        assert row["facts"] == ["A brown dog on a lawn."]


def test_llava_rlhf_rl_prompts_load(tmp_path, hub):
    from rlhfv.reward.prompts import load_rl_prompts

    folders, _ = hub
    folders["zhiqings/LLaVA-RLHF-Data"] = tmp_path / "rlhf"
    (tmp_path / "rlhf").mkdir()
    rows = [
        {"image": "000000000101.jpg", "conversations": [{"from": "human", "value": "<image>\nIs there a cat?"},
                                                        {"from": "gpt", "value": "No"}]},
        {"image": "000000000102.jpg", "conversations": [
            {"from": "human", "value": "<image>\nWhat is the dog doing?\nA. running\nB. sleeping"},
            {"from": "gpt", "value": "B"}]},
        {"image": "000000000103.jpg", "conversations": [{"from": "human", "value": "<image>\nDescribe it."},
                                                        {"from": "gpt", "value": "A room."}]},
    ]  # fmt: skip
    (tmp_path / "rlhf" / "llava_ppo50k-aokvqa12k-vqa10k.json").write_text(json.dumps(rows))
    (tmp_path / "rlhf" / "image_to_caption.json").write_text(json.dumps(CAPTIONS))
    out = tmp_path / "out"
    assert run("llava-rlhf-rl", "--output_dir", out, "--images", tmp_path / "none") == 0
    prompts = [json.loads(line) for line in (out / "rl_prompts.jsonl").read_text().splitlines()]
    assert [(p["yes_no_truth"], p["mc_answer"]) for p in prompts] == [("no", None), (None, "B")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["left_out"] == {"image: has no captions in image_to_caption.json":
                                   {"rows": 1, "first": ["llava_ppo50k-aokvqa12k-vqa10k.json row 3"]}}  # fmt: skip
    coco = tmp_path / "coco"
    coco.mkdir()
    for name in CAPTIONS:
        (coco / name).write_bytes(jpeg())
    dataset = load_rl_prompts(str(out / "rl_prompts.jsonl"), image_root=str(coco))
    assert len(dataset) == 2 and dataset[0]["prompt"][0]["content"] == "Is there a cat?"


def test_mmhal_template_and_images(tmp_path, hub):
    from rlhfv.eval import mmhal

    folders, _ = hub
    folders["Shengcao1006/MMHal-Bench"] = tmp_path / "hub"
    (tmp_path / "hub").mkdir()
    items = [
        {
            "question_type": "attribute",
            "question_topic": "animal",
            "image_id": f"id{i}",
            "image_src": f"https://c{i}.staticflickr.com/x/{i}_abc_o.jpg",
            "image_content": ["Dog"],
            "question": "What colour is the dog?",
            "gt_answer": "Brown.",
            "model_answer": "",
        }
        for i in range(8)
    ]
    (tmp_path / "hub" / "response_template.json").write_text(json.dumps(items))
    with zipfile.ZipFile(tmp_path / "hub" / "test_data.zip", "w") as archive:
        for i in range(8):
            archive.writestr(f"test_data/images/{i}_abc_o.jpg", jpeg())
    assert run("mmhal", "--output_dir", tmp_path / "out") == 0
    assert len(list((tmp_path / "out" / "images").iterdir())) == 8
    template = mmhal.read_template(tmp_path / "out" / "response_template.json")
    assert all(row["_image"].is_file() for row in mmhal.prompt_rows(template, tmp_path / "out" / "images"))


def test_pope_split_files_read_by_eval(tmp_path, hub):
    from rlhfv.eval import pope

    folders, _ = hub
    folders["lmms-lab/POPE"] = tmp_path / "hub"
    rows = []
    for n, category in enumerate(["adversarial", "popular", "random"] * 2):
        rows.append({"id": str(n), "question_id": str(n + 1), "question": "Is there a dog in the image?",
                     "answer": "yes" if n % 2 else "no", "image_source": f"COCO_val2014_{n % 2:012d}",
                     "image": {"bytes": jpeg(), "path": None}, "category": category})  # fmt: skip
    write_parquet(tmp_path / "hub" / "data" / "test-00000-of-00001.parquet", rows,
                  {"id": "string", "question_id": "string", "question": "string", "answer": "string",
                   "image_source": "string", "image": "image", "category": "string"})  # fmt: skip
    assert run("pope", "--output_dir", tmp_path / "out") == 0
    files = pope.find_split_files(tmp_path / "out")
    assert set(files) == {"random", "popular", "adversarial"}
    questions = pope.read_questions(files["random"], tmp_path / "out" / "val2014")
    assert len(questions) == 2 and all(q["_image"].is_file() for q in questions)


def test_local_only_benchmarks_need_from(tmp_path, capsys):
    assert main(["data", "get", "amber"]) == 1
    assert "not on the Hub: pass --from FOLDER" in capsys.readouterr().err


def test_object_halbench_and_amber_from_local_copy(tmp_path):
    local = tmp_path / "objhal"
    local.mkdir()
    image = base64.b64encode(jpeg()).decode()
    (local / "obj_halbench_300_with_image.jsonl").write_text(
        "".join(
            json.dumps({"image_id": 42 + i, "question": "Describe this image in detail.", "image": image}) + "\n"
            for i in range(2)
        )
    )
    (local / "instances_val2014.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    (local / "captions_val2014.json").write_text(json.dumps({"images": [], "annotations": []}))
    assert run("object-halbench", "--from", local, "--output_dir", tmp_path / "objhal_out") == 0
    assert (tmp_path / "objhal_out" / "questions.jsonl").read_text().count("\n") == 2

    amber = tmp_path / "AMBER"
    (amber / "data" / "query").mkdir(parents=True)
    (amber / "image").mkdir()
    for name in ("annotations.json", "relation.json"):
        (amber / "data" / name).write_text("[]" if name == "annotations.json" else "{}")
    (amber / "data" / "safe_words.txt").write_text("sky\n")
    (amber / "data" / "metrics.txt").write_text("chair_score\t0\n")
    (amber / "data" / "query" / "query_all.json").write_text(
        json.dumps([{"id": 1, "image": "AMBER_1.jpg", "query": "Describe this image."}])
    )
    (amber / "image" / "AMBER_1.jpg").write_bytes(jpeg())
    assert run("amber", "--from", amber, "--output_dir", tmp_path / "amber_out") == 0
    assert (tmp_path / "amber_out" / "image" / "AMBER_1.jpg").is_file()
