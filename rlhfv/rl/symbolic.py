"""LLaVA-RLHF's symbolic rewards as TRL reward functions: `f(prompts, completions, completion_ids, **columns)`.

Each is a small callable class (picklable, named by `__name__` in TRL's logs) that returns one value per completion,
or None where it does not apply (TRL then leaves it out of that completion's sum). They compose: pass any of them,
with the reward model, in `reward_funcs`. Defaults are LLaVA-RLHF's (its PPO code and launch script):

| rule | applies to | value |
|---|---|---|
| `MultipleChoiceBonus` | rows with `mc_answer` (the right letter) | +2 when the answer names the right option, else 0 |
| `YesNoRule` | rows with `yes_no_truth == "no"` | +0.5 x 2 for an answer starting "No", -0.5 x 2 for "Yes" |
| `LengthPenalty` | every row | -10 x completion tokens / `max_completion_length` |
| `NoStopTokenPenalty` | every row | -8 when the completion has no stop token (cut off) |

In LLaVA-RLHF the yes/no values (+-0.5) go through the same scale as the multiple-choice bonus (2.0), so an answer
of "No" to a question whose truth is no earns +1.0; `YesNoRule(scale=...)` keeps that factor explicit. The length
term in its launch script has score -10 over the response budget: it pays for brevity, against reward models that
favour long answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


def completion_text(completion) -> str:
    """The text of a completion: a string, or TRL's conversational form [{"role": "assistant", "content": ...}]."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "")
        if isinstance(content, list):
            return "".join(part.get("text", "") for part in content if part.get("type") == "text")
        return content or ""
    return ""


# "B", "B.", "B)", "(B)", "B:" at the start (a bare capital starting a sentence, as in "I think", is not an option),
# or "... option is B" / "... answer is B" anywhere
_LEADING_OPTION = re.compile(r"^\W*\(?([A-Z])(?:[.):]|\s*$)")
_STATED_OPTION = re.compile(r"\b(?:option|answer) is\s*\(?([A-Z])(?![A-Za-z])")


def chosen_option(text: str) -> str | None:
    """The option letter an answer picks, or None when it names none."""
    text = text.strip()
    match = _LEADING_OPTION.match(text)
    if match:
        return match.group(1)
    match = _STATED_OPTION.search(text)
    return match.group(1) if match else None


class _Named:
    """TRL names a reward function by its `__name__` in logs (`rewards/<name>/mean`)."""

    @property
    def __name__(self) -> str:
        return self.name


def _column(kwargs: dict, name: str, size: int) -> list:
    values = kwargs.get(name)
    return list(values) if values is not None else [None] * size


@dataclass
class MultipleChoiceBonus(_Named):
    """+`bonus` when a multiple-choice answer picks the right option (`answer_column` holds its letter)."""

    bonus: float = 2.0
    answer_column: str = "mc_answer"
    name: str = field(default="multiple_choice_bonus", repr=False)

    def __call__(self, prompts, completions, **kwargs) -> list[float | None]:
        answers = _column(kwargs, self.answer_column, len(completions))
        rewards = []
        for completion, answer in zip(completions, answers, strict=True):
            if not answer:
                rewards.append(None)
                continue
            picked = chosen_option(completion_text(completion))
            rewards.append(self.bonus if picked == str(answer).strip().upper() else 0.0)
        return rewards


_YES = re.compile(r"^\W*yes\b", re.IGNORECASE)
_NO = re.compile(r"^\W*no\b", re.IGNORECASE)


@dataclass
class YesNoRule(_Named):
    """For questions whose true answer is no: `scale` x `no_reward` for "No", `scale` x `yes_reward` for "Yes".

    Questions whose truth is yes get None (LLaVA-RLHF gives them no symbolic reward): a model that hallucinates
    tends to say yes, so only the no-side needs the push.
    """

    no_reward: float = 0.5
    yes_reward: float = -0.5
    scale: float = 2.0
    truth_column: str = "yes_no_truth"
    name: str = field(default="yes_no_rule", repr=False)

    def __call__(self, prompts, completions, **kwargs) -> list[float | None]:
        truths = _column(kwargs, self.truth_column, len(completions))
        rewards = []
        for completion, truth in zip(completions, truths, strict=True):
            if truth is None or str(truth).strip().lower() != "no":
                rewards.append(None)
                continue
            text = completion_text(completion)
            if _NO.match(text):
                rewards.append(self.scale * self.no_reward)
            elif _YES.match(text):
                rewards.append(self.scale * self.yes_reward)
            else:
                rewards.append(0.0)
        return rewards


@dataclass
class LengthPenalty(_Named):
    """`score` x (completion tokens / `max_completion_length`); with a negative score, longer answers pay more."""

    max_completion_length: int
    score: float = -10.0
    name: str = field(default="length_penalty", repr=False)

    def __post_init__(self):
        if self.max_completion_length <= 0:
            raise ValueError(f"max_completion_length must be positive, got {self.max_completion_length}")

    def __call__(self, prompts, completions, completion_ids, **kwargs) -> list[float]:
        return [self.score * len(ids) / self.max_completion_length for ids in completion_ids]


@dataclass
class NoStopTokenPenalty(_Named):
    """`penalty` for a completion that does not end with a stop token (it was cut at the length limit)."""

    eos_token_ids: list[int]
    penalty: float = -8.0
    name: str = field(default="no_stop_token_penalty", repr=False)

    def __post_init__(self):
        if not self.eos_token_ids:
            raise ValueError("NoStopTokenPenalty needs the stop token ids (the tokenizer's eos_token_id)")

    def __call__(self, prompts, completions, completion_ids, **kwargs) -> list[float]:
        stops = set(self.eos_token_ids)
        # TRL cuts each completion after its first stop token, so a stopped completion ends with one
        return [0.0 if ids and ids[-1] in stops else self.penalty for ids in completion_ids]
