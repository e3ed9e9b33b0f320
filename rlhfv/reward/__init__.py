"""Fact-RLHF's reward side: a vision-language reward model that reads facts about the image.

- `facts`: the facts block (template with a `{facts}` slot, overridable by file) and the reward-model conversation;
- `model`: `VisionRewardModel`, a VLM with a scalar head (what `trl.RewardTrainer` expects of a reward model);
- `inputs`: conversations + images -> batches; the training collator; `score_answers`;
- `trainer`: `VisionRewardTrainer`, a thin `trl.RewardTrainer` subclass for images and facts;
- `data`: LLaVA-RLHF-style preferences with facts (such data on the synthetic world: experiments/fact_rlhf_data.py);
- `prompts`: prompts with images, facts and answer keys (what `rlhfv rl` and `rlhfv reward-pairs` read);
- `pairs`: reward-ranked pairs (best vs worst of N samples) in the dense preference format;
- `cli` (`rlhfv reward`), `pairs_cli` (`rlhfv reward-pairs`).
"""
