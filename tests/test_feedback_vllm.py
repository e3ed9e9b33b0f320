"""`sampler: vllm`: the error when vLLM is absent (raised before any model loads), the prompt rendering shared with
the transformers sampler (checked against the processor's own chat template on a tiny model), the requests and
sampling settings, and a real vLLM run where vLLM and a GPU are present."""

import importlib.util
import json

import pytest

from data_tools.errors import CommandError


HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A saved tiny LLaVA, one image and two rows (with and without the image)."""
    from PIL import Image

    from rlhfv.tiny_models import build_llava, build_tokenizer

    root = tmp_path_factory.mktemp("vllm")
    model, processor = build_llava(build_tokenizer(), seed=0)
    model.save_pretrained(root / "policy")
    processor.save_pretrained(root / "policy")
    Image.new("RGB", (20, 12), (200, 30, 10)).save(root / "red.png")
    rows = [
        {"id": "a", "question": "What color is the box?", "_image_path": str(root / "red.png"), "_where": "a"},
        {"id": "b", "question": "Say a word.", "_where": "b"},
    ]
    return root, model, processor, rows


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed: the error for its absence cannot happen")
def test_asking_for_vllm_without_it_fails_at_start_with_what_to_install(tmp_path, capsys):
    from rlhfv.cli import main as rlhfv_main
    from rlhfv.feedback.config import FeedbackConfig
    from rlhfv.iterate import IterateConfig

    with pytest.raises(CommandError) as error:
        FeedbackConfig(prompts="p.jsonl", policy="m", out="o", sampler="vllm")
    message = str(error.value)
    assert "pip install 'rlhfv[vllm]'" in message and "`sampler: transformers`" in message
    # the command stops on it before reading prompts or loading the (absent) policy
    argv = ["feedback", "--prompts", str(tmp_path / "none.jsonl"), "--policy", str(tmp_path / "no-model"),
            "--output_dir", str(tmp_path / "out"), "--sampler", "vllm"]  # fmt: skip
    assert rlhfv_main(argv) == 1
    err = capsys.readouterr().err
    assert "vllm package, which is not installed" in err and "no-model" not in err
    assert not (tmp_path / "out").exists()
    # and `rlhfv iterate` at start, not after round 1's set-up
    recipe = tmp_path / "iterate.yaml"
    recipe.write_text(f"initial_policy: {tmp_path / 'no-model'}\nfeedback:\n  sampler: vllm\n")
    with pytest.raises(CommandError, match="rlhfv\\[vllm\\]"):
        IterateConfig.from_yaml(str(recipe), {})
    with pytest.raises(CommandError, match="`sampler` must be one of transformers, vllm"):
        FeedbackConfig(prompts="p.jsonl", policy="m", out="o", sampler="sglang")


def test_both_samplers_ask_the_text_of_the_processors_own_chat_template(tiny):
    from PIL import Image

    from rlhfv.feedback.vllm_sampling import build_requests, load_processor
    from rlhfv.generation.generate import LoadedModel, build_inputs, render_prompt

    root, model, processor, rows = tiny
    with_image = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color is the box?"}]}],
        add_generation_prompt=True, tokenize=False,
    )  # fmt: skip
    text_only = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "Say a word."}]}],
        add_generation_prompt=True, tokenize=False,
    )  # fmt: skip
    assert "What color is the box?" in with_image and with_image != text_only
    assert [render_prompt(processor, row) for row in rows] == [with_image, text_only]
    # the transformers sampler tokenises exactly that text (with the image)
    inputs = build_inputs(LoadedModel(model, processor, "tiny"), rows[:1])
    image = Image.open(root / "red.png").convert("RGB")
    expected = processor(text=[with_image], images=[image], return_tensors="pt")
    assert inputs["input_ids"].tolist() == expected["input_ids"].tolist()
    # the vLLM sampler sends the same text, the image as a PIL image, and nothing for a text-only row
    requests = build_requests(load_processor(str(root / "policy")), rows)
    assert [r["prompt"] for r in requests] == [with_image, text_only]
    sent = requests[0]["multi_modal_data"]["image"]
    assert sent.mode == "RGB" and sent.size == (20, 12) and sent.getpixel((3, 3)) == (200, 30, 10)
    assert "multi_modal_data" not in requests[1]


def test_vllm_requests_carry_rlaif_v_settings_and_a_seed_per_instruction(tmp_path):
    import zlib

    from rlhfv.feedback.config import FeedbackConfig
    from rlhfv.feedback.vllm_sampling import load_processor, sampling_params

    config = FeedbackConfig(prompts="p", policy="m", out="o", num_samples=10, temperature=0.7, top_p=0.9,
                            max_new_tokens=512, seed=3)  # fmt: skip
    params = sampling_params(config, [{"id": "x"}, {"id": "y"}])
    assert params[0] == {"n": 10, "temperature": 0.7, "top_p": 0.9, "top_k": 0, "max_tokens": 512,
                         "seed": zlib.crc32(b"3:x"), "skip_special_tokens": True}  # fmt: skip
    assert params[1]["seed"] == zlib.crc32(b"3:y") != params[0]["seed"]
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(CommandError, match="LoRA adapter; sampler: vllm loads a full model folder"):
        load_processor(str(tmp_path / "adapter"))


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_VLLM, reason="needs vLLM (pip install 'rlhfv[vllm]')")
def test_real_vllm_sampling_writes_the_answers_file_and_resumes(tiny, tmp_path):
    from rlhfv.cli import main as rlhfv_main

    root, _, _, rows = tiny
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "image": str(root / "red.png"),
                                           "question": f"Describe the box {i}."}) + "\n" for i in range(3)))  # fmt: skip
    out = tmp_path / "fb"
    argv = ["feedback", "--prompts", str(prompts), "--policy", str(root / "policy"), "--output_dir", str(out),
            "--sampler", "vllm", "--num-samples", "3", "--max-new-tokens", "8", "--stop-after", "sample",
            "--no-progress", "--vllm-gpu-memory-utilization", "0.3", "--vllm-max-model-len", "512"]  # fmt: skip
    assert rlhfv_main(argv) == 0
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert [a["id"] for a in answers] == ["p0", "p1", "p2"]
    assert all(len(a["answers"]) == 3 and all(isinstance(t, str) for t in a["answers"]) for a in answers)
    before = (out / "answers.jsonl").read_text()
    (out / "stages" / "sample.done").unlink()
    assert rlhfv_main(argv) == 0  # resumes: every instruction is answered, nothing is sampled again
    assert (out / "answers.jsonl").read_text() == before
