"""The Qwen2.5-VL-7B READMEs walked offline as far as this machine allows, as test_recipe_walk.py and
test_recipe_walk_rlaif_v.py walk the LLaVA ones. Every command the walk runs is first checked to be in the README's
bash block.

Qwen2-VL's processor loads from a folder only with its video processor, which needs torchvision (the README's
`pip install torchvision`; the PyPI wheel does not load beside a CPU-only torch). Without it, what needs the model
loaded from disk (the README's `hf download` + evaluation, the RLAIF-V sampling) is skipped with that reason, and
the training line runs on `tiny:qwen2-vl`, built in memory with an image-only processor.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from test_recipe_walk import hub_folders, readme_commands
from test_recipe_walk_rl import CPU, assert_readme_runs, run_evaluate

from rlhfv.cli import main


ROOT = Path(__file__).resolve().parents[1]
DENSE_README = ROOT / "recipes" / "qwen2.5-vl-7b" / "dense_dpo" / "README.md"
DENSE_RECIPE = "recipes/qwen2.5-vl-7b/dense_dpo/config_lora.yaml"


TORCHVISION = importlib.util.find_spec("torchvision") is not None
NO_TORCHVISION = "Qwen2-VL's processor loads from a folder only with torchvision (its video processor), not installed"


def save_tiny_qwen2_vl(folder: Path) -> Path:
    """The tiny Qwen2-VL and its processor saved where the README's `hf download` puts the base model."""
    from rlhfv.tiny_models import build_qwen2_vl, build_tokenizer

    model, processor = build_qwen2_vl(build_tokenizer(image_token="<|image_pad|>"), seed=3)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_qwen_vl_dense_dpo_readme_from_data_to_an_evaluated_model(tmp_path, monkeypatch):
    import huggingface_hub

    commands = readme_commands(DENSE_README)
    assert_readme_runs(commands, (
        "rlhfv data get rlhf-v && rlhfv data get pope && rlhfv data get mmhal", f"make train RECIPE={DENSE_RECIPE}",
        "hf download Qwen/Qwen2.5-VL-7B-Instruct --local-dir models/Qwen2.5-VL-7B-Instruct",
        "recipes/evaluate.sh models/Qwen2.5-VL-7B-Instruct outputs/eval/qwen2.5-vl-7b-base pope mmhal",
        "recipes/evaluate.sh outputs/qwen2.5-vl-7b-dense-dpo-lora outputs/eval/qwen2.5-vl-7b-dense-dpo pope mmhal",
        "hf upload <you>/qwen2.5-vl-7b-dense-dpo-lora outputs/qwen2.5-vl-7b-dense-dpo-lora"))  # fmt: skip
    folders = hub_folders(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **_: str(folders[repo_id]))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    base = "models/Qwen2.5-VL-7B-Instruct"
    save_tiny_qwen2_vl(tmp_path / base)

    for name in ("rlhf-v", "pope", "mmhal"):
        assert main(["data", "get", name]) == 0, name
    model = base if TORCHVISION else "tiny:qwen2-vl"
    argv = ["train", "--config", DENSE_RECIPE, "--model_name_or_path", model, *CPU,
            "--max_steps", "2", "--max_length", "256", "--logging_steps", "1", "--dataloader_num_workers", "0"]  # fmt: skip
    assert main(argv) == 0
    output = tmp_path / "outputs" / "qwen2.5-vl-7b-dense-dpo-lora"
    assert (output / "adapter_config.json").is_file()
    if not TORCHVISION:
        pytest.skip(f"evaluation not walked: {NO_TORCHVISION}")
    base = run_evaluate("models/Qwen2.5-VL-7B-Instruct", "outputs/eval/qwen2.5-vl-7b-base", "pope", "mmhal",
                        cwd=tmp_path)  # fmt: skip
    trained = run_evaluate("outputs/qwen2.5-vl-7b-dense-dpo-lora", "outputs/eval/qwen2.5-vl-7b-dense-dpo", "pope",
                           "mmhal", cwd=tmp_path)  # fmt: skip
    assert "| qwen2.5-vl-7b-base |" in base and "| qwen2.5-vl-7b-dense-dpo |" in trained
