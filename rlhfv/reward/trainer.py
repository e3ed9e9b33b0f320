"""`VisionRewardTrainer`: `trl.RewardTrainer` for vision-language reward models with facts in the prompt.

TRL's `RewardTrainer` tokenizes text pairs up front (`chosen_ids` / `rejected_ids`) and loads models with
`AutoModelForSequenceClassification`, which has no image-text-to-text classes. This subclass keeps everything else
(loss, margin, `center_rewards_coefficient`, metrics, PEFT, saving) and changes only what images need:
- rows stay raw until the collator (`RewardPreferenceCollator`), which renders prompt + answer + facts with the chat
  template and runs the processor on texts and images together;
- the model is a `VisionRewardModel` (a VLM with a scalar head), built by the caller;
- the processor (not just its tokenizer) is saved with the model.
"""

from __future__ import annotations

from trl import RewardTrainer

from rlhfv._compat import set_signature_columns_if_unset
from rlhfv.reward.facts import load_template
from rlhfv.reward.inputs import RewardPreferenceCollator


REQUIRED_COLUMNS = ("prompt", "chosen", "rejected")


class VisionRewardTrainer(RewardTrainer):
    _tag_names = ["trl", "reward-trainer", "rlhfv", "fact-rlhf"]

    def __init__(self, model, args, train_dataset, processor, eval_dataset=None, data_collator=None, **kwargs):
        self.processor = processor
        self.facts_template = load_template(args.facts_template)
        use_facts = args.facts != "none"
        if data_collator is None:
            data_collator = RewardPreferenceCollator(processor, self.facts_template, use_facts, args.max_length)
        tokenizer = getattr(processor, "tokenizer", processor)
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            **kwargs,
        )

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        # No up-front tokenization: images and facts are rendered per batch by the collator
        missing = [column for column in REQUIRED_COLUMNS if column not in dataset.column_names]
        if missing:
            raise ValueError(f"the {dataset_name} dataset lacks the columns {missing}")
        if args.facts != "none" and "facts" not in dataset.column_names:
            raise ValueError(
                f"the {dataset_name} dataset has no `facts` column; set `facts: none` for the plain model"
            )
        return dataset

    def _set_signature_columns_if_needed(self):
        set_signature_columns_if_unset(self, [*REQUIRED_COLUMNS, "images", "facts", "margin"])

    def _save(self, output_dir: str | None = None, state_dict=None):
        super()._save(output_dir, state_dict)
        # The image processor and chat template go with the weights, so the folder scores on its own
        self.processor.save_pretrained(output_dir or self.args.output_dir)
