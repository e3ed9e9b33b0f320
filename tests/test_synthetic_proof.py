"""The end-to-end proof pipeline runs on a miniature configuration (three tiny models, about 10 s)."""

import json


def test_proof_pipeline_miniature(tmp_path):
    import yaml

    from data_tools.synthetic.proof import METHODS, METRICS, main

    config = tmp_path / "proof.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "seeds": [0],
                "out": str(tmp_path / "out"),
                "sft_items": 128,
                "sft_steps": 10,
                "sft_batch_size": 8,
                "preference_items": 24,
                "eval_items": 12,
                "max_new_tokens": 24,
            }
        )
    )
    assert main(["--config", str(config)]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    seed = results["seeds"][0]
    feedback = seed["feedback"]
    assert feedback["answers"] == 24
    assert feedback["pairs"] == 24 - feedback["answers_already_correct"] - feedback["answers_with_nothing_true"]
    for method in METHODS:
        assert seed["metrics"][method]["responses"] == 12
        assert set(METRICS) <= set(results["summary"][method])
    assert (tmp_path / "out" / "results.png").stat().st_size > 0
    assert "Dense DPO" in (tmp_path / "out" / "results.md").read_text()
