"""The fact-augmented reward model as a TRL reward function.

TRL's online trainers call a reward *model* (an `nn.Module`) with the chat-templated text only: no images, no facts.
A vision reward model that reads facts needs both, so it is wrapped in a callable, which TRL calls with every
dataset column: the prompt (its image parts carry the images), the completion and the row's `facts`.
"""

from __future__ import annotations

from rlhfv.reward.inputs import score_answers
from rlhfv.rl.symbolic import completion_text


def split_prompt(prompt: list[dict]) -> tuple[list[dict], list]:
    """A TRL multimodal prompt -> (messages with plain-text content, the images of its image parts, in order)."""
    messages, images = [], []
    for message in prompt:
        content = message.get("content")
        if isinstance(content, list):
            texts = []
            for part in content:
                if part.get("type") == "image":
                    if part.get("image") is not None:
                        images.append(part["image"])
                elif part.get("type") == "text":
                    texts.append(part.get("text", ""))
            content = "".join(texts)
        messages.append({"role": message["role"], "content": content})
    return messages, images


class FactRewardModelFunction:
    """Scores completions with a `VisionRewardModel`, reading each row's `facts` when the model was trained with them.

    `settings` is the reward model's `fact_rlhf_reward.json` (facts mode and template), so that the model sees the
    prompt layout it was trained on.
    """

    def __init__(self, model, processor, settings: dict, batch_size: int = 8):
        self.model = model
        self.processor = processor
        self.use_facts = settings.get("facts", "row") != "none"
        self.template = settings.get("facts_template")
        self.batch_size = batch_size
        self.__name__ = "fact_reward_model" if self.use_facts else "reward_model"

    def __call__(self, prompts, completions, facts=None, images=None, **kwargs) -> list[float]:
        split = [split_prompt(prompt) for prompt in prompts]
        messages = [messages for messages, _ in split]
        prompt_images = [found for _, found in split]
        if not any(prompt_images) and images is not None:
            prompt_images = [list(row or []) for row in images]
        if self.use_facts and facts is None:
            raise ValueError("the reward model reads facts, but the RL dataset has no `facts` column")
        answers = [completion_text(completion) for completion in completions]
        return score_answers(
            self.model,
            self.processor,
            messages,
            answers,
            prompt_images,
            list(facts) if self.use_facts else None,
            self.template,
            batch_size=self.batch_size,
        )
