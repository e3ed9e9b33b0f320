"""The LLaVA-1.5-7B RLAIF-V README walked offline: `rlhfv data get rlaif-v --prompts-only` on Parquet files in
RLAIF-V-Dataset's published structure, the benchmarks, the held-out POPE-layout file of `make_pope_heldout.py`, one
round of the recipe's `rlhfv iterate` with a real OpenAI-compatible server (tests/fixtures/openai_server.py) standing in
for the README's `vllm serve` labeler, then the README's evaluation of the starting and the trained model.

The `hf download` of the policy is replaced by a tiny LLaVA saved where the README downloads to; the recipe's file is
used with the changes a 2-core CPU and a tiny model need (written out as a copy, listed in `TINY`). Every command the
walk runs is first checked to be in the README's bash block.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_data_get import jpeg, write_parquet
from test_recipe_walk import hub_folders, local_copies, readme_commands
from test_recipe_walk_rl import assert_readme_runs, run_evaluate

from rlhfv.cli import main
from tests.fixtures.openai_server import Server


ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "recipes" / "llava-1.5-7b" / "rlaif_v" / "README.md"
# the recipe's settings changed for a 2-core CPU and a tiny model (the labeler's address is the local server's)
TINY = {
    "feedback": {"num_samples": 6, "max_new_tokens": 12, "sample_batch_size": 12, "device": "cpu",
                 "endpoint_concurrency": 4, "progress": False},
    "train": {"dtype": "float32", "bf16": False, "use_cpu": True, "num_train_epochs": 2,
              "gradient_accumulation_steps": 1, "per_device_train_batch_size": 2, "max_length": 256,
              "activation_checkpointing": False, "report_to": "none", "logging_steps": 1},
    "evaluation": {"device": "cpu", "batch_size": 8, "max_new_tokens": 4},
}  # fmt: skip
# What the served labeler answers (the first key found in a prompt gives the reply): an answer holding one of the
# MARKS is split into a claim about a zebra plus one more, any other answer into the one claim "Yes"; the zebra claim's
# question carries the server's TOP marker, so the labeler's log-probs say "No" (a false claim), every other question
# is answered "Yes". Answers with a mark score -1, the others 0: pairs by RLAIF-V's score gap of 1. The marks are
# pieces of what the tiny policy (seed 3) samples at the recipe's seed: some answers to an instruction hold one, some
# do not (the walk checks that pairs were made).
MARKS = ("beside", "traff")
LABELER = {
    "Claim: There is a zebra": "Is there a zebra in the image? TOP[No:-0.1|no:-2.0|Yes:-3.0|yes:-4.0]",
    "Claim: ": "Is there an image?",
    **{mark: "There is a zebra in the image.\nThe picture has a colour." for mark in MARKS},
}


def rlaif_v_parquet(folder: Path) -> None:
    """Two Parquet shards in RLAIF-V-Dataset's columns: 3 distinct (image, question) instructions over 4 pairs."""
    common = {"ds_name": "RLAIF-V-Dataset", "origin_dataset": "COCO",
              "origin_split": json.dumps({"model": "OmniLMM-12B", "feedback_model": "OmniLMM-12B",
                                          "type": "detailed description"})}  # fmt: skip
    colours = [(200, 30, 30), (30, 30, 200), (30, 200, 30)]
    rows = [{**common, "image": {"bytes": jpeg(colours[(0, 1, 0, 2)[i]]), "path": None},
             "question": ("Describe the image.", "What is in the picture?", "Describe the image.", "Describe it.")[i],
             "chosen": "A square.", "rejected": "A square and a dog.", "idx": f"OmniLMM-12B_{i}",
             "image_path": f"coco/train2014/COCO_train2014_{(0, 1, 0, 2)[i]:012d}.jpg"} for i in range(4)]  # fmt: skip
    features = {"ds_name": "string", "image": "image", "question": "string", "chosen": "string",
                "rejected": "string", "origin_dataset": "string", "origin_split": "string", "idx": "string",
                "image_path": "string"}  # fmt: skip
    write_parquet(folder / "RLAIF-V-Dataset_000.parquet", rows[:2], features)
    write_parquet(folder / "RLAIF-V-Dataset_001.parquet", rows[2:], features)


def tiny_recipe(recipe: Path, path: Path, base_url: str) -> Path:
    """The recipe with the TINY changes and the local labeler's address, written to `path`."""
    values = yaml.safe_load(recipe.read_text())
    for block, changes in TINY.items():
        values[block].update(changes)
    values["feedback"]["base_url"] = base_url
    path.write_text(yaml.safe_dump(values))
    return path


def readme_lines(model: str, hub_model: str, name: str) -> tuple[str, ...]:
    """The lines of an RLAIF-V README's bash block that the walk runs (or replaces: `hf download`, `vllm serve`)."""
    recipe = f"recipes/{name.removesuffix('-rlaif-v')}/rlaif_v/iterate_lora.yaml"
    merged = f"outputs/{name}/round_4/merged"
    return (
        f"hf download {hub_model} --local-dir models/{model}",
        "rlhfv data get rlaif-v --prompts-only --max-prompts 4000", "rlhfv data get pope",
        "rlhfv data get object-halbench --from objhal_src",
        "python recipes/llava-1.5-7b/rlaif_v/make_pope_heldout.py --pope-dir data/pope --instances "
        "data/object_halbench/instances_val2014.json --output_dir data/pope_heldout/pope_heldout.json",
        "vllm serve llava-hf/llava-v1.6-34b-hf --port 8000", f"rlhfv iterate --config {recipe}",
        "rlhfv data get mmhal",
        f"recipes/evaluate.sh models/{model} outputs/eval/{name}-base pope object-halbench mmhal",
        f"recipes/evaluate.sh {merged} outputs/eval/{name} pope object-halbench mmhal",
        f"hf upload <you>/{name} {merged}",
    )  # fmt: skip


def prepare_data(tmp_path: Path, monkeypatch) -> None:
    """Steps 2 and 3 of the README in `tmp_path` (the repository root): instructions, POPE, Object HalBench's COCO
    annotations, COCO val2014 images (the README's wget + unzip) and the held-out POPE-layout file (2 images, 1 yes
    and 1 no question each, instead of 100 x 3)."""
    import huggingface_hub

    folders = hub_folders(tmp_path / "hub")
    rlaif_v_parquet(tmp_path / "hub" / "RLAIF-V")
    folders["openbmb/RLAIF-V-Dataset"] = tmp_path / "hub" / "RLAIF-V"
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **_: str(folders[repo_id]))
    local_copies(tmp_path)  # objhal_src/ (and AMBER/, unused here)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")

    assert main(["data", "get", "rlaif-v", "--prompts-only", "--max-prompts", "4000"]) == 0
    prompts = (tmp_path / "data" / "rlaif_v" / "prompts.jsonl").read_text().splitlines()
    assert len(prompts) == 3
    assert main(["data", "get", "pope"]) == 0
    assert main(["data", "get", "object-halbench", "--from", "objhal_src"]) == 0
    instances = json.loads((tmp_path / "data" / "object_halbench" / "instances_val2014.json").read_text())
    val2014 = tmp_path / "data" / "coco" / "val2014"
    val2014.mkdir(parents=True)
    for image in instances["images"]:
        (val2014 / image["file_name"]).write_bytes(jpeg())
    heldout = [sys.executable, "recipes/llava-1.5-7b/rlaif_v/make_pope_heldout.py", "--pope-dir", "data/pope",
               "--instances", "data/object_halbench/instances_val2014.json",
               "--output_dir", "data/pope_heldout/pope_heldout.json", "--images", "2", "--per-image", "1"]  # fmt: skip
    result = subprocess.run(heldout, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len((tmp_path / "data" / "pope_heldout" / "pope_heldout.json").read_text().splitlines()) == 4


def run_round_and_evaluate(tmp_path: Path, model: str, name: str) -> None:
    """Step 4 (one round, the labeler the local server) and step 5 (the starting and the trained model)."""
    recipe = f"recipes/{name.removesuffix('-rlaif-v')}/rlaif_v/iterate_lora.yaml"
    values = yaml.safe_load((ROOT / recipe).read_text())
    assert values["feedback"]["base_url"] == "http://localhost:8000/v1"  # the README's `vllm serve --port 8000`
    assert values["initial_policy"] == f"models/{model}"
    with Server(scripted=LABELER) as labeler:
        tiny = tiny_recipe(ROOT / recipe, tmp_path / "iterate_tiny.yaml", labeler.url)
        assert main(["iterate", "--config", str(tiny), "--rounds", "1"]) == 0
    out = tmp_path / "outputs" / name
    summary = json.loads((out / "round_1" / "feedback" / "summary.json").read_text())
    assert summary["pairs"] > 0, summary
    assert (out / "round_1" / "merged" / "config.json").is_file()
    assert [row["round"] for row in json.loads((out / "rounds.json").read_text())] == [0, 1]

    assert main(["data", "get", "mmhal"]) == 0
    benchmarks = ("pope", "object-halbench", "mmhal")
    base = run_evaluate(f"models/{model}", f"outputs/eval/{name}-base", *benchmarks, cwd=tmp_path)
    trained = run_evaluate(f"outputs/{name}/round_1/merged", f"outputs/eval/{name}", *benchmarks, cwd=tmp_path)
    assert f"| {name}-base |" in base and f"| {name} |" in trained


@pytest.mark.slow
def test_llava_rlaif_v_readme_one_round_from_data_to_an_evaluated_model(tmp_path, monkeypatch, saved_llava):
    name = "llava-1.5-7b-rlaif-v"
    assert_readme_runs(readme_commands(README), readme_lines("llava-1.5-7b-hf", "llava-hf/llava-1.5-7b-hf", name))
    prepare_data(tmp_path, monkeypatch)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "llava-1.5-7b-hf").symlink_to(saved_llava[0])  # the README's `hf download`
    run_round_and_evaluate(tmp_path, "llava-1.5-7b-hf", name)


QWEN_README = ROOT / "recipes" / "qwen2.5-vl-7b" / "rlaif_v" / "README.md"


@pytest.mark.slow
def test_qwen_vl_rlaif_v_readme_one_round_from_data_to_an_evaluated_model(tmp_path, monkeypatch):
    """As the LLaVA walk; the rounds and the evaluation load the policy from disk, which a tiny Qwen2-VL needs
    torchvision for (test_recipe_walk_qwen_vl.py): without it they are skipped with that reason."""
    from test_recipe_walk_qwen_vl import NO_TORCHVISION, TORCHVISION, save_tiny_qwen2_vl

    name = "qwen2.5-vl-7b-rlaif-v"
    model = "Qwen2.5-VL-7B-Instruct"
    assert_readme_runs(readme_commands(QWEN_README), readme_lines(model, f"Qwen/{model}", name))
    prepare_data(tmp_path, monkeypatch)
    save_tiny_qwen2_vl(tmp_path / "models" / model)  # the README's `hf download`
    if not TORCHVISION:
        pytest.skip(f"rounds and evaluation not walked: {NO_TORCHVISION}")
    run_round_and_evaluate(tmp_path, model, name)
