"""Every place where rlhfv depends on behaviour of TRL, transformers, PEFT, accelerate, torch, Liger or datasets that
is not public API: no other module of rlhfv or data_tools uses a private name of those libraries or imports from
`trl.trainer.*` (the trainers' overrides of private methods excepted, listed in TRAINER_OVERRIDES).

Each entry says the version it was written for, why it exists, and when it can go. `tests/test_trl_contract.py` pins
the behaviour each one relies on, so an upgrade fails there with a message naming what changed, not deep in training,
and scans the source for private names used elsewhere or missing from LIBRARY_PRIVATE_NAMES.
Written for: trl 1.16, transformers 5.23, peft 0.21, torch 2.13, liger-kernel 0.8.5 (setup.cfg pins the minors).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
from collections.abc import Callable

import torch


logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------------
# 1. Per-token weights on TRL's fused LM head.
#    Why: trl.DPOTrainer has no per-token weight hook; it sums `model(..., fused_lm_head=True).log_probs` per row.
#    How: the trainer puts the batch's token scales under `DENSE_SCALE_KEY`; TRL passes every batch key except
#    `completion_mask` and the reference log-prob keys to the policy and reference forwards (public behaviour of
#    `DPOTrainer._compute_loss`), and the wrapper below pops the key and scales the head's per-token log-probs, so
#    TRL's own sums become the Dense DPO scores. Remove when TRL accepts per-token weights.

DENSE_SCALE_KEY = "dense_token_scale"
POLICY, REFERENCE = "policy", "reference"


class FusedHeadCalls:
    """What the wrapped forwards saw while a batch was being scored: (role, raw per-token log-probs, scaled)."""

    def __init__(self):
        self.active = False
        self.calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []

    @contextlib.contextmanager
    def recording(self):
        self.calls, self.active = [], True
        try:
            yield self
        finally:
            self.active = False

    def record(self, role: str, raw: torch.Tensor, scaled: torch.Tensor) -> None:
        if self.active:
            self.calls.append((role, raw, scaled))

    def of(self, role: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(raw, scaled) for call_role, raw, scaled in self.calls if call_role == role]


def peft_reference_active(peft_model) -> bool:
    """Whether a PEFT model currently acts as DPO's reference: adapters disabled, or TRL's `ref` adapter active.

    Pins peft 0.21's `PeftModel._adapters_disabled` (set by `disable_adapter()`, which TRL's `use_adapter(model, None)`
    enters) and TRL's adapter name "ref" (`DPOTrainer._compute_loss`). Remove when TRL tells the forward its role.
    """
    return (
        bool(getattr(peft_model, "_adapters_disabled", False)) or getattr(peft_model, "active_adapter", None) == "ref"
    )


def wrap_fused_head_forward(
    module: torch.nn.Module,
    role_of_call: Callable[[], str],
    calls: FusedHeadCalls,
    scoring_context: Callable[[dict], contextlib.AbstractContextManager] | None = None,
) -> None:
    """Make `module.forward(..., fused_lm_head=True, dense_token_scale=s)` return log-probs multiplied by `s`.

    `module` is the transformers model whose `forward` TRL replaced with its fused head (an instance attribute, which
    DDP, DeepSpeed and PEFT end up calling). `role_of_call()` says whether this call is the policy's or the
    reference's (constant for a separate reference model; for a PEFT model it depends on the adapter state). Calls
    are recorded in `calls` while it is recording. `scoring_context(kwargs)` optionally wraps
    the forward (the tiled CPU head). Prompt-learning PEFT prepends virtual tokens: the scale covers the last positions.
    """
    inner = module.forward
    if getattr(inner, "_rlhfv_wrapped", False):
        return

    @functools.wraps(inner)
    def forward(*args, **kwargs):
        scale = kwargs.pop(DENSE_SCALE_KEY, None)
        use_head = kwargs.get("fused_lm_head", False)
        context = scoring_context(kwargs) if (scoring_context is not None and use_head) else contextlib.nullcontext()
        if use_head:
            unshard_trained_fsdp_head(module)  # entry 17
        with context:
            output = inner(*args, **kwargs)
        if not use_head:
            return output
        log_probs = output.log_probs
        width = scale.size(1) if scale is not None else log_probs.size(1)
        raw = log_probs[:, -width:]
        scaled = raw if scale is None else raw * scale.to(raw.device, raw.dtype)
        if scale is not None:
            output.log_probs = scaled if log_probs.size(1) == width else torch.cat([log_probs[:, :-width], scaled], 1)
        calls.record(role_of_call(), raw.detach(), scaled)
        return output

    forward._rlhfv_wrapped = True
    module.forward = forward


# ---------------------------------------------------------------------------------------------------------------
# 2. rlhfv's tiled CPU head in place of TRL's chunked head.
#    Why: on devices without Triton, TRL's head scores every position in 4096 x 32768 tiles (slower than plain logits
#    on CPU; docs/benchmarks.md). TRL's fused forward looks its head up as the module global
#    `trl.trainer.utils._ChunkedLogProbFunction` on each call, and decides Triton use with the private
#    `trl.kernels.chunked_logprob._use_triton`. Remove when TRL's CPU path scores only the labelled positions.


def trl_head_uses_triton(device: torch.device) -> bool:
    from trl.kernels.chunked_logprob import _use_triton

    return _use_triton(device)


def replace_trl_chunked_head(replacement) -> object | None:
    """Put `replacement` in place of TRL's chunked head; returns TRL's head (None when this TRL has no such global)."""
    import trl.trainer.utils as trl_utils

    current = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if current is None:
        return None
    if current is not replacement:
        trl_utils._ChunkedLogProbFunction = replacement
        return current
    return getattr(replacement, "trl_head", None)


# ---------------------------------------------------------------------------------------------------------------
# 3. `precompute_ref_log_probs` with image datasets.
#    Why: trl.DPOTrainer.__init__ refuses the flag for image datasets (it caches summed log-probs computed up front);
#    Dense DPO caches per-token values through the vision collator. The flag is hidden from that one check and restored
#    in `create_accelerator_and_postprocess`, which `Trainer.__init__` calls before TRL reads the flag again (reference
#    model, model hash, precompute). Remove when TRL supports reference precompute for vision datasets.


@contextlib.contextmanager
def precompute_flag_hidden_from_vision_check(args, train_dataset):
    """Inside: `args.precompute_ref_log_probs` reads False for an image dataset. Yields whether it was hidden."""
    sample = next(iter(train_dataset)) if train_dataset is not None else {}
    hide = bool(args.precompute_ref_log_probs) and ("image" in sample or "images" in sample)
    if hide:
        args.precompute_ref_log_probs = False
    try:
        yield hide
    finally:
        if hide:
            args.precompute_ref_log_probs = True


# ---------------------------------------------------------------------------------------------------------------
# 4. Resuming LLaVA / Qwen2-VL checkpoints.
#    Why: `save_pretrained` writes weights under the checkpoint key names of the model's family, while
#    `Trainer._load_from_checkpoint` (transformers 5.23) loads them with a plain non-strict `load_state_dict`: for those
#    models no key matches and a resumed run silently restarts from the initial weights. The renaming here is the one
#    `from_pretrained` applies (private `transformers.conversion_mapping` / `core_model_loading`). Remove when
#    transformers' resume applies the conversion mapping.


def load_checkpoint_with_model_keys(model, checkpoint: str, trainer) -> bool:
    """Load a checkpoint's `model.safetensors` into `model` with keys renamed to the model's own; False if not done."""
    from accelerate.utils import is_peft_model
    from safetensors.torch import load_file
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key
    from transformers.utils import SAFE_WEIGHTS_NAME

    path = os.path.join(checkpoint, SAFE_WEIGHTS_NAME)
    if is_peft_model(model) or not os.path.isfile(path):
        return False  # adapters and sharded checkpoints keep their own names: transformers loads them as they are
    transforms = get_model_conversion_mapping(model)
    if any(isinstance(transform, WeightConverter) for transform in transforms):
        return False  # many-to-one conversions (fused weights) need `from_pretrained`'s full machinery
    renamings = [transform for transform in transforms if isinstance(transform, WeightRenaming)]
    own = model.state_dict()
    state_dict = {}
    for key, tensor in load_file(path, device="cpu").items():
        name = key if key in own else rename_source_key(key, renamings, [], model.base_model_prefix, own)[0]
        state_dict[name] = tensor
    result = model.load_state_dict(state_dict, strict=True)
    trainer._issue_warnings_after_load(result)
    logger.info("Loaded the model weights of %s", checkpoint)
    return True


# ---------------------------------------------------------------------------------------------------------------
# 5. Deadlock at exit of multi-process CPU (gloo) runs.
#    Why: with torch 2.13, when DDP's reducer is the last owner of the gloo process group, the group's destructor
#    (which joins gloo's threads) runs from the reducer's destructor with the GIL held while a gloo thread may need
#    the GIL: about one 2-process CPU run in four hung at exit (same class as pytorch#56297). Freed here, the reducer
#    is not the last owner; `destroy_process_group` then releases the GIL before joining. Remove when torch fixes it.


def release_ddp_wrapper(trainer) -> None:
    """Free the trainer's DDP wrapper while the process group is still registered (before `trainer.end()`)."""
    from torch.nn.parallel import DistributedDataParallel

    if not isinstance(trainer.model_wrapped, DistributedDataParallel):
        return
    trainer.model_wrapped = trainer.model
    trainer.accelerator.free_memory()
    gc.collect()


# ---------------------------------------------------------------------------------------------------------------
# 6. Liger's layer kernels on the reference model.
#    Why: transformers' `Trainer.train` patches only the policy, with Liger's private
#    `liger_kernel.transformers._apply_liger_kernel_to_instance` (liger-kernel 0.8.5); without the same kernels on the
#    reference, rewards do not start at zero. Remove when TRL patches the reference itself.


def apply_liger_kernels_to_instance(model, **kwargs) -> None:
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    _apply_liger_kernel_to_instance(model=model, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# 7. Stopping at the first non-finite gradient, before the optimizer applies it.
#    Why: transformers 5.23 computes each step's gradient norm in the private `Trainer._get_grad_norm`, between the
#    backward and `optimizer.step()`, and otherwise trains on: NaN losses are logged as the running average
#    (`logging_nan_inf_filter`) and NaN weights are saved as the final model. `DenseDPOTrainer._get_grad_norm` checks
#    the (all-reduced, so rank-consistent) norm there. Remove when transformers offers a public pre-step hook with the
#    gradient norm.


# ---------------------------------------------------------------------------------------------------------------
# 8. TRL trainer state that rlhfv reads or extends (trl 1.16).
#    Why: DPOTrainer keeps its logged metrics in `_metrics[mode][name]` (lists averaged at each log), whether the
#    dataset has images in `_is_vision_dataset`, the columns its collator keeps in transformers'
#    `Trainer._signature_columns`, and its reference precompute's model hash and DeepSpeed engine in
#    `_precompute_model_hash` / `_precompute_engine`. Dense DPO logs its own metrics beside TRL's, keeps its extra
#    columns, and keys its per-token reference cache with TRL's hash. Remove when TRL exposes a public metrics logger,
#    the vision flag, a column hook, and per-token reference precompute.


def trainer_metrics(trainer, mode: str) -> dict:
    """TRL's metric lists of `mode` ("train" / "eval"): append a value to log its mean at the next log step."""
    return trainer._metrics[mode]


def is_vision_dataset(trainer) -> bool:
    return bool(trainer._is_vision_dataset)


def keep_signature_columns(trainer, extra: list[str]) -> None:
    """Add `extra` to the columns the trainer keeps for its collator (after `_set_signature_columns_if_needed`)."""
    trainer._signature_columns = list(dict.fromkeys([*(trainer._signature_columns or []), *extra]))


def set_signature_columns_if_unset(trainer, columns: list[str]) -> None:
    if trainer._signature_columns is None:
        trainer._signature_columns = list(columns)


def reference_model_hash(trainer) -> str:
    """TRL's hash of the reference model's weights and settings (set in DPOTrainer.__init__ for precompute)."""
    return trainer._precompute_model_hash


def deepspeed_precompute_engine(trainer, build: Callable[[], object]):
    """TRL's cached DeepSpeed inference engine for reference precompute, built with `build()` on first use."""
    if trainer._precompute_engine is None:
        trainer._precompute_engine = build()
    return trainer._precompute_engine


# ---------------------------------------------------------------------------------------------------------------
# 9. TRL's model-card fields of a trainer class (trl 1.16).
#    Why: TRL's trainers describe themselves for `create_model_card` through the class attributes `_tag_names`,
#    `_name` and `_paper` (dict with title, id, citation) and flag VLMs with `_is_vlm`; rlhfv's trainers set the first
#    three (TRAINER_OVERRIDES) and rlhfv's model card reads them. Remove when TRL makes them public.


def trainer_card_fields(trainer) -> dict:
    """{tags, name, paper (title, id, citation), is_vlm} as TRL's trainers declare them."""
    return {
        "tags": list(getattr(trainer, "_tag_names", []) or []),
        "name": trainer._name,
        "paper": trainer._paper,
        "is_vlm": bool(getattr(trainer, "_is_vlm", False)),
    }


# ---------------------------------------------------------------------------------------------------------------
# 10. Internals of `trl.trainer.*` (trl 1.16) that rlhfv builds on.
#    Why: TRL exports neither its DPO collators nor these helpers at the top level: `DataCollatorForPreference` and
#    `DataCollatorForVisionPreference` (trl.trainer.dpo_trainer; rlhfv's collators extend them), `get_config_model_id`
#    (the base model's id for the model card), `maybe_gather_lm_head_ctx` (gathers a ZeRO-3 partitioned LM head) and
#    the private `_CHUNKED_LOGPROB_CHUNK_SIZE` (the tile size TRL's Triton head uses; the tiled head passes the same).
#    They are loaded on first use (importing trl.trainer takes seconds). Remove each when TRL exports it.

TRL_TRAINER_INTERNALS = {
    "DataCollatorForPreference": "trl.trainer.dpo_trainer",
    "DataCollatorForVisionPreference": "trl.trainer.dpo_trainer",
    "get_config_model_id": "trl.trainer.utils",
    "maybe_gather_lm_head_ctx": "trl.trainer.utils",
}


def __getattr__(name: str):
    # module attributes loaded on first use (PEP 562): `from rlhfv._compat import DataCollatorForPreference`
    if name in TRL_TRAINER_INTERNALS:
        import importlib

        return getattr(importlib.import_module(TRL_TRAINER_INTERNALS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def trl_chunk_size() -> int:
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    return _CHUNKED_LOGPROB_CHUNK_SIZE


# ---------------------------------------------------------------------------------------------------------------
# 11. `datasets.Dataset._fingerprint` (datasets 5.2).
#    Why: the hash `datasets` keeps of a dataset's content and transforms; rlhfv names the cache of a converted Hub
#    dataset with it, so that a new revision converts again. Remove when `datasets` exposes it publicly.


def dataset_fingerprint(dataset) -> str:
    return dataset._fingerprint


# ---------------------------------------------------------------------------------------------------------------
# 12. Private methods and class attributes of TRL / transformers trainers that rlhfv's trainers override.
#    Why: each is the only hook at that point (see the override's comment in its trainer). The signature TRL or
#    transformers has today is pinned by tests/test_trl_contract.py, so an upgrade that changes one fails there.
#    Remove an entry when its override goes. Keys: "module:Class.name"; values: the library class it overrides and
#    the expected signature (None for a class attribute).

TRAINER_OVERRIDES = {
    "rlhfv.trainer:DenseDPOTrainer._tag_names": ("trl.DPOTrainer", None),
    "rlhfv.trainer:DenseDPOTrainer._name": ("trl.DPOTrainer", None),
    "rlhfv.trainer:DenseDPOTrainer._paper": ("trl.DPOTrainer", None),
    "rlhfv.trainer:DenseDPOTrainer._load_from_checkpoint": (
        "trl.DPOTrainer",
        "(self, resume_from_checkpoint: str, model: torch.nn.modules.module.Module | None = None) -> None",
    ),
    "rlhfv.trainer:DenseDPOTrainer._get_grad_norm": ("trl.DPOTrainer", "(self, model, grad_norm=None)"),
    "rlhfv.trainer:DenseDPOTrainer._prepare_dataset": (
        "trl.DPOTrainer",
        "(self, dataset: datasets.arrow_dataset.Dataset | datasets.iterable_dataset.IterableDataset, "
        "processing_class: transformers.tokenization_utils_base.PreTrainedTokenizerBase | "
        "transformers.processing_utils.ProcessorMixin, args: trl.trainer.dpo_config.DPOConfig, dataset_name: str) "
        "-> datasets.arrow_dataset.Dataset | datasets.iterable_dataset.IterableDataset",
    ),
    "rlhfv.trainer:DenseDPOTrainer._set_signature_columns_if_needed": ("trl.DPOTrainer", "(self)"),
    "rlhfv.trainer:DenseDPOTrainer._precompute_ref_logps": (
        "trl.DPOTrainer",
        "(self, dataset: datasets.arrow_dataset.Dataset, name: str, batch_size: int) -> datasets.arrow_dataset.Dataset",
    ),
    # entry 16: the sharded optimizer state of parameters that never get a gradient, created before each save
    "rlhfv.trainer:DenseDPOTrainer._save_optimizer_and_scheduler": (
        "trl.DPOTrainer",
        "(self, output_dir: str) -> None",
    ),
    "rlhfv.reward.trainer:VisionRewardTrainer._tag_names": ("trl.RewardTrainer", None),
    # transformers' hooks of a custom PreTrainedModel: the attention kernels it supports and its weight init
    "rlhfv.reward.model:VisionRewardModel._supports_sdpa": ("transformers.PreTrainedModel", None),
    "rlhfv.reward.model:VisionRewardModel._supports_flash_attn": ("transformers.PreTrainedModel", None),
    "rlhfv.reward.model:VisionRewardModel._init_weights": ("transformers.PreTrainedModel", "(self, module)"),
    "rlhfv.reward.trainer:VisionRewardTrainer._prepare_dataset": (
        "trl.RewardTrainer",
        "(self, dataset: datasets.arrow_dataset.Dataset | datasets.iterable_dataset.IterableDataset, "
        "processing_class: transformers.tokenization_utils_base.PreTrainedTokenizerBase, "
        "args: trl.trainer.reward_config.RewardConfig, dataset_name: str) "
        "-> datasets.arrow_dataset.Dataset | datasets.iterable_dataset.IterableDataset",
    ),
    "rlhfv.reward.trainer:VisionRewardTrainer._set_signature_columns_if_needed": ("trl.RewardTrainer", "(self)"),
    "rlhfv.reward.trainer:VisionRewardTrainer._save": (
        "trl.RewardTrainer",
        "(self, output_dir: str | None = None, state_dict: dict | None = None) -> None",
    ),
}

# ---------------------------------------------------------------------------------------------------------------
# 13. DDP's list of parameters and buffers not to broadcast (torch 2.13).
#    Why: DDP cannot broadcast boolean buffers (transformers#22482); torch reads the module attribute
#    `_ddp_params_and_buffers_to_ignore` when it wraps the model (`ignore_bias_buffers` in the recipe). Remove when
#    torch broadcasts boolean buffers or offers a public way to skip them.


def ignore_bool_buffers_in_ddp(model) -> None:
    model._ddp_params_and_buffers_to_ignore = [
        name for name, buffer in model.named_buffers() if buffer.dtype == torch.bool
    ]


# 14. FSDP2 on CPU processes (gloo).
#    Why: accelerate 1.16 turns FSDP on only for accelerator devices: `AcceleratorState.__init__` takes the FSDP
#    plugin only when the processes are GPUs (or other accelerators), so an FSDP config or `fsdp`/`fsdp_config` on
#    CPU processes silently trains plain DDP, unsharded. PyTorch's FSDP2 (`fully_shard`) runs on CPU with gloo (torch
#    2.13), so right after the Accelerator is built this puts the FSDP2 plugin on accelerate's shared state and sets
#    the distributed type to FSDP there and in `PartialState._shared_state` (private); accelerate's own FSDP2 code
#    then shards the policy and the reference, gathers the state dict and writes sharded checkpoints exactly as on
#    GPUs. That is what tests/test_sharded.py trains under. Remove when accelerate enables FSDP on CPU.


def enable_fsdp2_on_cpu(accelerator, fsdp_plugin_args: dict | None) -> bool:
    """Switch a multi-process CPU accelerator to FSDP2 when FSDP was asked for; True when switched.

    FSDP is asked for by the training arguments (`fsdp_plugin_args`, from `fsdp` / `fsdp_config`) or by an
    `accelerate launch` FSDP config (`ACCELERATE_USE_FSDP`, the plugin then reads its settings from the environment).
    """
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = accelerator.state
    from_env = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if state.distributed_type != DistributedType.MULTI_CPU or (fsdp_plugin_args is None and not from_env):
        return False
    plugin = (
        FullyShardedDataParallelPlugin(**fsdp_plugin_args) if fsdp_plugin_args else FullyShardedDataParallelPlugin()
    )
    if plugin.fsdp_version != 2:
        raise ValueError(
            "FSDP on CPU processes runs only as FSDP2: set `fsdp_config: {version: 2}` (or `fsdp_version: 2` in the "
            "accelerate config)."
        )
    if state.mixed_precision != "no":
        plugin.set_mixed_precision(state.mixed_precision)
    state.fsdp_plugin = plugin
    _set_distributed_type(state, DistributedType.FSDP)
    logger.info("FSDP2 on %d CPU processes (gloo): parameters are sharded with fully_shard", state.num_processes)
    return True


# ---------------------------------------------------------------------------------------------------------------
# 15. The final model of an FSDP run that checkpoints sharded (`state_dict_type: SHARDED_STATE_DICT`).
#    Why: transformers 5.23's `Trainer.save_model` writes the model under FSDP only with FULL_STATE_DICT; with
#    SHARDED_STATE_DICT it writes nothing, silently (checkpoints hold the shards through accelerate, but the output
#    folder has no model). `DenseDPOTrainer.save_model` gathers the full state dict (accelerate's public
#    `get_state_dict`, collective: every rank calls it) and writes it with the private `Trainer._save`, as
#    `save_model` does for FULL_STATE_DICT. Remove when transformers saves the final model of a sharded run.


def save_full_model_of_sharded_run(trainer, output_dir: str | None) -> bool:
    """Write the gathered model of an FSDP run whose state dict type is not FULL; False when nothing was needed."""
    if not trainer.is_fsdp_enabled or "FULL_STATE_DICT" in str(trainer.accelerator.state.fsdp_plugin.state_dict_type):
        return False
    state_dict = trainer.accelerator.get_state_dict(trainer.model)
    trainer._save(output_dir or trainer.args.output_dir, state_dict=state_dict)
    return True


# ---------------------------------------------------------------------------------------------------------------
# 16. Resuming an FSDP2 checkpoint of a model with trainable parameters that never get a gradient.
#    Why: torch 2.13's distributed optimizer state dict (`torch.distributed.checkpoint.state_dict`, which accelerate
#    uses for FSDP2 checkpoints) saves state only for parameters the optimizer has stepped, but on load it builds
#    state for every trainable parameter (`_init_optim_state`, a zero-gradient step on a fresh optimizer) and refuses
#    a checkpoint that lacks any ("Missing key in checkpoint state_dict: optimizer.state.<name>.step" when sharded,
#    "Missing optimizer state for parameter" with a full state dict). LLaVA leaves such parameters: the vision
#    tower's layers after `vision_feature_layer` and its `post_layernorm` (LLaVA-1.5 takes layer -2), so no FSDP2
#    run of a LLaVA with a trained vision tower could resume. Before the optimizer is saved (the private
#    `Trainer._save_optimizer_and_scheduler`), the missing entries are created the way the loader creates them: one
#    step of the optimizer over only those parameters, with zero gradients and a learning rate of 0 (no weight moves;
#    Adam skips a parameter whose gradient is None, so the new entries change nothing in later steps). torchtitan
#    fixed the same asymmetry this way (pytorch/torchtitan#4474). Remove when torch saves or loads partially
#    initialised optimizer states.


def materialize_missing_optimizer_state(optimizer) -> int:
    """Give every trainable parameter without optimizer state the state of a zero-gradient step; returns how many.

    Collective-free: under FSDP2 the same parameters lack state on every process (their gradients are reduced
    together), and the step is element-wise on each process's shard.
    """
    optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps the torch one
    params = [param for group in optimizer.param_groups for param in group["params"]]
    missing = [param for param in params if param.requires_grad and param not in optimizer.state]
    if not missing:
        return 0
    grads = [param.grad for param in params]
    learning_rates = [group["lr"] for group in optimizer.param_groups]
    try:
        for param in params:
            param.grad = None
        for param in missing:
            param.grad = torch.zeros_like(param)
        for group in optimizer.param_groups:
            group["lr"] = torch.zeros_like(group["lr"]) if isinstance(group["lr"], torch.Tensor) else 0.0
        optimizer.step()
    finally:
        for group, learning_rate in zip(optimizer.param_groups, learning_rates, strict=True):
            group["lr"] = learning_rate
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
    return len(missing)


# ---------------------------------------------------------------------------------------------------------------
# 17. The LM head's gradient under FSDP2 when the head has an FSDP unit of its own.
#    Why: TRL 1.16's fused head reads `lm_head.weight` without calling `lm_head`, and gathers a sharded (DTensor)
#    weight with `full_tensor()`. Autograd's way back through `full_tensor()` hands each process the slice of its OWN
#    gradient (a replicated tensor is assumed to have the same gradient everywhere): no reduction across processes,
#    so each shard of the head trains on one process's batch. That happens when accelerate 1.16 gives the head a unit
#    of its own that no forward unshards: for LLaVA (no final norm among the base model's children, so the head's
#    unit holds only the head). With the Llama the head shares a unit with the final norm, whose forward unshards it
#    and FSDP reduces its gradient. Measured on the tiny LLaVA, 2 processes: the head's gradient norm 0.1664 instead
#    of 0.1601 at the first step. The fix unshards such a head (the public `FSDPModule.unshard`) before the fused
#    head reads it, when it is trained: TRL then reads the plain unsharded weight, and torch 2.13's root
#    post-backward callback reduce-scatters the gradient of every unit still unsharded after the backward
#    (`FSDPState._root_post_backward_final_callback`), as for any module. Remove when TRL reduces the gathered
#    head's gradient itself.


def unshard_trained_fsdp_head(model: torch.nn.Module) -> bool:
    """Unshard `model`'s output embedding if it is an FSDP2 unit of its own holding a trained, sharded weight."""
    from torch.distributed.tensor import DTensor

    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch < 2.6: no public FSDP2
        return False
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    if not isinstance(head, FSDPModule) or not isinstance(weight, DTensor) or not weight.requires_grad:
        return False
    if not torch.is_grad_enabled():
        return False  # a scoring-only forward (reference, evaluation) gathers the head in TRL and needs no gradient
    head.unshard()
    return True


# ---------------------------------------------------------------------------------------------------------------
# 18. DeepSpeed ZeRO on CPU processes (gloo).
#    Why: as for FSDP (entry 14), accelerate 1.16 takes the DeepSpeed plugin only off the CPU (`AcceleratorState`
#    checks `ACCELERATE_USE_DEEPSPEED and not cpu`): with `use_cpu` the run trains plain DDP; without it, on a machine
#    without GPUs, accelerate counts one process while DeepSpeed joins all of them, and the first gather fails.
#    DeepSpeed 0.19's CPU accelerator runs ZeRO-3 over gloo, so right after the Accelerator is built this selects the
#    plugin (private `DeepSpeedPlugin.select(_from_accelerator_state=True)`, as `AcceleratorState` does), joins
#    `deepspeed.comm` to the gloo group and sets the distributed type to DEEPSPEED; TRL and transformers then run
#    their own ZeRO-3 code (engines for policy and reference, the gathered LM head, 16-bit consolidated saves).
#    Remove when accelerate enables DeepSpeed on CPU.


def enable_deepspeed_on_cpu(accelerator, args) -> bool:
    """Switch a multi-process CPU accelerator to DeepSpeed when the run asks for it; True when switched.

    DeepSpeed is asked for by the training arguments (`deepspeed`, a config file or dict) or by an `accelerate launch`
    DeepSpeed config (`ACCELERATE_USE_DEEPSPEED`; the plugin then reads the environment).
    """
    from accelerate.utils import DeepSpeedPlugin, DistributedType

    state = accelerator.state
    from_env = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    plugin = getattr(args, "deepspeed_plugin", None)
    if state.distributed_type != DistributedType.MULTI_CPU or (plugin is None and not from_env):
        return False
    import deepspeed
    from transformers.integrations.deepspeed import propagate_args_to_deepspeed

    plugin = plugin or DeepSpeedPlugin()
    deepspeed.comm.init_distributed(dist_backend=state.backend, auto_mpi_discovery=False)
    plugin.set_mixed_precision(state.mixed_precision)
    plugin.select(_from_accelerator_state=True)
    state.deepspeed_plugins = plugin
    _set_distributed_type(state, DistributedType.DEEPSPEED)
    if getattr(args, "hf_deepspeed_config", None) is None:  # an accelerate config: fill its "auto" values from args
        propagate_args_to_deepspeed(accelerator, args)
    logger.info("DeepSpeed ZeRO-%d on %d CPU processes (gloo)", plugin.zero_stage, state.num_processes)
    return True


def _set_distributed_type(state, distributed_type) -> None:
    """Set the distributed type on accelerate's shared state and on its `PartialState` (entries 14 and 18)."""
    from accelerate.state import PartialState

    state.distributed_type = distributed_type
    PartialState._shared_state["distributed_type"] = distributed_type


# Every private name of a library that rlhfv uses, with its entry above. Outside this module a listed name may
# appear only as an override in TRAINER_OVERRIDES (its definition, and its `super()` call); tests/test_trl_contract.py
# scans rlhfv and data_tools for any other use, and for private names not listed here.
LIBRARY_PRIVATE_NAMES = {
    "_adapters_disabled": 1,
    "_rlhfv_wrapped": 1,  # rlhfv's own marker on a wrapped forward
    "_use_triton": 2,
    "_ChunkedLogProbFunction": 2,
    "_issue_warnings_after_load": 4,
    "_load_from_checkpoint": 4,
    "_apply_liger_kernel_to_instance": 6,
    "_get_grad_norm": 7,
    "_metrics": 8,
    "_is_vision_dataset": 8,
    "_signature_columns": 8,
    "_set_signature_columns_if_needed": 8,
    "_prepare_dataset": 8,
    "_precompute_ref_logps": 8,
    "_precompute_model_hash": 8,
    "_precompute_engine": 8,
    "_tag_names": 9,
    "_name": 9,
    "_paper": 9,
    "_is_vlm": 9,
    "_CHUNKED_LOGPROB_CHUNK_SIZE": 10,
    "_fingerprint": 11,
    "_save": 12,
    "_supports_sdpa": 12,
    "_supports_flash_attn": 12,
    "_init_weights": 12,
    "_ddp_params_and_buffers_to_ignore": 13,
    "_shared_state": 14,
    "_save_optimizer_and_scheduler": 16,
}
