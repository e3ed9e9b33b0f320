"""The prompts of the LLM options (claim splitting, question writing), each overridable by a file.

A prompt is a `str.format` template: the claim prompt receives `{question}` and `{answer}`, the question prompt
`{claim}`. A prompt file replaces the default whole; its placeholders are checked when it is loaded.
"""

from __future__ import annotations

from pathlib import Path

from data_tools.errors import CommandError


CLAIMS_PROMPT = """You split an answer about an image into atomic claims.
An atomic claim states one checkable fact about the image: one object, one attribute, one count, one relation.
Copy the words of the answer where you can; do not add facts, do not judge them, skip opinions and filler.
Write one claim per line, nothing else.

Question: {question}
Answer: {answer}
Claims:"""

QUESTION_PROMPT = """Turn the claim into a question about the image that is answered "yes" exactly when the claim is
true. Keep every detail of the claim. Write only the question.

Claim: {claim}
Question:"""

# The labeler's question when no LLM writes it: the claim itself, asked as a yes/no question.
QUESTION_TEMPLATE = 'Is the following statement about the image true? "{claim}" Please answer yes or no.'
YES_NO_SUFFIX = "Please answer yes or no."


def load_prompt(path: str | Path | None, default: str, placeholders: tuple[str, ...]) -> str:
    """`default`, or the text of `path`, which must use every placeholder in `placeholders` (and no others)."""
    if path is None:
        return default
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CommandError(f"{path}: cannot read the prompt file ({error.strerror})") from None
    for name in placeholders:
        if "{" + name + "}" not in text:
            raise CommandError(f"{path}: the prompt must contain the placeholder {{{name}}}")
    try:
        text.format(**{name: "" for name in placeholders})
    except (KeyError, IndexError, ValueError) as error:
        raise CommandError(
            f"{path}: the prompt has a placeholder other than {', '.join('{' + p + '}' for p in placeholders)} "
            f"({error!r}); write literal braces as {{{{ and }}}}"
        ) from None
    return text
