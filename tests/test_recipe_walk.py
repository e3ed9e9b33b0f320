"""The LLaVA-1.5-7B Dense DPO README walked offline: its `rlhfv data get` lines on files in the published structures
(the Hub's servers replaced by local folders), its training line on a tiny LLaVA with the recipe's own file (CPU
overrides only), its evaluation script on the prepared benchmarks, to a report of the trained model.

The commands run here are checked to be the README's own (so the README cannot drift from what was run): each
`rlhfv data get`, `make train RECIPE=...` and `recipes/evaluate.sh` line the walk uses must appear in its bash block.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_data_get import jpeg, write_parquet

from rlhfv.cli import main


ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
README = ROOT / "recipes" / "llava-1.5-7b" / "dense_dpo" / "README.md"
RECIPE = "recipes/llava-1.5-7b/dense_dpo/config_lora.yaml"
# the recipe's GPU settings replaced for a 2-core CPU and a tiny model; everything else is the recipe's
CPU = ["--use_cpu", "true", "--bf16", "false", "--dtype", "float32", "--max_steps", "2", "--gradient_accumulation_steps",
       "1", "--max_length", "256", "--activation_checkpointing", "false", "--report_to", "none", "--save_strategy",
       "no", "--logging_steps", "1", "--dataloader_num_workers", "0"]  # fmt: skip


def score_args() -> str:
    """SCORE_ARGS for recipes/evaluate.sh: the scorers' NLTK-free approximation only where NLTK's data is missing
    (the walk checks the commands run, not the numbers)."""
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab")
    except LookupError:
        return "--allow-approximate"
    return ""


def readme_commands(readme: Path = README) -> list[str]:
    """The commands of a recipe README's "From nothing" bash block, continuation lines joined, comments dropped."""
    block = re.search(r"## From nothing.*?```bash\n(.*?)```", readme.read_text(), re.S).group(1)
    return [line.split("#")[0].strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def hub_folders(root: Path) -> dict[str, Path]:
    """Local stand-ins for the Hub repositories, in the published files' structure."""
    rlhf_v = root / "RLHF-V-Dataset"
    rows = [
        {"ds_name": "RLHF-V-Dataset", "image": {"bytes": jpeg((20 * i, 90, 200 - 20 * i)), "path": None},
         "text": json.dumps({"question": "Describe the image.", "chosen": f"A square of colour {i}.",
                             "rejected": f"A square of colour {i} with a dog beside it."}),
         "origin_dataset": "detail", "origin_split": json.dumps({"model": "Muffin", "type": "detailed description"}),
         "idx": i, "image_path": f"detail/{i}.jpg"}
        for i in range(6)
    ]  # fmt: skip
    write_parquet(rlhf_v / "RLHF-V-Dataset.parquet", rows,
                  {"ds_name": "string", "image": "image", "text": "string", "origin_dataset": "string",
                   "origin_split": "string", "idx": "int64", "image_path": "string"})  # fmt: skip
    pope = root / "POPE"
    questions = [{"question_id": str(n + 1), "question": "Is there a dog in the image?", "answer": ("yes", "no")[n % 2],
                  "image_source": f"COCO_val2014_{n % 3:012d}", "image": {"bytes": jpeg(), "path": None},
                  "category": ("random", "popular", "adversarial")[n % 3]} for n in range(6)]  # fmt: skip
    write_parquet(pope / "data" / "test-00000-of-00001.parquet", questions,
                  {"question_id": "string", "question": "string", "answer": "string", "image_source": "string",
                   "image": "image", "category": "string"})  # fmt: skip
    mmhal = root / "MMHal-Bench"
    mmhal.mkdir()
    template = json.loads((FIXTURES / "mmhal" / "response_template.json").read_text())
    (mmhal / "response_template.json").write_text(json.dumps(template))
    with zipfile.ZipFile(mmhal / "test_data.zip", "w") as archive:
        for item in template:
            archive.writestr(f"test_data/images/{Path(item['image_src']).name}", jpeg())
    return {"openbmb/RLHF-V-Dataset": rlhf_v, "lmms-lab/POPE": pope, "Shengcao1006/MMHal-Bench": mmhal}


def local_copies(root: Path) -> tuple[Path, Path]:
    """AMBER's repository layout with images, and an Object HalBench folder (questions with embedded images)."""
    amber = root / "AMBER"
    (amber / "data" / "query").mkdir(parents=True)
    for name in ("annotations.json", "relation.json", "safe_words.txt", "metrics.txt"):
        (amber / "data" / name).write_bytes((FIXTURES / "amber" / name).read_bytes())
    queries = json.loads((FIXTURES / "amber" / "query_all.json").read_text())
    (amber / "data" / "query" / "query_all.json").write_text(json.dumps(queries))
    (amber / "image").mkdir()
    for query in queries:
        (amber / "image" / query["image"]).write_bytes(jpeg())
    objhal = root / "objhal_src"
    objhal.mkdir()
    rows = [json.loads(line) for line in (FIXTURES / "object_halbench" / "obj_halbench_questions.jsonl").open()]
    image = base64.b64encode(jpeg()).decode()
    (objhal / "obj_halbench_300_with_image.jsonl").write_text("".join(json.dumps({**r, "image": image}) + "\n"
                                                                     for r in rows))  # fmt: skip
    for name in ("instances_val2014.json", "captions_val2014.json"):
        (objhal / name).write_bytes((FIXTURES / "object_halbench" / name).read_bytes())
    return amber, objhal


@pytest.mark.slow
def test_llava_dense_dpo_readme_from_data_to_an_evaluated_model(tmp_path, monkeypatch, saved_llava):
    import huggingface_hub

    commands = readme_commands()
    for expected in ("rlhfv data get rlhf-v", "rlhfv data get pope", "rlhfv data get mmhal",
                     "rlhfv data get amber --from AMBER", "rlhfv data get object-halbench --from objhal_src",
                     f"make train RECIPE={RECIPE}", "hf upload"):  # fmt: skip
        assert any(command.startswith(expected) for command in commands), expected
    evaluate = [c for c in commands if "recipes/evaluate.sh outputs/llava-1.5-7b-dense-dpo-lora" in c]
    assert evaluate, "the README evaluates the trained model with recipes/evaluate.sh"

    folders = hub_folders(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **_: str(folders[repo_id]))
    amber, objhal = local_copies(tmp_path)
    monkeypatch.chdir(tmp_path)  # the README runs from the repository root: data/ and outputs/ are relative
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")

    # data
    for argv in (["rlhf-v"], ["pope"], ["mmhal"], ["amber", "--from", str(amber)],
                 ["object-halbench", "--from", str(objhal)]):  # fmt: skip
        assert main(["data", "get", *argv]) == 0, argv
    # train: the recipe file as it is, on the tiny model, CPU settings
    base = saved_llava[0]
    output = "outputs/llava-1.5-7b-dense-dpo-lora"
    code = main(["train", "--config", RECIPE, "--model_name_or_path", str(base), *CPU, "--output_dir", output])
    assert code == 0
    assert (tmp_path / output / "adapter_config.json").is_file()
    # evaluate: the README's script, answers from the trained model (a few tokens each)
    env = {**os.environ, "RLHFV": f"{sys.executable} -m rlhfv.cli", "PYTHONPATH": str(ROOT),
           "GEN_ARGS": "--device cpu --max-new-tokens 4 --batch-size 4", "NAME": "dense-dpo",
           "SCORE_ARGS": score_args()}  # fmt: skip
    result = subprocess.run(["bash", str(ROOT / "recipes" / "evaluate.sh"), output, "outputs/eval/dense-dpo"],
                            env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "outputs" / "eval" / "dense-dpo" / "report.md").read_text()
    assert report.startswith("| model |") and "| dense-dpo |" in report
    for name in ("pope.json", "object_halbench.json", "amber.json", "mmhal_responses.json"):
        assert (tmp_path / "outputs" / "eval" / "dense-dpo" / name).is_file(), name
    assert result.stdout.rstrip().splitlines()[-1].startswith("benchmark reports: outputs/eval/dense-dpo/")


REWARD_README = ROOT / "recipes" / "llava-1.5-7b" / "reward_model" / "README.md"
REWARD_RECIPE = "recipes/llava-1.5-7b/reward_model/config_lora.yaml"


@pytest.mark.slow
def test_llava_reward_model_readme_from_data_to_an_evaluated_model(tmp_path, monkeypatch, saved_llava):
    """The reward-model README: `rlhfv data get llava-rlhf-preference` (held-out file made by the command), the
    recipe's training line on a tiny LLaVA, and the held-out accuracy it ends with. The one change: 1 row held out
    of the 3 written here (`--heldout 1`) instead of 500, and the recipe pointed at that file."""
    import huggingface_hub
    from test_data_get import CAPTIONS, LLAVA_ROWS

    text = REWARD_README.read_text()
    for expected in ("rlhfv data get llava-rlhf-preference", f"make train COMMAND=reward RECIPE={REWARD_RECIPE}",
                     "cat outputs/llava-1.5-7b-fact-reward-model/eval_results.json", "hf upload"):  # fmt: skip
        assert expected in text, expected
    pref, rlhf = tmp_path / "hub" / "pref", tmp_path / "hub" / "rlhf"
    pref.mkdir(parents=True)
    rlhf.mkdir()
    (pref / "llava_7b_v1_preference.json").write_text(json.dumps(LLAVA_ROWS))
    (rlhf / "image_to_caption.json").write_text(json.dumps(CAPTIONS))
    folders = {"zhiqings/LLaVA-Human-Preference-10K": pref, "zhiqings/LLaVA-RLHF-Data": rlhf}
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **_: str(folders[repo_id]))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    coco = tmp_path / "data" / "coco" / "train2017"
    coco.mkdir(parents=True)
    for name in CAPTIONS:
        (coco / name).write_bytes(jpeg())

    assert main(["data", "get", "llava-rlhf-preference", "--heldout", "1"]) == 0
    output = "outputs/llava-1.5-7b-fact-reward-model"
    argv = ["reward", "--config", REWARD_RECIPE, "--model_name_or_path", str(saved_llava[0]), "--use_cpu", "true",
            "--bf16", "false", "--dtype", "float32", "--max_steps", "2", "--per_device_train_batch_size", "1",
            "--gradient_accumulation_steps", "1", "--max_length", "256", "--activation_checkpointing", "false",
            "--report_to", "none", "--save_strategy", "no", "--eval_steps", "2",
            "--eval_dataset_name", "data/llava-rlhf/preference_heldout1.json", "--output_dir", output]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((tmp_path / output / "eval_results.json").read_text())
    assert 0.0 <= results["eval_accuracy"] <= 1.0
