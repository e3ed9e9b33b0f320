"""`rlhfv eval generate`: one answer per prompt, equal to unbatched greedy decoding, and resumable."""

import json

from experiments.synthetic import write_prompts
from rlhfv.cli import main as rlhfv_main
from rlhfv.generation.generate import GenerationOptions, generate_answers


MAX_NEW_TOKENS = 6


def greedy_one_by_one(model, processor, prompt_file):
    """The test's own decoding: one prompt at a time, no padding, straight from the in-memory model."""
    import torch
    from PIL import Image

    answers = {}
    for line in prompt_file.read_text().splitlines():
        row = json.loads(line)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row["question"]}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        image = Image.open(prompt_file.parent / row["image"]).convert("RGB")
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False,
                pad_token_id=processor.tokenizer.pad_token_id,
                eos_token_id=processor.tokenizer.eos_token_id,
                suppress_tokens=[processor.tokenizer.convert_tokens_to_ids("<image>")],
            )
        new = out[0, inputs["input_ids"].shape[1] :]
        answers[row["id"]] = processor.tokenizer.decode(new, skip_special_tokens=True).strip()
    return answers


def test_generate_batched_matches_unbatched_and_resumes(tmp_path, saved_llava):
    folder, model, processor = saved_llava
    prompts = write_prompts(tmp_path / "prompts", n=5, seed=0)
    out = tmp_path / "answers.jsonl"
    argv = ["eval", "generate", "--model", str(folder), "--prompts", str(prompts), "--output_dir", str(out),
            "--batch-size", "2", "--max-new-tokens", str(MAX_NEW_TOKENS), "--quiet", "--device", "cpu"]  # fmt: skip
    assert rlhfv_main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = greedy_one_by_one(model.eval(), processor, prompts)
    assert [r["id"] for r in rows] == list(expected)
    # batched, left-padded generation gives what one-by-one decoding gives
    assert {r["id"]: r["answer"] for r in rows} == expected
    assert all(r["image"].startswith("images/") for r in rows)

    # resume: keep two answered rows (one marked), leave a line cut short by an interruption
    kept = [dict(rows[0], answer="KEPT"), rows[1]]
    out.write_text("".join(json.dumps(r) + "\n" for r in kept) + '{"id": "eval-s0-000')
    counts = generate_answers(
        folder, prompts, out, GenerationOptions(max_new_tokens=MAX_NEW_TOKENS, batch_size=2), progress=False
    )
    assert counts == {"prompts": 5, "skipped": 2, "generated": 3}
    resumed = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in resumed] == list(expected)
    assert resumed[0]["answer"] == "KEPT"
    assert {r["id"]: r["answer"] for r in resumed[1:]} == {k: v for k, v in list(expected.items())[1:]}
    # nothing left to do: the model is not even loaded
    assert generate_answers("/nonexistent", prompts, out, GenerationOptions(), progress=False)["generated"] == 0


def test_bad_prompt_file_names_row_and_field(tmp_path, saved_llava, capsys):
    folder, _, _ = saved_llava
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "a", "question": "Hi?", "image": "missing.png"}) + "\n")
    assert rlhfv_main(["eval", "generate", "--model", str(folder), "--prompts", str(prompts), "--output_dir",
                       str(tmp_path / "o.jsonl")]) == 1  # fmt: skip
    assert "prompts.jsonl:line 1: field 'image': no such file" in capsys.readouterr().err
