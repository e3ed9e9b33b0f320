"""An interrupted run resumed from its checkpoint ends where the uninterrupted run ends: same steps, same data order,
same weights and optimizer state."""

from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "recipes" / "demo" / "config_demo.yaml"
DEMO_DATA = REPO / "recipes" / "demo" / "data" / "corrections.jsonl"


class Interrupted(Exception):
    pass


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_resume_continues_with_the_same_steps_and_optimizer_state(tmp_path, caplog):
    import shutil

    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from data_tools.errors import CommandError
    from rlhfv.train import parse_recipe, run

    def argv(output_dir, *extra):
        return [
            "--config", str(DEMO), "--dataset_name", str(DEMO_DATA),
            "--converted_dataset_dir", str(tmp_path / "converted"), "--output_dir", str(output_dir),
            "--max_steps", "6", "--save_strategy", "steps", "--save_steps", "3", "--logging_steps", "1",
            "--eval_strategy", "no", "--warmup_steps", "0", *extra,
        ]  # fmt: skip

    whole, broken = tmp_path / "whole", tmp_path / "broken"
    uninterrupted = run(parse_recipe(argv(whole)))

    class CrashAtStep4(TrainerCallback):
        # After checkpoint-3 is written, before checkpoint-6: step 4's update is lost, as in a real crash
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 4:
                raise Interrupted

    with pytest.raises(Interrupted):
        run(parse_recipe(argv(broken)), callbacks=[CrashAtStep4()])
    assert sorted(path.name for path in broken.glob("checkpoint-*")) == ["checkpoint-3"]

    class LossesLogged(TrainerCallback):
        # Only what the resumed process itself computes: the checkpoint's own log of steps 1-3 is not seen here
        def __init__(self):
            self.losses = {}

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses[state.global_step] = logs["loss"]

    # A checkpoint killed while being written (weights there, no trainer_state.json yet) is skipped, with a warning
    partial = broken / "checkpoint-5"
    partial.mkdir()
    shutil.copy(broken / "checkpoint-3" / "model.safetensors", partial / "model.safetensors")

    # `true` = the last complete checkpoint in output_dir
    logged = LossesLogged()
    resumed = run(parse_recipe(argv(broken, "--resume_from_checkpoint", "true")), callbacks=[logged])
    assert resumed.state.global_step == uninterrupted.state.global_step == 6
    assert any("Skipping" in r.message and "checkpoint-5" in r.message for r in caplog.records)

    # Steps 4-6 were trained again, on the same batches from the checkpoint's weights: the same losses as the
    # uninterrupted run (a resume that restarted from the initial weights or reshuffled the data would differ)
    expected = {entry["step"]: entry["loss"] for entry in uninterrupted.state.log_history if "loss" in entry}
    assert sorted(logged.losses) == [4, 5, 6]
    for step, loss in logged.losses.items():
        assert loss == pytest.approx(expected[step], rel=1e-5, abs=1e-6), step

    final_whole = load_file(whole / "model.safetensors")
    final_resumed = load_file(broken / "model.safetensors")
    assert final_whole.keys() == final_resumed.keys()
    for name in final_whole:
        torch.testing.assert_close(final_resumed[name], final_whole[name], rtol=1e-5, atol=1e-6, msg=name)

    def optimizer_state(folder):
        return torch.load(folder / "checkpoint-6" / "optimizer.pt", weights_only=False)["state"]

    state_whole, state_resumed = optimizer_state(whole), optimizer_state(broken)
    assert state_whole.keys() == state_resumed.keys() and state_whole
    for index in state_whole:
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(state_resumed[index][key], state_whole[index][key], rtol=1e-5, atol=1e-7)
        assert float(state_resumed[index]["step"]) == float(state_whole[index]["step"]) == 6
    scheduler_whole = torch.load(whole / "checkpoint-6" / "scheduler.pt", weights_only=False)
    scheduler_resumed = torch.load(broken / "checkpoint-6" / "scheduler.pt", weights_only=False)
    assert scheduler_resumed["last_epoch"] == scheduler_whole["last_epoch"] == 6

    # Resuming with settings that change what is learned is named in a warning, setting by setting
    from rlhfv.resume import changed_settings

    changed = parse_recipe(argv(broken, "--gamma", "2.0", "--beta", "0.3"))
    assert changed_settings(broken / "checkpoint-3", changed.training_args, "other.jsonl") == [
        f"gamma: {uninterrupted.args.gamma!r} -> 2.0",
        f"beta: {uninterrupted.args.beta!r} -> 0.3",
        f"dataset_name: {str(DEMO_DATA)!r} -> 'other.jsonl'",
    ]
    same = parse_recipe(argv(broken))
    assert changed_settings(broken / "checkpoint-3", same.training_args, str(DEMO_DATA)) == []

    # Asking to resume where there is nothing to resume from is a clear error
    with pytest.raises(CommandError, match="holds no checkpoint"):
        run(parse_recipe(argv(tmp_path / "empty", "--resume_from_checkpoint", "true")))
