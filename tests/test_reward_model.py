"""The vision reward model: pooling, saving, and training with `VisionRewardTrainer` on a toy preference."""

import math

import pytest
import torch
from PIL import Image

from rlhfv.reward.config import FactRewardConfig
from rlhfv.reward.inputs import encode_conversations, reward_conversation, score_answers
from rlhfv.reward.loading import build_tiny_vlm
from rlhfv.reward.model import VisionRewardModel, load_reward_model


QUESTION = [{"role": "user", "content": "Describe the image in detail."}]


def tiny_reward_model(seed=0):
    vlm, processor = build_tiny_vlm("llava", seed=seed)
    return VisionRewardModel.from_vlm(vlm), processor


def image(colour):
    return Image.new("RGB", (64, 64), colour)


def test_reward_is_read_at_the_last_token_whatever_the_padding():
    """A row's reward in a padded batch equals its reward alone, for left and right padding alike."""
    model, processor = tiny_reward_model()
    model.eval()
    answers = ["A red cup.", "There is a blue kite at the top and a green ball on the left."]
    images = [[image((200, 0, 0))], [image((0, 0, 200))]]
    conversations = [
        reward_conversation(QUESTION, a, i, ["a red cup"], None) for a, i in zip(answers, images, strict=True)
    ]
    alone = [
        model(**encode_conversations(processor, [c], [i])).logits.item()
        for c, i in zip(conversations, images, strict=True)
    ]
    for side in ("left", "right"):
        processor.tokenizer.padding_side = side
        batch = encode_conversations(processor, conversations, images)
        assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]  # the short row is padded
        together = model(**batch).logits[:, 0].tolist()
        assert together == pytest.approx(alone, abs=1e-5)
    processor.tokenizer.padding_side = "left"


def test_save_and_load_round_trip(tmp_path):
    model, processor = tiny_reward_model(seed=3)
    model.save_pretrained(tmp_path)
    loaded = load_reward_model(str(tmp_path))
    assert loaded.config.num_labels == 1
    original = model.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, original[name]), name
    with pytest.raises(ValueError, match="not a reward model"):
        load_reward_model(str(tmp_path / "nowhere"))


def test_wrapping_needs_an_image_text_to_text_model():
    with pytest.raises(ValueError, match="no `.model`"):
        VisionRewardModel.from_vlm(torch.nn.Linear(2, 2))


def toy_rows(n):
    """Red answers are preferred to blue ones, over varied objects, positions, questions and images."""
    from datasets import Dataset, Features, Sequence, Value
    from datasets import Image as ImageFeature

    kinds = ["cup", "kite", "ball", "clock", "book", "apple"]
    positions = ["on the left", "on the right", "at the top", "at the bottom"]
    questions = ["Describe the image in detail.", "What is in this image?", "Tell me about the picture."]
    rows = []
    for i in range(n):
        kind, position = kinds[i % len(kinds)], positions[i % len(positions)]
        rows.append(
            {
                "prompt": [{"role": "user", "content": questions[i % len(questions)]}],
                "chosen": f"There is a red {kind} {position}.",
                "rejected": f"There is a blue {kind} {position}.",
                "images": [image((30 * (i % 8), 100, 200 - 20 * (i % 8)))],
                "facts": [f"a {kind} {position}"],
            }
        )
    features = Features(
        {
            "prompt": [{"role": Value("string"), "content": Value("string")}],
            "chosen": Value("string"),
            "rejected": Value("string"),
            "images": Sequence(ImageFeature()),
            "facts": Sequence(Value("string")),
        }
    )
    return Dataset.from_list(rows, features=features)


def mean_pair_loss(model, processor, dataset):
    """-log sigmoid(r_chosen - r_rejected), averaged: computed here, independently of the trainer."""
    rows = list(dataset)
    prompts = [r["prompt"] for r in rows]
    images = [r["images"] for r in rows]
    facts = [r["facts"] for r in rows]
    chosen = score_answers(model, processor, prompts, [r["chosen"] for r in rows], images, facts)
    rejected = score_answers(model, processor, prompts, [r["rejected"] for r in rows], images, facts)
    return sum(math.log1p(math.exp(-(c - r))) for c, r in zip(chosen, rejected, strict=True)) / len(rows)


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_training_reduces_the_loss_and_ranks_a_held_out_pair(tmp_path):
    from rlhfv.reward.trainer import VisionRewardTrainer

    model, processor = tiny_reward_model()
    train = toy_rows(12)
    model.eval()
    before = mean_pair_loss(model, processor, train)
    args = FactRewardConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=24,
        learning_rate=5e-3,
        activation_checkpointing=False,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=6,
        seed=0,
    )
    trainer = VisionRewardTrainer(model=model, args=args, train_dataset=train, processor=processor)
    trainer.train()
    model.eval()
    after = mean_pair_loss(model, processor, train)
    assert before == pytest.approx(math.log(2), abs=0.05)  # a fresh head scores both answers alike
    assert after < 0.5 * before
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert logged[-1] < logged[0]

    # Held out: a new object, position, wording, question and image
    held_out = [{"role": "user", "content": "What objects can you see?"}]
    scores = score_answers(
        model,
        processor,
        [held_out, held_out],
        ["A red umbrella is in the center.", "A blue umbrella is in the center."],
        [[image((250, 250, 0))]] * 2,
        [["an umbrella in the center"]] * 2,
    )
    assert scores[0] > scores[1]

    # The saved folder holds the processor as well, so it scores on its own
    trainer.save_model(str(tmp_path / "saved"))
    from transformers import AutoProcessor

    reloaded = load_reward_model(str(tmp_path / "saved"))
    again = score_answers(
        reloaded,
        AutoProcessor.from_pretrained(str(tmp_path / "saved")),
        [held_out],
        ["A red umbrella is in the center."],
        [[image((250, 250, 0))]],
        [["an umbrella in the center"]],
    )
    assert again[0] == pytest.approx(scores[0], abs=1e-4)
