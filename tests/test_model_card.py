"""The model card: TRL's card plus the Dense DPO section (settings, steps, final metrics, command, recipe)."""

from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "recipes" / "demo" / "config_demo.yaml"
DEMO_DATA = REPO / "recipes" / "demo" / "data" / "corrections.jsonl"


def config(tmp_path, **overrides):
    from rlhfv.config import DenseDPOConfig

    values = {"output_dir": str(tmp_path), "use_cpu": True, "bf16": False, "report_to": "none"}
    return DenseDPOConfig(**{**values, **overrides})


def test_section_states_the_settings_and_the_last_metrics(tmp_path):
    from transformers import TrainerState

    from rlhfv.model_card import RunRecord, dense_section

    args = config(
        tmp_path, gamma=1.1, beta=0.1, score_average=False, per_device_train_batch_size=2,
        gradient_accumulation_steps=3, learning_rate=5e-7, lr_scheduler_type="cosine", warmup_steps=0.03,
    )  # fmt: skip
    state = TrainerState(global_step=12, epoch=2.0)
    state.log_history = [
        {"loss": 0.69, "rewards/accuracies": 0.5, "dense/rewards/changed_margin": 0.01, "learning_rate": 1e-7,
         "step": 6},
        {"loss": 0.61, "rewards/accuracies": 0.75, "dense/rewards/changed_margin": 0.125, "learning_rate": 2e-8,
         "step": 12},
        {"eval_loss": 0.66, "eval_rewards/accuracies": 0.625, "step": 12},
    ]  # fmt: skip
    record = RunRecord(
        base_model="llava-hf/llava-1.5-7b-hf", dataset="openbmb/RLHF-V-Dataset", dataset_format="rlhf-v",
        command="rlhfv train --config c.yaml --gamma 1.1", recipe={"gamma": 1.1, "beta": 0.1},
    )  # fmt: skip
    text = dense_section(args, state, record)

    rows = dict(
        line.strip("|").split(" | ", 1) for line in text.splitlines() if line.startswith("| ") and " | " in line
    )
    rows = {key.strip(): value.strip(" |") for key, value in rows.items()}
    assert rows["Base model"] == "`llava-hf/llava-1.5-7b-hf`"
    assert rows["Dataset"].startswith("`openbmb/RLHF-V-Dataset` (format `rlhf-v`")
    assert rows["gamma (weight of changed segments)"] == "1.1"
    assert rows["beta"] == "0.1"
    assert rows["Normalisation"].startswith("sum:")
    assert rows["Steps"] == "12 (epochs: 2)"
    assert rows["Global batch size"].startswith(f"{2 * 3 * args.world_size} ")
    assert rows["Learning rate"] == "5e-07 (cosine, warmup ratio 0.03)"
    # Last value of each metric; the schedule (learning rate, step) is not a metric
    assert rows["loss"] == "0.61" and rows["rewards/accuracies"] == "0.75"
    assert rows["dense/rewards/changed_margin"] == "0.125" and rows["eval_loss"] == "0.66"
    assert "learning_rate" not in rows and "step" not in rows
    assert "```bash\nrlhfv train --config c.yaml --gamma 1.1\n```" in text
    assert "gamma: 1.1\nbeta: 0.1" in text

    averaged = dense_section(config(tmp_path, gamma=5.0), state, record)
    assert "| Normalisation | average: each score is divided by N = \\|unchanged\\| + 5.0 * \\|changed\\|" in averaged


@pytest.mark.parametrize(
    "name, expected",
    [("llava-hf/llava-1.5-7b-hf", True), ("openbmb/RLHF-V-Dataset", True), ("tiny:llava", False),
     ("recipes/demo/data/corrections.jsonl", False), ("/abs/path", False), ("gpt2", False), (None, False)],
)  # fmt: skip
def test_hub_ids_are_told_from_paths(name, expected):
    from rlhfv.model_card import is_hub_id

    assert is_hub_id(name) is expected


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_card_written_by_a_run(tmp_path):
    from huggingface_hub import ModelCard

    from rlhfv.train import parse_recipe, run

    out = tmp_path / "out"
    argv = [
        "--config", str(DEMO), "--dataset_name", str(DEMO_DATA), "--converted_dataset_dir", str(tmp_path / "conv"),
        "--output_dir", str(out), "--max_steps", "2", "--logging_steps", "1", "--eval_strategy", "no",
        "--beta", "0.25",
    ]  # fmt: skip
    trainer = run(parse_recipe(argv), command="rlhfv train --beta 0.25")

    card = ModelCard.load(out / "README.md")
    assert {"dense-dpo", "rlhf-v", "trl", "dpo"} <= set(card.data.tags)
    assert card.data.base_model is None  # an in-process model has no Hub page
    assert "fine-tuned version of `recipes/demo/prior/sft`" in card.text
    # The quick start loads the model as a VLM is used: processor + image + question, not a text pipeline
    assert f'model_id = "{out}"' in card.text and "AutoModelForImageTextToText" in card.text
    assert '{"type": "image"}' in card.text and "pipeline(" not in card.text
    assert card.data.pipeline_tag == "image-text-to-text"
    # A real license field in the front matter, not TRL's `licence: license` placeholder
    front_matter = (out / "README.md").read_text().split("---")[1]
    assert "licence" not in front_matter and card.data.license == "other"
    assert "| beta | 0.25 |" in card.text and "| Steps | 2 (" in card.text
    last = [entry for entry in trainer.state.log_history if "loss" in entry][-1]
    assert f"| loss | {last['loss']:.6g} |" in card.text
    assert "```bash\nrlhfv train --beta 0.25\n```" in card.text
    assert card.text.count("### Dense DPO training") == 1

    # A Hub base model becomes the card's `base_model`, which links the model to its parent on the Hub
    trainer.run_record.base_model = "llava-hf/llava-1.5-7b-hf"
    trainer.create_model_card(model_name="out")
    assert ModelCard.load(out / "README.md").data.base_model == "llava-hf/llava-1.5-7b-hf"

    # A library user's trainer (no run record) writes the same Dense card, with what the trainer itself knows
    trainer.run_record = None
    trainer.create_model_card(model_name="out", license="apache-2.0")
    card = ModelCard.load(out / "README.md")
    assert card.data.license == "apache-2.0"
    assert "### Dense DPO training" in card.text and "| beta | 0.25 |" in card.text
    assert "| Dataset | (not recorded) |" in card.text and "#### Command" not in card.text
