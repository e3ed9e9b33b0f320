"""The LLaVA-1.5-7B Fact-RLHF RL README and the Qwen2.5-7B-Instruct Dense DPO README walked offline, as
test_recipe_walk.py walks the Dense DPO one: the Hub's servers replaced by local folders in the published files'
structure, each training line run with the recipe's own file on a tiny model (CPU and size overrides only), the
evaluation the README ends with. Every command the walk runs is first checked to be in the README's bash block."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_data_get import CAPTIONS, LLAVA_ROWS, jpeg
from test_recipe_walk import hub_folders, readme_commands, score_args

from rlhfv.cli import main


ROOT = Path(__file__).resolve().parents[1]
RL_README = ROOT / "recipes" / "llava-1.5-7b" / "rl" / "README.md"
RL_RECIPE = "recipes/llava-1.5-7b/rl/config_lora.yaml"
REWARD_RECIPE = "recipes/llava-1.5-7b/reward_model/config_lora.yaml"
# a 2-core CPU and a tiny model instead of the recipe's GPU settings; everything else is the recipe's
CPU = ["--use_cpu", "true", "--bf16", "false", "--dtype", "float32", "--gradient_accumulation_steps", "1",
       "--activation_checkpointing", "false", "--report_to", "none", "--save_strategy", "no"]  # fmt: skip


def assert_readme_runs(commands: list[str], expected: tuple[str, ...]) -> None:
    """Each command line the walk runs (or its start) is in the README's bash block (spacing aside)."""
    flat = [" ".join(command.split()) for command in commands]
    for line in expected:
        assert any(line in command for command in flat), f"the README no longer says: {line}"


def run_evaluate(model: str, out: str, *benchmarks: str, cwd: Path) -> str:
    """The README's `recipes/evaluate.sh` line on the tiny model (a few tokens per answer); returns report.md."""
    env = {**os.environ, "RLHFV": f"{sys.executable} -m rlhfv.cli", "PYTHONPATH": str(ROOT),
           "GEN_ARGS": "--device cpu --max-new-tokens 4 --batch-size 8", "NAME": Path(out).name,
           "SCORE_ARGS": score_args()}  # fmt: skip
    result = subprocess.run(["bash", str(ROOT / "recipes" / "evaluate.sh"), model, out, *benchmarks], cwd=cwd,
                            env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return (cwd / out / "report.md").read_text()


RL_ROWS = [
    {"image": "000000000101.jpg", "conversations": [{"from": "human", "value": "<image>\nIs there a cat?"},
                                                    {"from": "gpt", "value": "No"}]},
    {"image": "000000000102.jpg", "conversations": [
        {"from": "human", "value": "<image>\nWhat is the dog doing?\nA. running\nB. sleeping"},
        {"from": "gpt", "value": "B"}]},
    {"image": "000000000101.jpg", "conversations": [{"from": "human", "value": "<image>\nDescribe the desk."},
                                                    {"from": "gpt", "value": "A laptop and a mug."}]},
    {"image": "000000000102.jpg", "conversations": [{"from": "human", "value": "<image>\nIs the dog brown?"},
                                                    {"from": "gpt", "value": "Yes"}]},
]  # fmt: skip


@pytest.mark.slow
def test_llava_fact_rlhf_rl_readme_from_data_to_an_evaluated_policy(tmp_path, monkeypatch, saved_llava):
    """Reward model (2 steps, 1 of the 3 preference rows held out instead of 500), then one RLOO step of the RL
    recipe (4 samples of at most 8 tokens for 1 prompt), then POPE and MMHal-Bench answers of the trained policy."""
    import huggingface_hub

    commands = readme_commands(RL_README)
    assert_readme_runs(commands, (
        "rlhfv data get llava-rlhf-preference", f"make train COMMAND=reward RECIPE={REWARD_RECIPE}",
        "rlhfv data get llava-rlhf-rl", f"make train COMMAND=rl RECIPE={RL_RECIPE}",
        "rlhfv data get pope && rlhfv data get mmhal",
        "recipes/evaluate.sh outputs/llava-1.5-7b-fact-rlhf-rloo outputs/eval/fact-rlhf pope mmhal",
        "hf upload <you>/llava-1.5-7b-fact-rlhf-rloo outputs/llava-1.5-7b-fact-rlhf-rloo"))  # fmt: skip
    folders = hub_folders(tmp_path / "hub")
    pref, rlhf = tmp_path / "hub" / "pref", tmp_path / "hub" / "rlhf"
    pref.mkdir()
    rlhf.mkdir()
    (pref / "llava_7b_v1_preference.json").write_text(json.dumps(LLAVA_ROWS))
    (rlhf / "image_to_caption.json").write_text(json.dumps(CAPTIONS))
    (rlhf / "llava_ppo50k-aokvqa12k-vqa10k.json").write_text(json.dumps(RL_ROWS))
    folders |= {"zhiqings/LLaVA-Human-Preference-10K": pref, "zhiqings/LLaVA-RLHF-Data": rlhf}
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **_: str(folders[repo_id]))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    coco = tmp_path / "data" / "coco" / "train2017"  # the README's wget + unzip of COCO train2017
    coco.mkdir(parents=True)
    for name in CAPTIONS:
        (coco / name).write_bytes(jpeg())
    base = str(saved_llava[0])

    assert main(["data", "get", "llava-rlhf-preference", "--heldout", "1"]) == 0
    reward = ["reward", "--config", REWARD_RECIPE, "--model_name_or_path", base, *CPU, "--max_steps", "2",
              "--per_device_train_batch_size", "1", "--max_length", "256", "--eval_steps", "2",
              "--eval_dataset_name", "data/llava-rlhf/preference_heldout1.json"]  # fmt: skip
    assert main(reward) == 0
    assert (tmp_path / "outputs" / "llava-1.5-7b-fact-reward-model" / "eval_results.json").is_file()
    assert main(["data", "get", "llava-rlhf-rl"]) == 0
    prompts = (tmp_path / "data" / "llava-rlhf" / "rl_prompts.jsonl").read_text().splitlines()
    assert len(prompts) == len(RL_ROWS)
    rl = ["rl", "--config", RL_RECIPE, "--model_name_or_path", base, *CPU, "--max_steps", "1",
          "--per_device_train_batch_size", "4", "--max_completion_length", "8", "--logging_steps", "1",
          "--log_completions", "false"]  # fmt: skip
    assert main(rl) == 0
    policy = tmp_path / "outputs" / "llava-1.5-7b-fact-rlhf-rloo"
    assert (policy / "adapter_config.json").is_file()
    state = json.loads((policy / "trainer_state.json").read_text())
    assert "rewards/fact_reward_model/mean" in state["log_history"][0]

    assert main(["data", "get", "pope"]) == 0 and main(["data", "get", "mmhal"]) == 0
    report = run_evaluate("outputs/llava-1.5-7b-fact-rlhf-rloo", "outputs/eval/fact-rlhf", "pope", "mmhal",
                          cwd=tmp_path)  # fmt: skip
    assert report.startswith("| model |") and "| fact-rlhf |" in report
    assert (tmp_path / "outputs" / "eval" / "fact-rlhf" / "mmhal_responses.json").is_file()


TEXT_README = ROOT / "recipes" / "qwen2.5-7b-instruct" / "dense_dpo" / "README.md"
TEXT_RECIPE = "recipes/qwen2.5-7b-instruct/dense_dpo/config_lora.yaml"


@pytest.mark.slow
def test_qwen_text_dense_dpo_readme_from_corrections_to_held_out_metrics(tmp_path, monkeypatch):
    """The text recipe on a tiny Llama-shaped text model (no Qwen2.5 weights offline): a corrections file in the
    README's layout, the recipe's training line (2 steps; its 5% held out), the eval_results.json the README reads."""
    from rlhfv.tiny_models import build_text_model, build_tokenizer

    commands = readme_commands(TEXT_README)
    assert_readme_runs(commands, (
        "mkdir -p data && cp my_corrections.jsonl data/text_corrections.jsonl", f"make train RECIPE={TEXT_RECIPE}",
        "cat outputs/qwen2.5-7b-instruct-dense-dpo-lora/eval_results.json",
        "hf upload <you>/qwen2.5-7b-instruct-dense-dpo-lora outputs/qwen2.5-7b-instruct-dense-dpo-lora"))  # fmt: skip
    tokenizer = build_tokenizer()
    model = build_text_model(tokenizer, seed=0)
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    (tmp_path / "data").mkdir()
    colours = ("red", "blue", "green", "brown")
    rows = [{"id": f"t{i}", "question": f"What colour is the car number {i}?",
             "response": f"The car number {i} is {colours[i % 4]} and it has a dog on the roof.",
             "corrected": f"The car number {i} is {colours[i % 4]} and it has nothing on the roof."}
            for i in range(40)]  # fmt: skip
    (tmp_path / "data" / "text_corrections.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    argv = ["train", "--config", TEXT_RECIPE, "--model_name_or_path", str(tmp_path / "base"), *CPU,
            "--max_steps", "2", "--per_device_train_batch_size", "2", "--max_length", "128", "--logging_steps", "1",
            "--eval_strategy", "steps", "--eval_steps", "2"]  # fmt: skip
    assert main(argv) == 0
    output = tmp_path / "outputs" / "qwen2.5-7b-instruct-dense-dpo-lora"
    assert (output / "adapter_config.json").is_file()
    results = json.loads((output / "eval_results.json").read_text())
    assert 0.0 <= results["eval_rewards/accuracies"] <= 1.0
