"""TRL's preference collators, extended to say which completion tokens are changed.

Both collators return TRL's batch unchanged plus, shaped like `completion_mask` (rows [chosen..., rejected...]):

- `changed_mask` (long): 1 on completion tokens of changed segments, 0 elsewhere;
- `changed_before_truncation` (long, one per row): changed tokens the row had before `max_length` cut it;
- `ref_token_logps` (float, only when the rows carry cached reference log-probs): at each completion position p >= 1,
  the reference log-prob of token p.

The flags are placed on the positions where `completion_mask == 1`, never by counting prompt tokens: TRL's vision
collator left-pads prompts, then flushes rows left and truncates them, so positions differ from row to row.
The trainer pops these keys before the model sees the batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any

import torch

from ._compat import DataCollatorForPreference, DataCollatorForVisionPreference
from .changed_tokens import (
    answer_content,
    check_spans,
    completion_changed_flags,
    rlhfv_token_diff,
    row_label,
    spans_of,
)


logger = logging.getLogger(__name__)

DENSE_BATCH_KEYS = ("changed_mask", "changed_before_truncation", "ref_token_logps")
SIDES = ("chosen", "rejected")


def scatter_ref_logps(examples: list[dict[str, Any]], completion_mask: torch.Tensor) -> torch.Tensor | None:
    """Place cached per-token reference log-probs on the completion positions p >= 1 of each row.

    The cache holds one value per completion token that has a log-prob (position >= 1) of the truncated row, in
    order. A count that differs from the batch's means the cache was made for other data: refuse it.
    """
    if "ref_chosen_token_logps" not in examples[0]:
        return None
    out = torch.zeros(completion_mask.shape, dtype=torch.float32)
    batch_size = len(examples)
    for r in range(2 * batch_size):
        example, side = examples[r % batch_size], SIDES[r // batch_size]
        values = example[f"ref_{side}_token_logps"]
        positions = completion_mask[r].nonzero().squeeze(1)
        positions = positions[positions >= 1]
        if values is None or len(values) != len(positions):
            raise ValueError(
                f"{row_label(example)}: the cached reference log-probs of {side} hold "
                f"{None if values is None else len(values)} tokens but the batch has {len(positions)} completion "
                "tokens. The reference cache is stale (other data, tokenizer, max_length or truncation): delete it "
                "or point `ref_cache_dir` elsewhere."
            )
        out[r, positions] = torch.tensor(values, dtype=torch.float32)
    return out


def token_diff_mask(batch: dict[str, torch.Tensor], batch_size: int) -> torch.Tensor:
    """RLHF-V's changed-token mask from the collated rows (whole sequences as the model sees them)."""
    changed = torch.zeros_like(batch["completion_mask"])
    for i in range(batch_size):
        chosen_pos = batch["attention_mask"][i].nonzero().squeeze(1)
        rejected_pos = batch["attention_mask"][batch_size + i].nonzero().squeeze(1)
        rejected_changed, chosen_changed = rlhfv_token_diff(
            batch["input_ids"][batch_size + i, rejected_pos].tolist(), batch["input_ids"][i, chosen_pos].tolist()
        )
        changed[i, chosen_pos[chosen_changed]] = 1
        changed[batch_size + i, rejected_pos[rejected_changed]] = 1
    # Only completion tokens carry weights; the prompts are identical, so this drops nothing in practice
    return changed * batch["completion_mask"]


@dataclass
class DenseDataCollatorForPreference(DataCollatorForPreference):
    """TRL's text preference collator plus `changed_mask` (see the module docstring).

    With `segment_source="spans"`, examples carry `chosen_changed`/`rejected_changed` (one flag per token of
    `chosen_ids`/`rejected_ids`, added by `DenseDPOTrainer._prepare_dataset`); they are truncated exactly like TRL
    truncates the token ids.
    """

    segment_source: str = "spans"

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        output = super().torch_call(examples)
        batch_size = len(examples)
        if self.segment_source == "rlhfv_token_diff":
            output["changed_mask"] = token_diff_mask(output, batch_size)
            output["changed_before_truncation"] = output["changed_mask"].sum(dim=1)
        else:
            for side in SIDES:
                for example in examples:
                    row_flags = example.get(f"{side}_changed")
                    if row_flags is None or len(row_flags) != len(example[f"{side}_ids"]):
                        raise ValueError(
                            f"{row_label(example)}: `{side}_changed` is missing or does not match `{side}_ids`. "
                            "Rows must be prepared by DenseDPOTrainer (segment_source='spans')."
                        )
            changed_before = torch.tensor([sum(e[f"{side}_changed"]) for side in SIDES for e in examples])
            output["changed_mask"] = self._cut_and_pad_like_ids(examples)
            output["changed_before_truncation"] = changed_before
        ref = scatter_ref_logps(examples, output["completion_mask"])
        if ref is not None:
            output["ref_token_logps"] = ref
        return output

    def _cut_and_pad_like_ids(self, examples: list[dict[str, Any]]) -> torch.Tensor:
        """The changed flags cut and padded by TRL's own collator: collated as the token ids would be (prompt
        positions 0, padding 0), so they follow TRL's truncation (`max_length`, `truncation_mode`) and padding."""
        shadow = [
            {"prompt_ids": [0] * len(e["prompt_ids"]), **{f"{side}_ids": list(e[f"{side}_changed"]) for side in SIDES}}
            for e in examples
        ]
        pad_token_id, self.pad_token_id = self.pad_token_id, 0
        try:
            return DataCollatorForPreference.torch_call(self, shadow)["input_ids"].long()
        finally:
            self.pad_token_id = pad_token_id


@dataclass
class DenseDataCollatorForVisionPreference(DataCollatorForVisionPreference):
    """TRL's vision preference collator plus `changed_mask` (see the module docstring).

    The changed flags of each answer are computed here, per batch, from the dataset's character spans: the
    completion is rendered and tokenized exactly as TRL does, and the resulting ids are checked against the batch.
    TRL's truncation is applied after the flags are placed, so the flags are cut with the tokens, and a `max_length`
    that would cut image tokens fails here with the fix, before the model raises a less helpful error.
    """

    segment_source: str = "spans"

    def _image_token_id(self) -> int | None:
        token_id = getattr(self.processor, "image_token_id", None)
        if token_id is None and getattr(self.processor, "image_token", None) is not None:
            token_id = self.processor.tokenizer.convert_tokens_to_ids(self.processor.image_token)
        return token_id

    def _completion_flags(self, example: dict[str, Any]) -> dict[str, tuple[list[int], list[int]]]:
        from trl.data_utils import apply_chat_template, prepare_multimodal_messages

        where = row_label(example)
        images = example["images"] if "images" in example else ([example["image"]] if "image" in example else [])
        prepared = {
            "prompt": prepare_multimodal_messages(example["prompt"], images=images),
            **{side: prepare_multimodal_messages(example[side]) for side in SIDES},
        }
        if example.get("chat_template_kwargs"):
            prepared["chat_template_kwargs"] = example["chat_template_kwargs"]
        rendered = apply_chat_template(prepared, self.processor)
        flags = {}
        for side in SIDES:
            content = answer_content(example[side], where, side)
            spans = check_spans(spans_of(example, side, where), len(content), where, f"{side}_spans")

            def render(text, side=side):
                answer = prepare_multimodal_messages([{**example[side][0], "content": text}])
                return apply_chat_template({**prepared, side: answer}, self.processor)[side]

            flags[side] = completion_changed_flags(rendered[side], render, content, spans, self.processor, where, side)
        return flags

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch_size = len(examples)
        # Before TRL's collator, which rewrites the examples' messages in place
        flags = [self._completion_flags(example) for example in examples] if self.segment_source == "spans" else None
        labels = [row_label(example) for example in examples]
        # Collate untruncated, place the flags, then truncate everything the way TRL does
        max_length, self.max_length = self.max_length, None
        try:
            output = super().torch_call(examples)
        finally:
            self.max_length = max_length
        completion_mask = output["completion_mask"]
        changed = torch.zeros_like(completion_mask)
        if flags is not None:
            for r in range(2 * batch_size):
                side = SIDES[r // batch_size]
                ids, row_flags = flags[r % batch_size][side]
                positions = completion_mask[r].nonzero().squeeze(1)
                if output["input_ids"][r, positions].tolist() != ids:
                    raise ValueError(
                        f"{labels[r % batch_size]}: the {side} completion tokenized with offsets differs from the "
                        "collated tokens, so spans cannot be aligned. Use segment_source='rlhfv_token_diff'."
                    )
                changed[r, positions] = torch.tensor(row_flags, dtype=changed.dtype)
        changed_before = changed.sum(dim=1)

        if max_length is not None and output["input_ids"].shape[1] > max_length:
            image_token_id = self._image_token_id()
            if image_token_id is not None:
                image_tokens = (output["input_ids"] == image_token_id).sum(dim=1)
                kept = (output["input_ids"][:, :max_length] == image_token_id).sum(dim=1)
                cut = (kept != image_tokens).nonzero().squeeze(1).tolist()
                if cut:
                    r = cut[0]
                    raise ValueError(
                        f"{labels[r % batch_size]}: max_length={max_length} cuts image tokens ({int(kept[r])} of "
                        f"{int(image_tokens[r])} kept; the prompt alone is "
                        f"{int((output['attention_mask'][r] - completion_mask[r]).sum())} tokens). The model would "
                        "fail with 'Image features and image tokens do not match'. Increase max_length (or set it "
                        "to None), or use smaller images."
                    )
            # TRL's own cut (keep_start) of every per-token tensor of the batch, whatever keys the processor adds
            width = output["input_ids"].shape[1]
            for key, value in output.items():
                if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == (2 * batch_size, width):
                    output[key] = value[:, :max_length]
            changed = changed[:, :max_length]

        _refuse_pairs_identical_after_truncation(output, batch_size, labels, max_length)
        if self.segment_source == "rlhfv_token_diff":
            changed = token_diff_mask(output, batch_size)
            changed_before = changed.sum(dim=1)
        output["changed_mask"] = changed
        output["changed_before_truncation"] = changed_before
        ref = scatter_ref_logps(examples, output["completion_mask"])
        if ref is not None:
            output["ref_token_logps"] = ref
        return output


def _refuse_pairs_identical_after_truncation(output, batch_size: int, labels: list[str], max_length) -> None:
    """A pair whose two rows `max_length` cut to the same tokens carries no preference: refuse it by name.

    Text rows are checked (and dropped) when the dataset is prepared; image rows are tokenized here, batch by batch.
    """
    if max_length is None:
        return
    for i in range(batch_size):
        chosen = output["input_ids"][i][output["attention_mask"][i].bool()]
        rejected = output["input_ids"][batch_size + i][output["attention_mask"][batch_size + i].bool()]
        if torch.equal(chosen, rejected):
            raise ValueError(
                f"{labels[i]}: max_length={max_length} cuts the chosen and rejected answers to the same tokens, so "
                "the pair carries no preference (loss ln 2, zero gradient). Raise max_length (or set it to None), "
                "or leave the row out of the data."
            )


def promote_collator(collator, segment_source: str):
    """The dense version of TRL's default collators, with every setting of the given one; dense ones pass through."""
    if isinstance(collator, (DenseDataCollatorForPreference, DenseDataCollatorForVisionPreference)):
        collator.segment_source = segment_source
        return collator
    dense_of = {
        DataCollatorForPreference: DenseDataCollatorForPreference,
        DataCollatorForVisionPreference: DenseDataCollatorForVisionPreference,
    }
    if type(collator) in dense_of:
        settings = {item.name: getattr(collator, item.name) for item in fields(collator) if item.init}
        return dense_of[type(collator)](**settings, segment_source=segment_source)
    raise TypeError(
        f"DenseDPOTrainer needs a collator that marks changed tokens; got {type(collator).__name__}. Leave "
        "`data_collator=None`, or pass rlhfv.collators.DenseDataCollatorForPreference / "
        "DenseDataCollatorForVisionPreference (or a subclass)."
    )
