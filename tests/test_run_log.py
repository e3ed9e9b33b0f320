"""The resolved configuration goes to the output folder with credentials redacted, and only what is secret."""

import json
import logging

from rlhfv.run_log import REDACTED, log_configuration, metrics_line, open_run_log, redact


def test_redact_hides_credentials_only():
    values = {
        "hub_token": "hf_abcdefghijklmnop",
        "pad_token": "<pad>",
        "include_num_input_tokens_seen": True,
        "average_tokens_across_devices": True,
        "api_key": "x",
        "wandb": {"password": "p"},
        "base_url": "http://localhost:8000/v1",
        "note": "sk-0123456789abcdef",
        "hub_model_id": "me/model",
    }
    assert redact(values) == {
        "hub_token": REDACTED,
        "pad_token": "<pad>",
        "include_num_input_tokens_seen": True,
        "average_tokens_across_devices": True,
        "api_key": REDACTED,
        "wandb": {"password": REDACTED},
        "base_url": "http://localhost:8000/v1",
        "note": REDACTED,
        "hub_model_id": "me/model",
    }


def test_configuration_goes_to_files_not_the_screen(tmp_path, capsys):
    from trl import ModelConfig

    log = open_run_log(str(tmp_path))
    path = log_configuration(
        str(tmp_path),
        model_args=ModelConfig(model_name_or_path="tiny:llava"),
        extra={"hub_token": "hf_secretsecretsecret"},
    )
    for handler in logging.getLogger("rlhfv").handlers:
        handler.flush()
    saved = json.loads(path.read_text())
    assert saved["model_args"]["model_name_or_path"] == "tiny:llava" and saved["extra"]["hub_token"] == REDACTED
    assert "tiny:llava" in log.read_text() and "hf_secret" not in log.read_text()
    assert capsys.readouterr().out == ""


def test_metrics_line():
    line = metrics_line("eval", {"eval_loss": 0.16114, "eval_rewards/accuracies": 0.96875, "epoch": 2.0}, "o/e.json")
    assert line == "eval: loss 0.1611, rewards/accuracies 0.9688 (3 metrics in o/e.json)"
