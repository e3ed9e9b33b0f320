"""What rlhfv relies on in TRL 1.16 (and peft 0.21), pinned so that an upgrade fails here, saying what changed.

Each test names the `rlhfv._compat` entry (or module) that depends on the behaviour. When one fails after an upgrade,
read that entry: it says why the dependency exists and what to change.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect

import pytest
import torch
from datasets import Dataset

from rlhfv.tiny_models import build_text_model, build_tokenizer


def test_trl_head_is_a_module_global_with_the_signature_the_dispatcher_mirrors():
    # _compat.replace_trl_chunked_head and tiled_head_dispatch._HeadDispatcher.apply
    import trl.trainer.utils as trl_utils
    from trl.kernels import ChunkedLogProbFunction
    from trl.kernels.chunked_logprob import _use_triton

    from rlhfv import tiled_head_dispatch

    head = trl_utils._ChunkedLogProbFunction
    assert head in (ChunkedLogProbFunction, tiled_head_dispatch._HeadDispatcher), (
        "TRL no longer looks its fused head up as trl.trainer.utils._ChunkedLogProbFunction"
    )
    trl_params = list(inspect.signature(ChunkedLogProbFunction.forward).parameters)[1:]  # without ctx
    ours = list(inspect.signature(tiled_head_dispatch._HeadDispatcher.apply).parameters)
    assert ours == trl_params, f"TRL's head arguments changed: {trl_params} (the dispatcher takes {ours})"
    assert _use_triton(torch.device("cpu")) is False


def test_trl_fused_forward_passes_every_extra_batch_key_to_policy_then_reference(tmp_path):
    # _compat.wrap_fused_head_forward: the token scales travel as a batch key TRL hands to both forwards
    from trl import DPOConfig, DPOTrainer

    tokenizer = build_tokenizer()
    policy = build_text_model(tokenizer, seed=0)
    reference = copy.deepcopy(policy)
    rows = [
        {"prompt": "Describe the image.", "chosen": " A red circle.", "rejected": " A blue circle."},
        {"prompt": "What is there?", "chosen": " A cat.", "rejected": " A dog on a mat."},
    ]
    args = DPOConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], max_length=None, save_strategy="no",
        gradient_checkpointing=False,
    )  # fmt: skip
    trainer = DPOTrainer(
        policy, ref_model=reference, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )
    seen = []
    for role, module in (("policy", trainer.model), ("reference", trainer.ref_model)):
        inner = module.forward

        def spy(*a, _inner=inner, _role=role, **kwargs):
            seen.append((_role, kwargs.pop("probe_key", None), kwargs.get("fused_lm_head")))
            return _inner(*a, **kwargs)

        module.forward = spy
    columns = trainer._remove_unused_columns(trainer.train_dataset)
    batch = trainer.data_collator([columns[i] for i in range(2)])
    assert set(batch) == {"input_ids", "attention_mask", "completion_mask"}, "TRL's text batch keys changed"
    batch["probe_key"] = "probe"
    trainer.compute_loss(trainer.model, batch)
    assert seen == [("policy", "probe", True), ("reference", "probe", True)], (
        f"TRL's forwards no longer receive extra batch keys (or the call order changed): {seen}"
    )


def test_collator_fields_are_the_settings_promote_collator_copies():
    # collators.promote_collator copies every init field; the vision collator's cut is keep_start only
    from trl.trainer.dpo_trainer import DataCollatorForPreference, DataCollatorForVisionPreference

    from rlhfv.collators import DenseDataCollatorForPreference, DenseDataCollatorForVisionPreference, promote_collator

    text = {f.name for f in dataclasses.fields(DataCollatorForPreference)}
    vision = {f.name for f in dataclasses.fields(DataCollatorForVisionPreference)}
    assert text == {"pad_token_id", "max_length", "truncation_mode", "pad_to_multiple_of", "return_tensors"}
    assert vision == {"processor", "max_length", "pad_to_multiple_of", "return_tensors"}
    stock = DataCollatorForPreference(pad_token_id=3, max_length=17, truncation_mode="keep_end", pad_to_multiple_of=8)
    dense = promote_collator(stock, "spans")
    assert isinstance(dense, DenseDataCollatorForPreference)
    assert {name: getattr(dense, name) for name in text} == {name: getattr(stock, name) for name in text}
    assert issubclass(DenseDataCollatorForVisionPreference, DataCollatorForVisionPreference)


def test_trl_writes_cards_through_the_create_model_card_hook():
    # DenseDPOTrainer.create_model_card replaces TRL's card; TRL must keep calling the hook when it saves
    from trl import DPOTrainer

    assert "self.create_model_card(" in inspect.getsource(DPOTrainer._save_checkpoint)
    assert set(DPOTrainer._paper) >= {"title", "id", "citation"}
    assert isinstance(DPOTrainer._tag_names, list) and isinstance(DPOTrainer._name, str)


def test_trl_refuses_reference_precompute_for_image_datasets_in_init():
    # _compat.precompute_flag_hidden_from_vision_check: remove it once TRL stops refusing
    from trl import DPOTrainer

    source = inspect.getsource(DPOTrainer.__init__)
    assert "`precompute_ref_log_probs=True` is not supported for vision datasets" in source


def test_trl_reference_forward_helper_signature():
    # ref_precompute.reference_token_logps calls TRL's own reference forward
    from trl import DPOTrainer

    assert list(inspect.signature(DPOTrainer.compute_ref_log_probs).parameters) == ["self", "model", "inputs"]


def test_peft_disable_adapter_sets_the_flag_read_to_tell_the_reference():
    # _compat.peft_reference_active
    from peft import LoraConfig, get_peft_model

    from rlhfv._compat import peft_reference_active

    tokenizer = build_tokenizer()
    model = get_peft_model(build_text_model(tokenizer), LoraConfig(r=2, target_modules=["q_proj"]))
    assert peft_reference_active(model) is False
    with model.disable_adapter():
        assert peft_reference_active(model) is True
    assert peft_reference_active(model) is False


@pytest.mark.parametrize("module", ["transformers.conversion_mapping", "transformers.core_model_loading"])
def test_transformers_private_loading_helpers_exist(module):
    # _compat.load_checkpoint_with_model_keys
    import importlib

    loaded = importlib.import_module(module)
    names = {
        "transformers.conversion_mapping": ["get_model_conversion_mapping"],
        "transformers.core_model_loading": ["WeightConverter", "WeightRenaming", "rename_source_key"],
    }[module]
    for name in names:
        assert hasattr(loaded, name), f"{module}.{name} is gone: resuming LLaVA/Qwen2-VL checkpoints needs a new route"


def test_transformers_computes_the_grad_norm_in_get_grad_norm_before_the_optimizer_step():
    # _compat entry 7: DenseDPOTrainer._get_grad_norm stops a diverged run before the step is applied
    from transformers import Trainer

    source = inspect.getsource(Trainer._run_epoch)
    assert "self._get_grad_norm(" in source and "self.optimizer.step()" in source
    assert source.index("self._get_grad_norm(") < source.index("self.optimizer.step()")


# ---- rlhfv._compat is the one place for library internals -------------------------------------------------------
LIBRARIES = ("trl", "transformers", "peft", "accelerate", "torch", "liger_kernel", "datasets")
# private names of the standard library read by the config loader (argparse): not a pinned library
STANDARD_LIBRARY_PRIVATE = {"_option_string_actions", "_actions", "_action_groups", "_group_actions"}


def _product_files():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return root, [p for package in ("rlhfv", "data_tools") for p in sorted((root / package).rglob("*.py"))]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module_of(root, path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _own_private_names(trees) -> set[str]:
    """Private names rlhfv defines itself: functions, classes, module names, attributes it assigns."""
    import ast

    own = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                own.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                # attributes rlhfv sets on its own objects; a store on another object may be a library's name
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    own.add(node.attr)
            elif isinstance(node, ast.arg):
                own.add(node.arg)
    return {name for name in own if _is_private(name)}


def _compat_violations() -> list[str]:
    import ast

    from rlhfv._compat import LIBRARY_PRIVATE_NAMES, TRAINER_OVERRIDES

    root, files = _product_files()
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in files}
    own = _own_private_names(trees.values()) - set(LIBRARY_PRIVATE_NAMES)
    bad = []
    for path, tree in trees.items():
        module = _module_of(root, path)
        if module == "rlhfv._compat" or module.startswith("rlhfv._compat."):
            continue  # the package that holds them
        where = str(path.relative_to(root))
        overrides = {key.split(":")[1] for key in TRAINER_OVERRIDES if key.split(":")[0] == module}

        def check(name, line, context, where=where, overrides=overrides):
            if name in STANDARD_LIBRARY_PRIVATE or name in own or not _is_private(name):
                return
            if f"{context.partition('.')[0]}.{name}" in overrides:
                return  # inside a class that overrides it (listed in _compat.TRAINER_OVERRIDES): its own member
            listed = name in LIBRARY_PRIVATE_NAMES
            hint = "use its accessor in rlhfv._compat" if listed else "add an entry to rlhfv._compat"
            bad.append(f"{where}:{line}: {name} ({hint})")

        def visit(node, context, where=where):
            if isinstance(node, ast.ClassDef):
                for child in node.body:
                    if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                        check(child.name, child.lineno, f"{node.name}.{child.name}")
                        for inner in child.body:
                            visit(inner, f"{node.name}.{child.name}", where)
                    elif isinstance(child, ast.Assign | ast.AnnAssign):
                        for target in child.targets if isinstance(child, ast.Assign) else [child.target]:
                            if isinstance(target, ast.Name):
                                check(target.id, child.lineno, f"{node.name}.{target.id}")
                        if child.value is not None:
                            visit(child.value, f"{node.name}.", where)
                    else:
                        visit(child, f"{node.name}.", where)
                return
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top = node.module.split(".")[0]
                if node.module.startswith("trl.trainer"):
                    bad.append(f"{where}:{node.lineno}: imports {node.module} (a trl.trainer internal: rlhfv._compat)")
                elif top in LIBRARIES:
                    for alias in node.names:
                        if _is_private(alias.name):
                            bad.append(f"{where}:{node.lineno}: imports {node.module}.{alias.name} (rlhfv._compat)")
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("trl.trainer") or any(_is_private(p) for p in alias.name.split(".")):
                        if alias.name.split(".")[0] in LIBRARIES:
                            bad.append(f"{where}:{node.lineno}: imports {alias.name} (rlhfv._compat)")
            if isinstance(node, ast.Attribute):
                check(node.attr, node.lineno, context)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr", "hasattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                check(node.args[1].value, node.lineno, context)
            for child in ast.iter_child_nodes(node):
                visit(child, context, where)

        visit(tree, "")
    return bad


def test_library_internals_are_used_only_in_compat():
    bad = _compat_violations()
    assert not bad, "private names of libraries outside the rlhfv._compat package:\n" + "\n".join(bad)


def test_every_compat_entry_is_numbered_once_and_every_listed_name_points_at_one():
    import re
    from pathlib import Path

    from rlhfv._compat import LIBRARY_PRIVATE_NAMES

    package = Path(__file__).resolve().parents[1] / "rlhfv" / "_compat"
    headers = [
        int(match)
        for path in sorted(package.glob("*.py"))
        for match in re.findall(r"^# (\d+)\. ", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    ]
    assert sorted(headers) == list(range(1, max(headers) + 1)), f"entry numbers missing or repeated: {sorted(headers)}"
    assert set(LIBRARY_PRIVATE_NAMES.values()) <= set(headers)


def test_the_compat_scan_catches_a_private_read_and_a_trl_trainer_import(tmp_path):
    from pathlib import Path

    probe = Path(__file__).resolve().parents[1] / "rlhfv" / "_compat_scan_probe.py"
    probe.write_text(
        "from trl.trainer.utils import selective_log_softmax\n\ndef f(trainer):\n    return trainer._metrics\n",
        encoding="utf-8",
    )
    try:
        bad = "\n".join(_compat_violations())
    finally:
        probe.unlink()
    assert "_compat_scan_probe.py:1: imports trl.trainer.utils" in bad
    assert "_compat_scan_probe.py:4: _metrics (use its accessor in rlhfv._compat)" in bad


@pytest.mark.parametrize("key", sorted(importlib.import_module("rlhfv._compat").TRAINER_OVERRIDES))
def test_every_override_of_a_private_trainer_member_matches_the_library(key):
    # _compat.TRAINER_OVERRIDES: the library member exists with the signature the override was written for
    import importlib

    from rlhfv._compat import TRAINER_OVERRIDES

    library_path, expected = TRAINER_OVERRIDES[key]
    module, _, member = key.partition(":")
    class_name, _, name = member.partition(".")
    ours = getattr(importlib.import_module(module), class_name)
    library_module, _, library_class = library_path.rpartition(".")
    library = getattr(importlib.import_module(library_module), library_class)
    assert issubclass(ours, library), f"{key}: {class_name} no longer extends {library_path}"
    assert name in vars(ours), f"{key}: {class_name} no longer overrides {name}; remove the entry"
    assert hasattr(library, name), f"{library_path} has no {name} any more: the override {key} is dead code"
    if expected is not None:
        actual = str(inspect.signature(getattr(library, name)))
        assert actual == expected, f"{library_path}.{name} changed its signature: {actual} (written for {expected})"


def test_every_private_member_a_product_class_overrides_is_listed():
    # a private member of a library base class redefined in rlhfv must be in _compat.TRAINER_OVERRIDES
    import ast
    import importlib

    from rlhfv._compat import TRAINER_OVERRIDES

    root, files = _product_files()
    unlisted = []
    for path in files:
        module = _module_of(root, path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # the members each class body defines (not those a metaclass adds, such as torch's `_backward_cls`)
        classes = {
            node.name: {
                getattr(child, "name", None) or getattr(getattr(child, "targets", [None])[0], "id", None)
                for child in node.body
            }
            for node in tree.body
            if isinstance(node, ast.ClassDef) and node.bases
        }
        if not classes or module in ("rlhfv.__main__",):
            continue
        loaded = importlib.import_module(module)
        for class_name, defined in classes.items():
            cls = getattr(loaded, class_name)
            library_bases = [b for b in cls.__mro__[1:] if b.__module__.split(".")[0] in LIBRARIES]
            for name in sorted(n for n in defined if n):
                if _is_private(name) and any(name in vars(base) for base in library_bases):
                    if f"{module}:{class_name}.{name}" not in TRAINER_OVERRIDES:
                        unlisted.append(f"{module}:{class_name}.{name}")
    assert not unlisted, f"overrides of library private members missing from _compat.TRAINER_OVERRIDES: {unlisted}"


def test_the_trl_state_the_accessors_read_is_set_by_trl():
    # _compat entries 8-11 and 13: the libraries set or read these attributes themselves (read from its source, without building a trainer)
    import trl.trainer.utils as trl_utils
    from trl import DPOTrainer, RewardTrainer

    from rlhfv import _compat

    source = inspect.getsource(DPOTrainer)
    for attribute in ("_metrics", "_is_vision_dataset", "_precompute_model_hash", "_precompute_engine"):
        assert f"self.{attribute} =" in source, f"DPOTrainer no longer sets self.{attribute}"
    assert "self._signature_columns" in inspect.getsource(DPOTrainer._set_signature_columns_if_needed)
    for trainer in (DPOTrainer, RewardTrainer):
        assert isinstance(trainer._tag_names, list) and isinstance(trainer._name, str)
    assert {"title", "id", "citation"} <= set(DPOTrainer._paper)  # the Dense DPO model card reads these keys
    assert isinstance(trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE, int) and _compat.trl_chunk_size() > 0
    for name in _compat.TRL_TRAINER_INTERNALS:
        assert callable(getattr(_compat, name)), name
    assert isinstance(_compat.dataset_fingerprint(Dataset.from_dict({"a": [1]})), str)
    # entry 13: DDP reads the module attribute that lists what not to broadcast
    from torch.nn.parallel import DistributedDataParallel

    assert "_ddp_params_and_buffers_to_ignore" in inspect.getsource(DistributedDataParallel)
    model = torch.nn.Module()
    model.register_buffer("flag", torch.zeros(2, dtype=torch.bool))
    model.register_buffer("scale", torch.ones(2))
    _compat.ignore_bool_buffers_in_ddp(model)
    assert model._ddp_params_and_buffers_to_ignore == ["flag"]


def test_accelerate_takes_fsdp_and_deepspeed_only_off_the_cpu():
    # _compat entries 14 and 18: when accelerate handles CPU processes itself, the switches can go
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DeepSpeedPlugin

    source = inspect.getsource(AcceleratorState.__init__)
    assert "self.distributed_type = DistributedType.FSDP" in source and "MULTI_CPU" not in source, (
        "accelerate's FSDP branch changed: check whether it now shards CPU processes (then drop entry 14)"
    )
    assert 'os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true" and not cpu' in source
    # What the switches write: the shared state both classes read, and the plugin selection AcceleratorState does
    assert isinstance(PartialState._shared_state, dict)
    assert isinstance(inspect.getattr_static(AcceleratorState, "is_fsdp2"), property)
    assert "_from_accelerator_state" in inspect.signature(DeepSpeedPlugin.select).parameters


def test_transformers_saves_no_final_model_for_a_sharded_fsdp_state_dict():
    # _compat entry 15 (and DenseDPOTrainer._save_optimizer_and_scheduler, entry 16)
    from transformers import Trainer

    source = inspect.getsource(Trainer.save_model)
    assert 'if "FULL_STATE_DICT" in str(self.accelerator.state.fsdp_plugin.state_dict_type):' in source, (
        "transformers' FSDP save changed: check whether it now writes the model of a SHARDED_STATE_DICT run"
    )
    assert list(inspect.signature(Trainer._save).parameters) == ["self", "output_dir", "state_dict"]
    assert list(inspect.signature(Trainer._save_optimizer_and_scheduler).parameters) == ["self", "output_dir"]
    assert "self._save_optimizer_and_scheduler(output_dir)" in inspect.getsource(Trainer._save_checkpoint)


def test_torch_refuses_optimizer_states_without_never_stepped_parameters_until_they_are_materialized():
    # _compat entry 16: torch saves no state for a parameter Adam never stepped, then refuses such a checkpoint
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    from rlhfv._compat import materialize_missing_optimizer_state

    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"used": torch.nn.Linear(3, 2), "unused": torch.nn.Linear(3, 2)})
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    model["used"](torch.ones(1, 3)).sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    saved = get_optimizer_state_dict(model, optimizer)
    assert sorted(saved["state"]) == ["used.bias", "used.weight"]
    with pytest.raises(RuntimeError, match="Missing optimizer state for parameter 'unused.weight'"):
        set_optimizer_state_dict(model, torch.optim.AdamW(model.parameters(), lr=0.1), saved)

    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    used_state = {k: v.clone() for k, v in optimizer.state[model["used"].weight].items()}
    assert materialize_missing_optimizer_state(optimizer) == 2
    assert materialize_missing_optimizer_state(optimizer) == 0
    # Nothing moved (learning rate 0, weight decay included), the stepped parameters' state is untouched, and the
    # learning rate and gradients are back
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]) and param.grad is None, name
    for key, value in optimizer.state[model["used"].weight].items():
        assert torch.equal(value, used_state[key]), key
    assert optimizer.param_groups[0]["lr"] == 0.1
    new_state = optimizer.state[model["unused"].weight]
    assert not new_state["exp_avg"].any() and not new_state["exp_avg_sq"].any()
    saved = get_optimizer_state_dict(model, optimizer)
    set_optimizer_state_dict(model, torch.optim.AdamW(model.parameters(), lr=0.1), saved)  # loads now


def test_trl_gathers_a_sharded_head_itself_and_fsdp_reduces_units_left_unsharded():
    # _compat entry 17: TRL's `full_tensor()` gather does not reduce the head's gradient; an unsharded unit's is
    # reduced by FSDP's root post-backward callback
    import trl.trainer.utils as trl_utils
    from accelerate.utils.fsdp_utils import _find_final_norm
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.fsdp._fully_shard._fsdp_state import FSDPState

    from rlhfv.tiny_models import build_llava

    assert "weight = weight.full_tensor()" in inspect.getsource(trl_utils), "TRL's fused head gathers differently"
    callback = inspect.getsource(FSDPState._root_post_backward_final_callback)
    assert "fsdp_param_group.post_backward()" in callback
    assert callable(FSDPModule.unshard)
    # accelerate gives the LLaVA head a unit of its own (no final norm found beside it), the Llama's shares the norm's
    llava, _ = build_llava(build_tokenizer())
    assert _find_final_norm(llava) is None
    assert _find_final_norm(build_text_model(build_tokenizer())) is not None
