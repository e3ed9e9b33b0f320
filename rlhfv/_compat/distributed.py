"""DDP, FSDP2 and DeepSpeed: what multi-process runs (on CPU processes too) need from library internals
(`rlhfv._compat` entries 5 and 13 to 18).

Written for: torch 2.13, accelerate 1.16, transformers 5.23, deepspeed 0.19. Each entry says why it exists and when
it can go.
"""

from __future__ import annotations

import gc
import logging
import os

import torch


logger = logging.getLogger(__name__)


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
