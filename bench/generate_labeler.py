"""The baseline of the labeling benchmark: a labeler that asks with `generate` and reads the reply's first word.

This is how a labeler is often written when no one-forward scorer is at hand: greedy-decode a short reply to each
yes/no question (`max_new_tokens` tokens, stopping at the end-of-sequence token) and take "yes"/"no" from its first
word; any other reply gives no verdict. rlhfv's `TransformersLabeler` instead reads P(yes) and P(no) of the first
answer token from one forward pass (rlhfv/feedback/labeling.py). Both batch the same way (left-padded prompts
through `rlhfv.generation.inputs.build_inputs`), so the benchmark compares the two ways of asking, not two pipelines.
"""

from __future__ import annotations

import re

from rlhfv.feedback.labeling import Label, LabelRequest


class GenerateLabeler:
    def __init__(self, loaded, batch_size: int = 16, max_new_tokens: int = 8):
        self.loaded, self.batch_size, self.max_new_tokens = loaded, batch_size, max_new_tokens
        self.replies = self.reply_tokens = 0  # how long the replies were (a model that stops early costs less)

    def label_many(self, requests: list[LabelRequest], progress: bool = False) -> list[Label]:
        from rlhfv.generation.generate import GenerationOptions, decode, generate_batch

        options = GenerationOptions(max_new_tokens=self.max_new_tokens, do_sample=False)
        labels = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            rows = [{"question": r.question, "_where": r.question, "_image_path": r.image_path} for r in batch]
            for (answer,) in generate_batch(self.loaded, rows, options):
                self.replies += 1
                self.reply_tokens += len(answer)
                labels.append(verdict_of(decode(self.loaded, answer)))
        return labels


def verdict_of(reply: str) -> Label:
    """True for a reply starting with "yes", False for "no", no verdict otherwise."""
    first = re.match(r"\W*(\w+)", reply)
    word = first.group(1).lower() if first else ""
    if word in ("yes", "no"):
        return Label(None, None, word == "yes")
    return Label(None, None, None, "reply_not_yes_no", reply[:40])
