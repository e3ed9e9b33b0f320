"""Dense DPO metrics of one batch, split by changed and unchanged segments (names under `dense/`).

All inputs are aligned to TRL's shifted per-token log-probs (`[2B, L-1]`, rows [chosen..., rejected...]). The
trainer gathers the sums and counts returned here across processes and logs the ratios; see docs/trainer.md for
what each metric means.
"""

from __future__ import annotations

import torch


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
