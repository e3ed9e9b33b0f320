"""Dense DPO metrics of one batch, split by changed and unchanged segments (names under `dense/`).

All inputs are aligned to TRL's shifted per-token log-probs (`[2B, L-1]`, rows [chosen..., rejected...]). The
trainer gathers the sums and counts returned here across processes and logs the ratios; see docs/trainer.md for
what each metric means.
"""

from __future__ import annotations

import logging

import torch


logger = logging.getLogger(__name__)


SEGMENTS = ("changed", "unchanged")


def dense_batch_stats(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    scale: torch.Tensor,
    changed_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    changed_before_truncation: torch.Tensor,
    beta: float,
) -> dict[str, torch.Tensor]:
    """Per-pair reward parts and per-row token sums/counts for each segment, plus pair counts.

    The reward parts decompose TRL's reward: `rewards/chosen` = `changed` part + `unchanged` part, each being
    beta * sum over the segment's tokens of scale_t * (log pi - log ref).
    """
    policy_logps, ref_logps, scale = policy_logps.float(), ref_logps.float(), scale.float()
    completion = completion_mask.bool()
    changed = changed_mask.bool() & completion
    masks = {"changed": changed, "unchanged": completion & ~changed}
    weighted_ratio = beta * (policy_logps - ref_logps) * scale
    stats: dict[str, torch.Tensor] = {}
    for segment, mask in masks.items():
        stats[f"{segment}/reward"] = (weighted_ratio * mask).sum(dim=1)  # [2B]
        stats[f"{segment}/logp_sum"] = (policy_logps * mask).sum(dim=1)  # [2B]
        stats[f"{segment}/tokens"] = mask.sum(dim=1).float()  # [2B]
    stats["completion/tokens"] = completion.sum(dim=1).float()
    before_chosen, before_rejected = changed_before_truncation.float().chunk(2)
    after_chosen, after_rejected = masks["changed"].sum(dim=1).float().chunk(2)
    had_changes = (before_chosen + before_rejected) > 0
    kept_changes = (after_chosen + after_rejected) > 0
    stats["pairs_without_changes"] = (~had_changes).sum().float()
    stats["pairs_changes_truncated"] = (had_changes & ~kept_changes).sum().float()
    return stats


def log_dense_metrics(trainer, mode, policy_logps, ref_logps, scale, changed_mask, completion_mask, changed_before):
    """Gather the batch's dense statistics over processes and append the `dense/*` metrics to TRL's metric store.

    Two syncs per step: one for all token sums and counts, one for the per-pair reward parts. Warns once per trainer
    about pairs that train as plain DPO (no changed token, or every changed token cut by `max_length`).
    """
    completion_mask = completion_mask[:, 1:]
    if changed_before is None:
        changed_before = changed_mask.sum(dim=1)
    stats = dense_batch_stats(
        policy_logps, ref_logps, scale, changed_mask[:, 1:], completion_mask, changed_before, trainer.beta
    )
    # One gather for all token sums and counts, one for the per-pair reward parts: a single sync per step
    sums = {
        "pairs_without_changes": stats["pairs_without_changes"],
        "pairs_changes_truncated": stats["pairs_changes_truncated"],
    }
    for key in (
        "changed/tokens",
        "unchanged/tokens",
        "completion/tokens",
        "changed/logp_sum",
        "unchanged/logp_sum",
    ):
        for side, value in zip(("chosen", "rejected"), stats[key].chunk(2), strict=True):
            sums[f"{key}/{side}"] = value.sum()
    gathered = trainer.accelerator.gather(torch.stack(list(sums.values())).unsqueeze(0)).sum(dim=0).tolist()
    sums = dict(zip(sums, gathered, strict=True))
    # Per-pair reward parts, columns (changed, unchanged) x (chosen, rejected); means and margins in one sync
    pair_rewards = torch.stack([part for segment in SEGMENTS for part in stats[f"{segment}/reward"].chunk(2)], dim=1)
    pair_rewards = trainer.accelerator.gather(pair_rewards)
    reward_means = torch.cat([pair_rewards.mean(dim=0), (pair_rewards[:, 0::2] - pair_rewards[:, 1::2]).mean(dim=0)])
    reward_means = dict(
        zip(
            [f"{segment}_{side}" for segment in SEGMENTS for side in ("chosen", "rejected")]
            + [f"{segment}_margin" for segment in SEGMENTS],
            reward_means.tolist(),
            strict=True,
        )
    )

    from rlhfv._compat import trainer_metrics

    metrics = trainer_metrics(trainer, mode)
    completion = sums["completion/tokens/chosen"] + sums["completion/tokens/rejected"]
    if completion > 0:
        changed = sums["changed/tokens/chosen"] + sums["changed/tokens/rejected"]
        metrics["dense/changed_share"].append(changed / completion)
    for side in ("chosen", "rejected"):
        if sums[f"completion/tokens/{side}"] > 0:
            share = sums[f"changed/tokens/{side}"] / sums[f"completion/tokens/{side}"]
            metrics[f"dense/changed_share_{side}"].append(share)
    for segment in SEGMENTS:
        for part in ("chosen", "rejected", "margin"):
            metrics[f"dense/rewards/{segment}_{part}"].append(reward_means[f"{segment}_{part}"])
        means = {}
        for side in ("chosen", "rejected"):
            if sums[f"{segment}/tokens/{side}"] > 0:
                means[side] = sums[f"{segment}/logp_sum/{side}"] / sums[f"{segment}/tokens/{side}"]
                metrics[f"dense/logps/{segment}_{side}"].append(means[side])
        if len(means) == 2:
            metrics[f"dense/logps/{segment}_margin"].append(means["chosen"] - means["rejected"])
    without, truncated = sums["pairs_without_changes"], sums["pairs_changes_truncated"]
    metrics["dense/pairs_without_changes"].append(without)
    metrics["dense/pairs_changes_truncated"].append(truncated)
    if without and "without" not in trainer._dense_warned:
        trainer._dense_warned.add("without")
        logger.warning(
            f"{int(without)} pair(s) in a batch have no changed token: they train as plain DPO. Counted in "
            "dense/pairs_without_changes (this warning is shown once)."
        )
    if truncated and "truncated" not in trainer._dense_warned:
        trainer._dense_warned.add("truncated")
        logger.warning(
            f"max_length={trainer.args.max_length} cut every changed token of {int(truncated)} pair(s) in a batch: "
            "they train as plain DPO on what is left. Raise max_length to keep the corrections; counted in "
            "dense/pairs_changes_truncated (this warning is shown once)."
        )
