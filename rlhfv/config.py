"""`DenseDPOConfig`: TRL's `DPOConfig` plus the few knobs of Dense DPO (RLHF-V).

Every TRL field keeps its meaning. The dense score of an answer y is

    score(y) = sum_t w_t * log p(y_t) / N      (N = sum_t w_t when `score_average`, else N = 1)

with w_t = `gamma` on tokens of changed segments, 1 on the other completion tokens, 0 elsewhere; the same score is
used for the policy and the reference, and TRL's losses consume it in place of the plain log-probability sum.
See docs/trainer.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trl import DPOConfig


SEGMENT_SOURCES = ("spans", "rlhfv_token_diff")

# TRL loss types that read only the sequence scores (or their log-ratios), so dense scores slot in unchanged
SUPPORTED_LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "ipo",
)

# Why each refused option does not fit dense scores, and what to use instead
REFUSED_LOSS_TYPES = {
    "sft": (
        "TRL's 'sft' term averages the per-token log-probs over tokens, which under Dense DPO are already weighted "
        "and divided by N, so it would be neither TRL's SFT loss nor RLHF-V's. Set `sft_weight` instead (RLHF-V's "
        "SFT term on the chosen answer's dense score)."
    ),
    "sigmoid_norm": (
        "'sigmoid_norm' divides the scores by the raw completion length, which would normalise the dense scores a "
        "second time. Use loss_type='sigmoid' with score_average=True: that is the length-normalised sigmoid loss "
        "with the gamma-weighted N of the paper."
    ),
}


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_dense_args(args) -> None:
    """Fail loudly on settings that Dense DPO cannot honour. Runs in `__post_init__` and again in the trainer."""
    if not _finite_number(args.gamma) or not args.gamma > 0:
        raise ValueError(
            f"`gamma` must be a finite number > 0 (the weight of changed tokens; 5.0 in the paper, 1.0 = plain DPO), "
            f"got {args.gamma!r}."
        )
    if not _finite_number(args.beta) or not args.beta > 0:
        # beta < 0 flips the preference: the model is trained towards the rejected (hallucinated) answers while
        # rewards/accuracies still rises; beta = 0 removes the signal
        raise ValueError(
            f"`beta` must be a finite number > 0 (the strength of the preference; 0.1-0.5 is usual), got {args.beta!r}. "
            "A negative beta would train towards the rejected answers."
        )
    if args.segment_source not in SEGMENT_SOURCES:
        raise ValueError(f"`segment_source` must be one of {list(SEGMENT_SOURCES)}, got {args.segment_source!r}.")
    if not _finite_number(args.sft_weight) or args.sft_weight < 0:
        raise ValueError(
            f"`sft_weight` must be >= 0 (it adds -sft_weight * mean chosen dense score to the loss), "
            f"got {args.sft_weight!r}."
        )
    loss_types = [args.loss_type] if isinstance(args.loss_type, str) else list(args.loss_type)
    for loss_type in loss_types:
        if loss_type in REFUSED_LOSS_TYPES:
            raise ValueError(f"loss_type={loss_type!r} is not supported by Dense DPO: {REFUSED_LOSS_TYPES[loss_type]}")
        if loss_type == "ipo" and args.score_average:
            raise ValueError(
                "loss_type='ipo' divides the scores by the raw completion length, which would normalise the dense "
                "scores a second time when score_average=True. Set score_average=False (IPO then divides the "
                "gamma-weighted sum by the completion length itself) or use loss_type='sigmoid'."
            )
        if loss_type not in SUPPORTED_LOSS_TYPES:
            raise ValueError(
                f"loss_type={loss_type!r} is not supported by Dense DPO. Supported: {list(SUPPORTED_LOSS_TYPES)}."
            )
    if args.ld_alpha is not None:
        raise ValueError(
            "`ld_alpha` (LD-DPO) re-weights the tail of the longer completion by position, which conflicts with the "
            "segment weights of Dense DPO. Leave `ld_alpha=None`; use `gamma` to weight the changed segments."
        )
    if args.use_weighting:
        raise ValueError(
            "`use_weighting=True` (WPO) weights each pair by the raw per-token log-probs, which under Dense DPO are "
            "scaled by the segment weights, so the WPO weights would be wrong. Set use_weighting=False."
        )


@dataclass
class DenseDPOConfig(DPOConfig):
    r"""
    Configuration for [`rlhfv.DenseDPOTrainer`]: every field of [`trl.DPOConfig`] plus the Dense DPO fields below.

    Parameters:
        gamma (`float`, *optional*, defaults to `5.0`):
            Weight of the tokens of changed segments in the sequence score; other completion tokens weigh 1.
            `gamma=1.0` with `score_average=False` is plain DPO.
        score_average (`bool`, *optional*, defaults to `True`):
            Divide the weighted log-prob sum by N = |unchanged| + gamma * |changed| (the paper). `False` keeps the
            plain weighted sum (the public code's later runs).
        segment_source (`str`, *optional*, defaults to `"spans"`):
            Where changed tokens come from: `"spans"` reads the dataset's `chosen_spans`/`rejected_spans` character
            spans; `"rlhfv_token_diff"` runs RLHF-V's token-id diff of the whole chosen and rejected sequences, for
            parity with published runs.
        sft_weight (`float`, *optional*, defaults to `0.0`):
            RLHF-V's SFT term: `loss = dpo_loss - sft_weight * mean(chosen dense score of the policy)`.
        ref_cache_dir (`str` or `None`, *optional*, defaults to `None`):
            Folder for the per-token reference log-probs computed when `precompute_ref_log_probs=True`. `None` uses
            `rlhfv_ref_logps` in the Hugging Face datasets cache, shared by runs so that a changed `gamma` or
            `score_average` reuses them.
        tiled_cpu_head (`bool`, *optional*, defaults to `True`):
            On devices without Triton (CPU), score log-probs with rlhfv's tiled LM head: only the completion tokens,
            in cache-sized tiles, same values as TRL's head (docs/benchmarks.md has the speed). No effect on
            CUDA/XPU, where TRL's Triton head runs.
        model_card_license (`str`, *optional*, defaults to `"other"`):
            License id in the model card's front matter; set it to the base model's license.
    """

    gamma: float = field(
        default=5.0,
        metadata={
            "help": "Weight of the tokens of changed segments (5.0 in the RLHF-V paper); other completion tokens "
            "weigh 1. gamma=1 with score_average=False is plain DPO."
        },
    )
    score_average: bool = field(
        default=True,
        metadata={
            "help": "Divide the weighted log-prob sum by N = |unchanged| + gamma*|changed| as in the paper. False "
            "keeps the plain weighted sum, as in the public code's later runs."
        },
    )
    segment_source: str = field(
        default="spans",
        metadata={
            "help": "Where changed tokens come from: 'spans' (the dataset's chosen_spans/rejected_spans) or "
            "'rlhfv_token_diff' (RLHF-V's token-id diff of the whole sequences, for parity with published runs).",
            "choices": list(SEGMENT_SOURCES),
        },
    )
    sft_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of RLHF-V's SFT term: loss = dpo - sft_weight * mean over the batch of the policy's "
            "chosen dense score. 0 disables it."
        },
    )
    ref_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder where per-token reference log-probs are cached when precompute_ref_log_probs=True. "
            "Default: 'rlhfv_ref_logps' in the Hugging Face datasets cache (shared by runs, keyed by reference "
            "model, data, max_length, truncation and processor)."
        },
    )

    tiled_cpu_head: bool = field(
        default=True,
        metadata={
            "help": "On devices without Triton (CPU), compute log-probs with rlhfv's tiled LM head (completion tokens "
            "only, cache-sized tiles; same values as TRL's head, faster on CPU). No effect on CUDA/XPU."
        },
    )

    model_card_license: str = field(
        default="other",
        metadata={
            "help": "License id written to the model card's front matter (a Hub license id such as apache-2.0, "
            "llama2, mit). Set it to the base model's license; 'other' says it is not stated."
        },
    )

    def __post_init__(self):
        from data_tools.settings import check_training_ranges

        check_training_ranges(self)
        super().__post_init__()
        validate_dense_args(self)
