"""Claim -> the yes/no question the labeler answers ("yes" exactly when the claim is true).

The rule-based writer asks the claim itself (`prompts.QUESTION_TEMPLATE`); the LLM writer rephrases it as a natural
question (RLAIF-V's claim -> question model), and the yes/no instruction is appended when the model left it out.
"""

from __future__ import annotations

from rlhfv.feedback.prompts import QUESTION_PROMPT, QUESTION_TEMPLATE, YES_NO_SUFFIX


def rule_question(claim: str, template: str = QUESTION_TEMPLATE) -> str:
    return template.format(claim=claim.strip())


def finish_question(reply: str, claim: str, template: str = QUESTION_TEMPLATE) -> str:
    """The first non-empty line of an LLM reply, ending with the yes/no instruction; the rule-based question when
    the reply is empty (a model that writes nothing must not leave a claim unasked)."""
    line = next((ln.strip() for ln in reply.splitlines() if ln.strip()), "")
    if not line:
        return rule_question(claim, template)
    if "yes or no" not in line.lower():
        line = f"{line} {YES_NO_SUFFIX}"
    return line


class RuleQuestionWriter:
    def __init__(self, template: str = QUESTION_TEMPLATE):
        self.template = template

    def write_many(self, claims: list[str]) -> list[str]:
        return [rule_question(c, self.template) for c in claims]


class LLMQuestionWriter:
    def __init__(self, generator, prompt: str = QUESTION_PROMPT):
        self.generator = generator
        self.prompt = prompt

    def write_many(self, claims: list[str]) -> list[str]:
        replies = self.generator.complete([self.prompt.format(claim=c) for c in claims], desc="questions")
        return [finish_question(r, c) for r, c in zip(replies, claims, strict=True)]
