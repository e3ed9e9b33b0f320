"""Loading the models of Fact-RLHF: tiny in-process VLMs, VLMs from the Hub or disk, and saved reward models.

`tiny:llava` and `tiny:qwen2-vl` build a small VLM from configs (no download) whose tokenizer is trained on the
synthetic world's words, so that descriptions and facts take few tokens on a CPU.
"""

from __future__ import annotations

import json
import os

from data_tools.errors import CommandError


TINY_PREFIX = "tiny:"
TINY_VLMS = ("llava", "qwen2-vl")
# Saved next to a reward model: how its prompt was built, so that RL and the pair builder score the same way
REWARD_SETTINGS_FILE = "fact_rlhf_reward.json"


def world_corpus() -> list[str]:
    """Sentences covering the synthetic world's vocabulary (and the facts template), to train a tiny tokenizer."""
    from rlhfv.extensions import import_module

    world = import_module("experiments.synthetic", what="tiny reward models (the synthetic world's words)")
    COLOURS, KINDS, POSITIONS, QUESTIONS = world.COLOURS, world.KINDS, world.POSITIONS, world.QUESTIONS
    from rlhfv.reward.facts import DEFAULT_FACTS_TEMPLATE
    from rlhfv.tiny_models import DEFAULT_CORPUS

    sentences = list(DEFAULT_CORPUS) + list(QUESTIONS) + [DEFAULT_FACTS_TEMPLATE]
    for kind in KINDS:
        for colour in COLOURS:
            for phrase in POSITIONS.values():
                sentences.append(f"There is a {colour} {kind} {phrase}. A {colour} {kind} is {phrase}.")
        sentences.append(f"Is there a {kind} in the image? Answer yes or no. No, there is no {kind}.")
    sentences.append("Which object is on the left? A. cup B. kite C. ball. Answer with the option's letter.")
    return sentences


def build_tiny_vlm(kind: str, seed: int = 0):
    """`(model, processor)` of a tiny VLM whose tokenizer knows the synthetic world's words."""
    from rlhfv import tiny_models

    if kind == "llava":
        tokenizer = tiny_models.build_tokenizer(world_corpus(), vocab_size=1024)
        return tiny_models.build_llava(tokenizer, seed=seed)
    if kind == "qwen2-vl":
        tokenizer = tiny_models.build_tokenizer(world_corpus(), vocab_size=1024, image_token="<|image_pad|>")
        return tiny_models.build_qwen2_vl(tokenizer, seed=seed)
    raise CommandError(f"unknown tiny model {TINY_PREFIX}{kind}; choose one of {[TINY_PREFIX + k for k in TINY_VLMS]}")


def load_vlm(name: str, seed: int = 0, **from_pretrained_kwargs):
    """`(model, processor)`: a `tiny:` VLM, or an image-text-to-text model and its processor from the Hub or disk."""
    if name.startswith(TINY_PREFIX):
        return build_tiny_vlm(name[len(TINY_PREFIX) :], seed)
    from transformers import AutoModelForImageTextToText, AutoProcessor

    try:
        model = AutoModelForImageTextToText.from_pretrained(name, **from_pretrained_kwargs)
        processor = AutoProcessor.from_pretrained(name)
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot load the vision-language model {name}: {error}") from error
    return model, processor


def load_reward_model_and_processor(path: str, dtype=None):
    """A reward model saved by `rlhfv reward`, its processor and its prompt settings (facts mode and template)."""
    from transformers import AutoProcessor

    from rlhfv.reward.model import is_reward_model_dir, load_reward_model

    if not is_reward_model_dir(path):
        raise CommandError(f"{path} is not a reward model folder written by `rlhfv reward`")
    model = load_reward_model(path, dtype=dtype)
    processor = AutoProcessor.from_pretrained(path)
    return model, processor, read_reward_settings(path)


def write_reward_settings(path: str, facts: str, template: str) -> None:
    with open(os.path.join(path, REWARD_SETTINGS_FILE), "w") as handle:
        json.dump({"facts": facts, "facts_template": template}, handle, indent=1)
        handle.write("\n")


def read_reward_settings(path: str) -> dict:
    settings_path = os.path.join(path, REWARD_SETTINGS_FILE)
    if not os.path.isfile(settings_path):
        raise CommandError(f"{path} has no {REWARD_SETTINGS_FILE}: was it written by `rlhfv reward`?")
    with open(settings_path) as handle:
        return json.load(handle)
