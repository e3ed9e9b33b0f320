"""Per-token reference log-probs computed once before training (`precompute_ref_log_probs: true`), for text and images.

TRL caches one summed reference log-prob per answer, which cannot be re-weighted, and refuses image datasets. Dense DPO
caches one value per completion token instead, so `gamma` and `score_average` can change without recomputing, and it
computes them through the same collator as training (image rows included). The forward is TRL's own
`DPOTrainer.compute_ref_log_probs`; the per-token values are read from the fused head as they leave it
(`rlhfv._compat.wrap_fused_head_forward`). Entries live on disk in `rlhfv.ref_cache`, keyed by everything that
changes them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from accelerate.utils import broadcast_object_list, tqdm
from datasets import Dataset, IterableDataset, concatenate_datasets
from torch.utils.data import DataLoader

from . import _compat
from .collators import DENSE_BATCH_KEYS
from .ref_cache import CACHE_FORMAT, REF_COLUMNS, RefLogpsCache, dataset_content_digest


logger = logging.getLogger(__name__)


def cache_key(trainer, dataset: Dataset, name: str) -> dict[str, Any]:
    """Everything the per-token reference log-probs of `dataset` depend on; rank 0's value on every rank."""
    from datasets.fingerprint import Hasher

    processor = trainer.processing_class
    tokenizer = getattr(processor, "tokenizer", processor)
    key = {
        "format": CACHE_FORMAT,
        "split": name,
        # The rows' content, images included (not `_fingerprint`, which misses new pixels under the same file name)
        "data": dataset_content_digest(dataset),
        "reference_model": _compat.reference_model_hash(trainer),
        "max_length": trainer.args.max_length,
        "truncation_mode": trainer.args.truncation_mode,
        "processor": Hasher.hash(processor),
        "chat_template": Hasher.hash(getattr(processor, "chat_template", None) or tokenizer.chat_template),
        "precision": "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "fp32",
    }
    # Hashes can differ by rank (e.g. ZeRO-3 shards): every rank uses rank 0's key, like TRL
    holder = [key]
    broadcast_object_list(holder, from_process=0)
    return holder[0]


def add_reference_token_logps(trainer, dataset: Dataset, name: str, batch_size: int) -> Dataset:
    """`dataset` plus the per-token reference log-prob columns, from the cache when it matches, else computed."""
    if isinstance(dataset, IterableDataset):
        raise ValueError(
            "`precompute_ref_log_probs=True` needs a map-style Dataset (it caches one entry per row), not an "
            "IterableDataset. Use a Dataset or set `precompute_ref_log_probs=False`."
        )
    dataset = dataset.remove_columns([c for c in REF_COLUMNS if c in dataset.column_names])
    cache = RefLogpsCache(trainer.args.ref_cache_dir)
    key = cache_key(trainer, dataset, name)
    table = cache.load(key, len(dataset))
    if table is not None:
        logger.info(f"Reusing per-token reference log-probs of the {name} dataset from {cache.entry_path(key)}")
    else:
        chosen, rejected = compute_reference_token_logps(trainer, dataset, name, batch_size)
        if trainer.accelerator.is_main_process:
            path = cache.save(key, chosen, rejected)
            logger.info(f"Cached per-token reference log-probs of the {name} dataset in {path}")
        trainer.accelerator.wait_for_everyone()
        table = cache.load(key, len(dataset))
    return concatenate_datasets([dataset, table], axis=1)


def compute_reference_token_logps(trainer, dataset: Dataset, name: str, batch_size: int):
    """Per-token reference log-probs of every row (completion positions >= 1, in order), gathered over processes."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        collate_fn=trainer.data_collator,
        num_workers=trainer.args.dataloader_num_workers,
        pin_memory=trainer.args.dataloader_pin_memory,
        shuffle=False,
    )
    loader = trainer.accelerator.prepare(loader)
    # As in TRL: before `train`, DeepSpeed parameters are not placed yet, so run through an inference engine
    if trainer.ref_model is None and trainer.is_deepspeed_enabled:
        from trl.models import prepare_deepspeed

        model = _compat.deepspeed_precompute_engine(
            trainer, lambda: prepare_deepspeed(trainer.model, trainer.accelerator)
        )
    else:
        model = trainer.ref_model or trainer.model
    chosen, rejected = [], []
    for batch in tqdm(
        loader,
        desc=f"Computing per-token reference log-probs for {name} dataset",
        disable=bool(os.environ.get("TQDM_DISABLE", "")),
    ):
        values, lengths = reference_token_logps(trainer, model, batch)
        values = trainer.accelerator.pad_across_processes(values, dim=1)
        chosen_values, rejected_values = values.chunk(2)
        chosen_lengths, rejected_lengths = lengths.chunk(2)
        gathered = trainer.accelerator.gather_for_metrics(
            (chosen_values, chosen_lengths, rejected_values, rejected_lengths)
        )
        for out, (vals, lens) in ((chosen, gathered[:2]), (rejected, gathered[2:])):
            out.extend(v[:n].tolist() for v, n in zip(vals.cpu(), lens.cpu().tolist(), strict=True))
    return chosen, rejected


def reference_token_logps(trainer, model, batch: dict[str, torch.Tensor]):
    """One batch through TRL's `compute_ref_log_probs`: per-token values left-aligned per row, and their counts."""
    inputs = {k: v for k, v in batch.items() if k not in DENSE_BATCH_KEYS}
    with trainer._head_calls.recording() as calls:
        trainer.compute_ref_log_probs(model, inputs)
    if len(calls.calls) != 1:
        raise RuntimeError(
            f"Expected one fused-head forward while computing reference log-probs, saw {len(calls.calls)}: the "
            "model's forward was replaced after the trainer was built. Apply such patches before building it."
        )
    log_probs = calls.calls[0][1]
    shift_mask = batch["completion_mask"][:, 1:].bool()
    log_probs = log_probs[:, -shift_mask.size(1) :].float()
    lengths = shift_mask.sum(dim=1)
    values = torch.zeros(log_probs.size(0), max(int(lengths.max()), 1), device=log_probs.device)
    for r in range(log_probs.size(0)):
        values[r, : lengths[r]] = log_probs[r][shift_mask[r]]
    return values, lengths
