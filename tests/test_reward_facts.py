"""Facts in the reward model's prompt: rendering, the template file, and that they reach the model's input ids."""

import pytest
from PIL import Image

from data_tools.errors import RowError
from rlhfv.reward.facts import DEFAULT_FACTS_TEMPLATE, fact_lines, load_template, render_facts, reward_messages


PROMPT = [{"role": "user", "content": "What is in the image?"}]


def test_fact_lines_from_list_and_from_options():
    assert fact_lines(["a red cup on the left", " a kite "]) == ["a red cup on the left", "a kite"]
    lines = fact_lines({"captions": ["a cat on a mat"], "options": ["dog", "cat", "cow"], "answer": "b"})
    assert lines == ["a cat on a mat", "Options: A. dog; B. cat; C. cow", "The right option is B. cat"]


@pytest.mark.parametrize(
    ("facts", "field"),
    [
        ({"options": ["dog", "cat"], "answer": "C"}, "facts.answer"),
        ({"captions": "one string"}, "facts"),
        (["ok", ""], "facts[1]"),
        ({"caption": ["typo"]}, "facts"),
        (3, "facts"),
    ],
)
def test_bad_facts_name_the_field(facts, field):
    with pytest.raises(RowError) as error:
        fact_lines(facts)
    assert error.value.field == field


def test_render_with_default_and_file_template(tmp_path):
    block = render_facts(["a red cup", "a blue kite"])
    assert block == DEFAULT_FACTS_TEMPLATE.replace("{facts}", "  - a red cup\n  - a blue kite")
    path = tmp_path / "template.txt"
    path.write_text("KNOWN:\n{facts}\nEND")
    assert render_facts(["a red cup"], load_template(str(path))) == "KNOWN:\n  - a red cup\nEND"
    path.write_text("no slot here")
    with pytest.raises(ValueError, match="exactly once"):
        load_template(str(path))
    with pytest.raises(ValueError, match="cannot read"):
        load_template(str(tmp_path / "missing.txt"))


def test_reward_messages_put_facts_after_the_answer():
    messages = reward_messages(PROMPT, "A red cup.", num_images=1, facts=["a red cup"], template="F: {facts}")
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"][0]["type"] == "image"
    assert messages[1]["content"] == [{"type": "text", "text": "A red cup."}]
    assert messages[2]["content"] == [{"type": "text", "text": "F:   - a red cup"}]
    plain = reward_messages(PROMPT, "A red cup.", num_images=1, facts=None)
    assert [m["role"] for m in plain] == ["user", "assistant"]


@pytest.fixture(scope="module")
def processor():
    from rlhfv.reward.loading import build_tiny_vlm

    return build_tiny_vlm("llava")[1]


def test_facts_reach_the_token_ids(processor):
    """The collator's input ids decode to text that holds the facts (and not with facts off), with image tokens."""
    from rlhfv.reward.inputs import RewardPreferenceCollator

    image = Image.new("RGB", (64, 64), (200, 30, 30))
    row = {"prompt": PROMPT, "chosen": "A red cup.", "rejected": "A blue kite.", "images": [image]}
    row["facts"] = ["a red cup at the top", "a green umbrella on the left"]
    tokenizer = processor.tokenizer
    batch = RewardPreferenceCollator(processor, DEFAULT_FACTS_TEMPLATE, use_facts=True)([row])
    texts = tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=False)
    assert len(texts) == 2  # chosen row, then rejected row
    for text, answer in zip(texts, ["A red cup.", "A blue kite."], strict=True):
        assert "  - a red cup at the top\n  - a green umbrella on the left" in text
        assert text.index(answer) < text.index("a green umbrella")  # facts after the answer
    image_id = tokenizer.convert_tokens_to_ids(tokenizer.image_token)
    # tiny LLaVA: 32 px / 8 px patches = 16 image tokens per row, one image per row
    assert (batch["input_ids"] == image_id).sum(dim=1).tolist() == [16, 16]
    assert batch["pixel_values"].shape[0] == 2

    plain = RewardPreferenceCollator(processor, DEFAULT_FACTS_TEMPLATE, use_facts=False)([row])
    for text in tokenizer.batch_decode(plain["input_ids"]):
        assert "green umbrella" not in text and "Facts about the image" not in text
    with pytest.raises(ValueError, match="facts"):
        RewardPreferenceCollator(processor, use_facts=True)([{**row, "facts": None}])
