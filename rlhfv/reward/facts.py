"""Facts in the reward model's prompt (Fact-RLHF): what is known to be true about the image.

LLaVA-RLHF's reward model reads, after the answer it scores, a block of facts about the image: human captions (one
per line, shuffled) and, for multiple-choice questions, the options and the right one. A fluent answer that names
something the facts do not support is then easier to score down than from the pixels alone.

Here a row's facts are a `facts` field: a list of strings (one fact each), or a dict with `captions` (list of
strings), `options` (list of strings, labelled A, B, C, ...) and `answer` (the right option's letter). The block is
rendered with a template that has one `{facts}` slot; the default below was written for this project, and a file
can replace it (`facts_template` in a recipe). With `facts: none` the block is left out: the plain reward model.
"""

from __future__ import annotations

import string
from typing import Any

from data_tools.errors import BAD_VALUE, RowError


FACTS_SLOT = "{facts}"
DEFAULT_FACTS_TEMPLATE = (
    "Facts about the image, known to be true:\n"
    "{facts}\n"
    "Score the answer above: an answer that states anything these facts contradict or do not support is "
    "hallucinating."
)
# `facts` in a recipe: `row` reads each row's `facts` field; `none` trains the plain reward model
FACTS_MODES = ("row", "none")


def load_template(path: str | None) -> str:
    """The facts template: the file at `path` (UTF-8 text with exactly one `{facts}`), or the default."""
    if path is None:
        return DEFAULT_FACTS_TEMPLATE
    try:
        with open(path, encoding="utf-8") as handle:
            template = handle.read()
    except OSError as error:
        raise ValueError(f"facts template {path}: cannot read it ({error.strerror})") from error
    return check_template(template, source=path)


def check_template(template: str, source: str = "facts template") -> str:
    count = template.count(FACTS_SLOT)
    if count != 1:
        raise ValueError(
            f"{source}: the template must contain the slot {FACTS_SLOT} exactly once (found {count}); it is where "
            "the facts go"
        )
    return template


def fact_lines(facts: Any, label: str = "facts") -> list[str]:
    """A row's facts as lines of text. Raises `RowError` naming the field when the value has the wrong shape."""
    if isinstance(facts, str):
        facts = [facts]
    if isinstance(facts, list):
        return [_text(item, f"{label}[{index}]") for index, item in enumerate(facts)]
    if not isinstance(facts, dict):
        raise RowError(
            BAD_VALUE,
            label,
            f"expected a list of strings or a dict {{captions, options, answer}}, got {type(facts).__name__}",
        )
    unknown = set(facts) - {"captions", "options", "answer"}
    if unknown:
        raise RowError(BAD_VALUE, label, f"unknown keys {sorted(unknown)} (expected captions, options, answer)")
    lines = [_text(item, f"{label}.captions[{i}]") for i, item in enumerate(_list(facts.get("captions"), label))]
    options = [_text(item, f"{label}.options[{i}]") for i, item in enumerate(_list(facts.get("options"), label))]
    if options:
        if len(options) > len(string.ascii_uppercase):
            raise RowError(BAD_VALUE, f"{label}.options", f"at most 26 options, got {len(options)}")
        letters = string.ascii_uppercase[: len(options)]
        lines.append(
            "Options: " + "; ".join(f"{letter}. {text}" for letter, text in zip(letters, options, strict=True))
        )
        answer = facts.get("answer")
        if answer is not None:
            if not isinstance(answer, str) or answer.strip().upper() not in letters:
                raise RowError(BAD_VALUE, f"{label}.answer", f"expected one of {', '.join(letters)}, got {answer!r}")
            letter = answer.strip().upper()
            lines.append(f"The right option is {letter}. {options[letters.index(letter)]}")
    elif facts.get("answer") is not None:
        raise RowError(BAD_VALUE, f"{label}.answer", "an answer needs options")
    return lines


def render_facts(facts: Any, template: str = DEFAULT_FACTS_TEMPLATE) -> str:
    """The facts block: the template with its slot filled by one `  - fact` line per fact."""
    lines = fact_lines(facts)
    block = "\n".join(f"  - {line}" for line in lines) if lines else "  (none)"
    return template.replace(FACTS_SLOT, block)


def reward_messages(
    prompt: list[dict], answer: str, num_images: int, facts: Any = None, template: str | None = None
) -> list[dict]:
    """The conversation the reward model scores: the prompt (with image parts), the answer, then the facts block.

    The facts come after the answer, as in LLaVA-RLHF, so that the last token (where the reward is read) sees both.
    `facts=None` (the plain reward model) leaves the block out.
    """
    from trl.data_utils import prepare_multimodal_messages

    messages = [*prompt, {"role": "assistant", "content": answer}]
    if facts is not None:
        messages.append({"role": "user", "content": render_facts(facts, template or DEFAULT_FACTS_TEMPLATE)})
    # One `{"type": "image"}` part per image before the first user message, TRL's convention
    return prepare_multimodal_messages(messages, images=[None] * num_images) if num_images else messages


def _list(value: Any, label: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RowError(BAD_VALUE, label, f"expected a list, got {type(value).__name__}")
    return value


def _text(value: Any, label: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RowError(BAD_VALUE, label, f"expected a non-empty string, got {value!r}")
    return value.strip()
