"""Configuration of `rlhfv rl`: `FactRLOOConfig` (a `trl.RLOOConfig`) and the data arguments."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import RLOOConfig, ScriptArguments

from data_tools.settings import check_range, check_training_ranges


@dataclass
class FactRLOOConfig(RLOOConfig):
    """`trl.RLOOConfig` plus the Fact-RLHF rewards. Defaults follow LLaVA-RLHF (rlhfv/rl/symbolic.py).

    The total reward of a completion is the reward model's score plus the symbolic terms that apply to it; TRL's RLOO
    subtracts `beta` x the sequence's KL to the reference (the SFT model), as LLaVA-RLHF's PPO does.
    """

    reward_model_path: str | None = field(
        default=None,
        metadata={
            "help": "Folder of a reward model trained by `rlhfv reward`; it reads facts when it was trained with them "
            "(its fact_rlhf_reward.json says). None: symbolic rewards only."
        },
    )
    reward_model_batch_size: int = field(
        default=8, metadata={"help": "Completions scored per forward pass of the reward model."}
    )
    multiple_choice_bonus: float = field(
        default=2.0,
        metadata={"help": "Reward for a multiple-choice answer that picks the right option (rows with `mc_answer`)."},
    )
    yes_no_reward: float = field(
        default=0.5,
        metadata={
            "help": "For yes/no questions whose truth is no (`yes_no_truth: no`): +this for 'No', -this for 'Yes', "
            "times `yes_no_scale`."
        },
    )
    yes_no_scale: float = field(
        default=2.0,
        metadata={"help": "Scale of the yes/no rule (LLaVA-RLHF scales it by its correct-answer bonus, 2)."},
    )
    length_penalty: float = field(
        default=-10.0,
        metadata={"help": "Length term: this x completion tokens / max_completion_length (negative: a penalty)."},
    )
    no_stop_token_penalty: float = field(
        default=-8.0, metadata={"help": "Reward added to a completion cut off without a stop token."}
    )
    beta: float = field(
        default=0.1,
        metadata={"help": "KL coefficient to the reference (SFT) model, in the reward, as in LLaVA-RLHF (0.1)."},
    )
    remove_unused_columns: bool | None = field(
        default=False,
        metadata={"help": "Keep every dataset column: the reward functions read facts, answers and truths from them."},
    )

    def __post_init__(self):
        self.check_ranges()
        if self.remove_unused_columns:
            raise ValueError(
                "`remove_unused_columns: true` would drop the `facts`, `mc_answer` and `yes_no_truth` columns the "
                "rewards read; leave it false"
            )
        super().__post_init__()

    def check_ranges(self) -> None:
        """The rewards' and the sampling's numbers in range at start (a zero length used to fail inside the
        trainer with a traceback)."""
        check_training_ranges(self)
        check_range("reward_model_batch_size", self.reward_model_batch_size, minimum=1)
        for name in (
            "multiple_choice_bonus",
            "yes_no_reward",
            "yes_no_scale",
            "length_penalty",
            "no_stop_token_penalty",
        ):
            check_range(name, getattr(self, name))  # any sign, but a number
        check_range("beta", self.beta, minimum=0)
        check_range("max_completion_length", self.max_completion_length, minimum=1, optional=True)
        # RLOO's baseline is the mean reward of the prompt's other samples: it needs two
        check_range("num_generations", self.num_generations, minimum=2, optional=True)
        check_range("temperature", self.temperature, above=0)
        check_range("top_p", self.top_p, above=0, maximum=1)
        check_range("top_k", self.top_k, minimum=0, optional=True)
        check_range("min_p", self.min_p, minimum=0, maximum=1, optional=True)
        check_range("repetition_penalty", self.repetition_penalty, above=0)
        check_range("num_iterations", self.num_iterations, minimum=1)
        check_range("epsilon", self.epsilon, minimum=0)


@dataclass
class RLScriptArguments(ScriptArguments):
    """Data of `rlhfv rl`: `dataset_name` is a JSONL file of prompts {id, image or images, question or prompt,
    facts, yes_no_truth, mc_answer, ...} (as written by `python -m experiments.fact_rlhf_data`)."""

    image_root: str | None = field(
        default=None,
        metadata={"help": "Folder against which relative image paths are resolved. Default: the data file's folder."},
    )
