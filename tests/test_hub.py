"""`push_to_hub: true`: the repository is created and the final model, processor and card are uploaded to
`hub_model_id` (checkpoints too, per `hub_strategy`). Only the Hub's network calls are intercepted: `HfApi.create_repo`
and `HfApi.upload_folder` record what they were asked to do and what the folder held at that moment."""

from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace

import pytest


REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "recipes" / "demo" / "config_demo.yaml"
DEMO_DATA = REPO / "recipes" / "demo" / "data" / "corrections.jsonl"
REPO_ID = "someone/tiny-dense-dpo"


@pytest.fixture
def hub_calls(monkeypatch, tmp_path):
    from huggingface_hub import HfApi, RepoUrl
    from huggingface_hub.utils import filter_repo_objects

    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append({"call": "create_repo", "repo_id": repo_id, **kwargs})
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, path_in_repo=None, ignore_patterns=None, run_as_future=False,
                      **kwargs):  # fmt: skip
        folder = Path(folder_path)
        files = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
        files = list(filter_repo_objects(files, ignore_patterns=ignore_patterns))
        readme = folder / "README.md"
        calls.append(
            {
                "call": "upload_folder", "repo_id": repo_id, "folder": folder, "path_in_repo": path_in_repo,
                "files": files, "readme": readme.read_text() if readme.is_file() else None, **kwargs,
            }
        )  # fmt: skip
        commit = SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")
        if run_as_future:
            future = Future()
            future.set_result(commit)
            return future
        return commit

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    # A push needs the Hub to be reachable and a token; neither is used once the calls are intercepted
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    return calls


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_push_goes_to_hub_model_id_with_model_and_card(tmp_path, hub_calls):
    from rlhfv.train import parse_recipe, run

    out = tmp_path / "out"
    argv = [
        "--config", str(DEMO), "--dataset_name", str(DEMO_DATA), "--converted_dataset_dir", str(tmp_path / "conv"),
        "--output_dir", str(out), "--max_steps", "3", "--logging_steps", "1", "--eval_strategy", "no",
        "--push_to_hub", "true", "--hub_model_id", REPO_ID, "--hub_strategy", "checkpoint",
        "--save_strategy", "steps", "--save_steps", "2",
    ]  # fmt: skip
    trainer = run(parse_recipe(argv), command="rlhfv train " + " ".join(argv))

    assert [call["call"] for call in hub_calls][0] == "create_repo"
    assert hub_calls[0]["repo_id"] == REPO_ID
    uploads = [call for call in hub_calls if call["call"] == "upload_folder"]
    assert all(call["repo_id"] == REPO_ID for call in uploads)

    # hub_strategy=checkpoint: at every save (step 2, and the last step) the checkpoint goes up as `last-checkpoint`
    checkpoints = [call for call in uploads if call["path_in_repo"] == "last-checkpoint"]
    assert [call["folder"] for call in checkpoints] == [out / "checkpoint-2", out / "checkpoint-3"]
    assert {"model.safetensors", "optimizer.pt", "trainer_state.json"} <= set(checkpoints[0]["files"])

    # The final push: the whole output folder, without checkpoints, with the card of the finished run
    final = uploads[-1]
    assert final["folder"] == out and final["path_in_repo"] is None
    assert final["commit_message"] == "Dense DPO: 3 steps"
    assert {"model.safetensors", "config.json", "README.md", "tokenizer.json", "processor_config.json"} <= set(
        final["files"]
    )
    assert not any(name.startswith("checkpoint-") for name in final["files"])
    card = final["readme"]
    assert "| Steps | 3 (" in card
    last_loss = [entry for entry in trainer.state.log_history if "loss" in entry][-1]["loss"]
    assert f"| loss | {last_loss:.6g} |" in card
    assert f'model_id = "{REPO_ID}"' in card  # the quick start points at the pushed repository
    assert "--hub_model_id someone/tiny-dense-dpo" in card  # the exact command


def test_push_settings_are_checked_before_training(tmp_path, monkeypatch):
    from data_tools.errors import CommandError
    from rlhfv.hub import check_hub_settings
    from rlhfv.train import parse_recipe

    def args(*extra):
        return parse_recipe(
            ["--dataset_name", "x", "--use_cpu", "true", "--push_to_hub", "true", "--output_dir",
             str(tmp_path / "out"), *extra]
        ).training_args  # fmt: skip

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CommandError, match="HF_HUB_OFFLINE is set"):
        check_hub_settings(args("--hub_model_id", REPO_ID))

    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(CommandError, match="`hub_model_id`: 'a/b/c' is not a repository id"):
        check_hub_settings(args("--hub_model_id", "a/b/c"))

    # No token anywhere: no HF_TOKEN and no token file
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(CommandError, match="needs a Hub token"):
        check_hub_settings(args("--hub_model_id", REPO_ID))
    # ... which `hub_token` provides
    check_hub_settings(args("--hub_model_id", REPO_ID, "--hub_token", "hf_not_a_real_token"))
