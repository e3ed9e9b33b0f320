"""Generation: answers of a model for prompt rows (greedy or sampled, batched, resumable), best-of-N by the implicit
reward, and the model inputs every sampler shares. Used by `rlhfv eval` and `rlhfv feedback`.

- `inputs`: the user turn, the chat-template prompt and a tokenised batch of rows;
- `generate`: loading a model, generating answers for a prompt file, resuming;
- `best_of_n`: RLAIF-V's self-feedback ranking of sampled answers.
"""
