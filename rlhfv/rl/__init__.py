"""Fact-RLHF's RL side on TRL's `RLOOTrainer` (its prompts are read by `rlhfv.reward.prompts`).

- `symbolic`: LLaVA-RLHF's symbolic rewards as TRL reward functions (multiple-choice bonus, yes/no rule, length term,
  no-stop-token penalty);
- `reward_model`: the vision reward model (with facts) as a TRL reward function;
- `config`: `FactRLOOConfig`; `cli`: `rlhfv rl`.
"""
