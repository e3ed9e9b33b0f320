"""One thread policy for every stage: `rlhfv iterate` runs its SFT, sampling, labeling and evaluation stages with the
train section's `env: OMP_NUM_THREADS`, not only its training stage."""

import os

import torch

from rlhfv import iterate


def test_iterate_applies_the_train_env_before_its_first_stage(tmp_path, monkeypatch):
    seen = {}

    def run(self):
        seen["threads"] = torch.get_num_threads()
        seen["env"] = os.environ.get("OMP_NUM_THREADS")
        return []

    recipe = tmp_path / "iterate.yaml"
    recipe.write_text(
        f"rounds: 1\noutput_dir: {tmp_path / 'out'}\ninitial_policy: {tmp_path}\n"
        f"feedback:\n  prompts: {tmp_path / 'prompts.jsonl'}\n"
        "evaluation:\n  kind: none\ntrain:\n  env:\n    OMP_NUM_THREADS: 1\n"
    )
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(iterate.Iteration, "run", run)
    monkeypatch.setattr(iterate, "markdown_table", lambda rows, metrics: "")
    try:
        torch.set_num_threads(2)
        from rlhfv.cli import build_parser

        args = build_parser().parse_args(["iterate", "--config", str(recipe)])
        assert iterate.main(args) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == {"threads": 1, "env": "1"}
