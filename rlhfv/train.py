"""Train with Dense DPO from a recipe: `rlhfv train --config RECIPE.yaml [--field value ...]`.

The same entry point runs as `python -m rlhfv.train` and under `accelerate launch -m rlhfv.train`. A recipe is a YAML
file whose keys are fields of three dataclasses, parsed by `trl.TrlParser` exactly like TRL's own scripts:
`DenseDPOScriptArguments` (data), `DenseDPOConfig` (every `trl.DPOConfig` / `transformers.TrainingArguments` field
plus gamma, score_average, ...) and `trl.ModelConfig` (model, dtype, LoRA, quantization). Command-line flags override
the recipe. `rlhfv train --help` lists them all.

`model_name_or_path` is a Hub id or a local folder (loaded by TRL as an image-text-to-text or causal LM, from its
config), or `tiny:llava`, `tiny:qwen2-vl`, `tiny:llama` for a small model and tokenizer built in-process from
`rlhfv.tiny_models` (no download; the demo recipe and the tests use it).

Steps: parse and check the recipe, load the data (converting raw input first), load the model, train (resuming when
asked), save model + processor + model card + metrics into `output_dir`, evaluate, push to the Hub.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path

from data_tools.errors import CommandError


logger = logging.getLogger("rlhfv.train")

DESCRIPTION = (
    "Train a model with Dense DPO from a recipe: rlhfv train --config RECIPE.yaml [--field value ...]. Every field of "
    "the recipe can be given or overridden on the command line; all TRL / transformers training options work."
)


@dataclass
class Recipe:
    """A parsed and checked recipe."""

    script_args: typing.Any
    training_args: typing.Any
    model_args: typing.Any
    path: str | None = None
    # The fields set by the recipe file or the command line, with their final values
    resolved: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------
# Command line


def register(subparsers) -> None:
    # No help of its own: `--help` reaches TRL's parser (through `train_argv`), which lists every field
    parser = subparsers.add_parser(
        "train", help="train with Dense DPO from a recipe (all TRL options work)", add_help=False
    )
    parser.set_defaults(func=_run_from_cli)


def _run_from_cli(args) -> int:
    return main(args.train_argv, prog="rlhfv train")


def make_parser(prog: str | None = None):
    from trl import ModelConfig, TrlParser

    from rlhfv.config import DenseDPOConfig
    from rlhfv.script_args import DenseDPOScriptArguments

    return TrlParser(
        (DenseDPOScriptArguments, DenseDPOConfig, ModelConfig),
        prog=prog,
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def main(argv: list[str] | None = None, prog: str = "python -m rlhfv.train", callbacks: list | None = None) -> int:
    """Parse `argv` (a recipe and overrides) and train. `callbacks` are extra `TrainerCallback`s."""
    argv = list(sys.argv[1:] if argv is None else argv)
    recipe = parse_recipe(argv, prog=prog)
    run(recipe, command=_command_line(prog, argv), callbacks=callbacks)
    return 0


def _command_line(prog: str, argv: list[str]) -> str:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        return f"accelerate launch --num_processes {world_size} -m rlhfv.train {shlex.join(argv)}"
    return f"{prog} {shlex.join(argv)}".strip()


# ----------------------------------------------------------------------------------------------------------------
# Recipe parsing and checking


def parse_recipe(argv: list[str], prog: str | None = None) -> Recipe:
    """Parse a recipe and command-line overrides into the three dataclasses, with one-line errors naming the field.

    TrlParser sets the recipe's values as parser defaults; argparse converts string defaults with the field's type,
    but leaves other YAML values (numbers, lists, booleans) as they are, so they are checked here against the
    dataclass annotations first.
    """
    import yaml

    parser = make_parser(prog)
    path = None
    file_values: dict = {}
    if "--config" in argv:
        index = argv.index("--config")
        if index + 1 >= len(argv):
            raise CommandError("--config needs the path of a recipe YAML file")
        path = argv[index + 1]
        if not os.path.isfile(path):
            raise CommandError(f"recipe not found: {path}")
        try:
            with open(path) as handle:
                file_values = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            raise CommandError(f"{path}: not valid YAML: {error}") from error
        if not isinstance(file_values, dict):
            raise CommandError(f"{path}: a recipe must be a YAML mapping of field: value")
        check_recipe_values(parser, {k: v for k, v in file_values.items() if k != "env"}, source=path)

    try:
        script_args, training_args, model_args = parser.parse_args_and_config(argv)
    except (ValueError, TypeError) as error:
        raise CommandError(f"{path or 'arguments'}: {error}") from error
    except ImportError as error:
        raise CommandError(f"{path or 'arguments'}: {error} (DeepSpeed: pip install -e '.[deepspeed]')") from error

    _apply_thread_count()
    recipe = Recipe(script_args, training_args, model_args, path=path)
    given = [key for key in file_values if key != "env"] + _flags_given(parser, argv)
    recipe.resolved = resolve_values(recipe, given)
    return recipe


def _apply_thread_count() -> None:
    """Honour OMP_NUM_THREADS set by the recipe's `env:` section, which TrlParser applies after torch started."""
    value = os.environ.get("OMP_NUM_THREADS")
    if value and value.isdigit() and int(value) > 0:
        import torch

        if torch.get_num_threads() != int(value):
            torch.set_num_threads(int(value))


def check_recipe_values(parser, values: dict, source: str) -> None:
    """Check every recipe key against the parser: known field, value of the field's type (and choice)."""
    import difflib

    known = _field_annotations(parser)
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise CommandError(f"{source}: unknown field `{key}`{hint}; `rlhfv train --help` lists the fields")
        action = parser._option_string_actions.get(f"--{key}")
        if isinstance(value, str) and action is not None:
            _check_string_value(key, value, action, source)
        elif value is not None and not _matches(value, known[key]):
            raise CommandError(
                f"{source}: field `{key}` expects {_type_name(known[key])}, got {type(value).__name__} {value!r}"
            )


def _check_string_value(key, value, action, source):
    converted = value
    if action.type is not None and action.type is not str:
        try:
            converted = action.type(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
            raise CommandError(f"{source}: field `{key}`: invalid value {value!r} ({error})") from error
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(str(getattr(c, "value", c)) for c in action.choices)
        raise CommandError(f"{source}: field `{key}`: {value!r} is not one of: {choices}")


def _field_annotations(parser) -> dict:
    annotations = {}
    for dataclass_type in parser.dataclass_types:
        try:
            hints = typing.get_type_hints(dataclass_type)
        except Exception:  # an annotation that cannot be resolved is not checked
            hints = {}
        for item in fields(dataclass_type):
            if item.init:
                annotations[item.name] = hints.get(item.name, typing.Any)
    return annotations


def _matches(value, annotation) -> bool:
    """Whether a YAML value fits a dataclass annotation; lenient where the annotation is unusual."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is list or annotation is list:
        return isinstance(value, list) and (not args or all(_matches(item, args[0]) for item in value))
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in args
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return isinstance(value, annotation) or value in {member.value for member in annotation}
    return True


def _type_name(annotation) -> str:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _flags_given(parser, argv: list[str]) -> list[str]:
    dests = []
    for token in argv:
        if not token.startswith("--") or token == "--config":
            continue
        action = parser._option_string_actions.get(token.split("=", 1)[0])
        if action is not None and action.dest != "help":
            dests.append(action.dest)
    return dests


def resolve_values(recipe: Recipe, keys: list[str]) -> dict:
    """Final values of the given fields, in a YAML-friendly form (the recipe as it actually ran)."""
    resolved = {}
    for key in dict.fromkeys(keys):
        for args in (recipe.script_args, recipe.training_args, recipe.model_args):
            if hasattr(args, key):
                resolved[key] = _plain(getattr(args, key))
                break
    return resolved


def _plain(value):
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# ----------------------------------------------------------------------------------------------------------------
# Model


def load_model(model_args, training_args, use_peft: bool):
    """Return `(model, ref_model, processing_class)`.

    A Hub id or local folder is returned as a string: TRL loads it (image-text-to-text or causal LM, from its config),
    its processor, and, for full fine-tuning, the reference model. A `tiny:` model is built here, with a reference
    copy built from the same seed (TRL cannot reload an in-memory model by name).
    """
    from rlhfv.script_args import TINY_MODEL_PREFIX, TINY_MODELS

    name = model_args.model_name_or_path
    if not name:
        raise CommandError(
            "`model_name_or_path` is not set: give a Hub id, a local folder, or a tiny in-process model "
            f"({', '.join(TINY_MODEL_PREFIX + kind for kind in TINY_MODELS)})"
        )
    if not name.startswith(TINY_MODEL_PREFIX):
        model_init_kwargs = {
            "revision": model_args.model_revision,
            "attn_implementation": model_args.attn_implementation,
            "dtype": model_args.dtype,
        }
        # Values the recipe sets in `model_init_kwargs` win over ModelConfig's
        training_args.model_init_kwargs = {**model_init_kwargs, **(training_args.model_init_kwargs or {})}
        return name, None, None

    kind = name[len(TINY_MODEL_PREFIX) :]
    if kind not in TINY_MODELS:
        raise CommandError(f"`model_name_or_path`: unknown tiny model {name!r}; choose one of {list(TINY_MODELS)}")
    if model_args.load_in_4bit or model_args.load_in_8bit:
        raise CommandError("`load_in_4bit` / `load_in_8bit` need a model loaded from the Hub or disk, not a tiny: one")
    model, processor = _build_tiny(kind, training_args.seed)
    ref_model = None if use_peft else _build_tiny(kind, training_args.seed)[0]
    if model_args.dtype in ("bfloat16", "float16", "float32"):
        import torch

        dtype = getattr(torch, model_args.dtype)
        model = model.to(dtype)
        ref_model = ref_model.to(dtype) if ref_model is not None else None
    # An in-memory model has no `model_init_kwargs` to apply; TRL warns if they are set
    training_args.model_init_kwargs = None
    return model, ref_model, processor


def _build_tiny(kind: str, seed: int):
    from rlhfv import tiny_models

    if kind == "llava":
        return tiny_models.build_llava(tiny_models.build_tokenizer(), seed=seed)
    if kind == "qwen2-vl":
        return tiny_models.build_qwen2_vl(tiny_models.build_tokenizer(image_token="<|image_pad|>"), seed=seed)
    tokenizer = tiny_models.build_tokenizer()
    return tiny_models.build_text_model(tokenizer, seed=seed), tokenizer


# ----------------------------------------------------------------------------------------------------------------
# Training


def resolve_checkpoint(training_args) -> str | None:
    """`resume_from_checkpoint`: true (or "true") = the last `checkpoint-*` in `output_dir`; a path = that folder."""
    value = training_args.resume_from_checkpoint
    if value is None or value is False or str(value).lower() in ("", "false", "no", "none", "0"):
        return None
    if value is True or str(value).lower() in ("true", "yes", "1", "last"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
        if last is None:
            raise CommandError(
                f"`resume_from_checkpoint: true` but {training_args.output_dir} (`output_dir`) holds no checkpoint-* "
                "folder: start without it, or give the checkpoint's path"
            )
        return last
    if not os.path.isdir(value):
        raise CommandError(f"`resume_from_checkpoint`: {value} is not a checkpoint folder")
    return str(value)


def _check_distributed_backend(training_args) -> None:
    uses_deepspeed = bool(training_args.deepspeed) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    if uses_deepspeed:
        try:
            import deepspeed  # noqa: F401
        except ImportError as error:
            raise CommandError(
                "this launch uses DeepSpeed (ZeRO), which is not installed: pip install -e '.[deepspeed]'"
            ) from error


def _setup_logging(training_args) -> None:
    level = logging.INFO if training_args.process_index == 0 else logging.WARNING
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", stream=sys.stdout
    )
    logging.getLogger("rlhfv").setLevel(level)
    logging.getLogger("data_tools").setLevel(level)


def _wandb_callback(recipe: Recipe, command: str):
    """A callback that adds the recipe to the W&B run's config (transformers' WandbCallback logs the rest)."""
    from transformers import TrainerCallback

    config = {
        "recipe": recipe.resolved,
        "recipe_file": recipe.path,
        "command": command,
        "script_args": _plain(asdict(recipe.script_args)),
        "model_args": _plain(asdict(recipe.model_args)),
    }

    class RecipeToWandbCallback(TrainerCallback):
        # Runs after WandbCallback.on_train_begin (reporting callbacks come first), when `wandb.run` exists
        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            import wandb

            if wandb.run is not None:
                wandb.config.update(config, allow_val_change=True)

    return RecipeToWandbCallback()


def _import_callback(spec: str):
    """`module:Class` -> an instance of that TrainerCallback (the recipe's `callbacks`)."""
    import importlib

    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)()
    except (ImportError, AttributeError, ValueError, TypeError, FileNotFoundError) as error:
        raise CommandError(f"`callbacks`: cannot build {spec!r} (expected `module:Class`): {error}") from error


def build_trainer(recipe: Recipe, command: str = "", callbacks: list | None = None):
    """Load data and model and build the trainer (with the Dense DPO model card), ready to `train()`."""
    from trl import get_peft_config, get_quantization_config

    from rlhfv.data import load_preference_data
    from rlhfv.liger import apply_liger_to_reference
    from rlhfv.model_card import DenseModelCardMixin, RunRecord
    from rlhfv.trainer import DenseDPOTrainer

    script_args, training_args, model_args = recipe.script_args, recipe.training_args, recipe.model_args
    train_dataset, eval_dataset = load_preference_data(script_args, training_args)
    logger.info("Training rows: %d; evaluation rows: %s", len(train_dataset), eval_dataset and len(eval_dataset))

    peft_config = get_peft_config(model_args)
    model, ref_model, processor = load_model(model_args, training_args, use_peft=peft_config is not None)
    extra = {}
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None:
        extra["quantization_config"] = quantization_config
    callbacks = list(callbacks or []) + [_import_callback(spec) for spec in script_args.callbacks]
    if "wandb" in (training_args.report_to or []):
        callbacks.insert(0, _wandb_callback(recipe, command))

    class DenseDPORecipeTrainer(DenseModelCardMixin, DenseDPOTrainer):
        """DenseDPOTrainer whose model cards carry the Dense DPO section."""

    trainer = DenseDPORecipeTrainer(
        model=model,
        ref_model=ref_model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=callbacks,
        **extra,
    )
    trainer.run_record = RunRecord(
        base_model=model_args.model_name_or_path,
        dataset=script_args.dataset_name,
        dataset_format=script_args.dataset_format,
        command=command,
        recipe=recipe.resolved,
    )
    if script_args.ignore_bias_buffers:
        import torch

        # DDP cannot broadcast boolean buffers (transformers#22482)
        trainer.model._ddp_params_and_buffers_to_ignore = [
            name for name, buffer in trainer.model.named_buffers() if buffer.dtype == torch.bool
        ]
    apply_liger_to_reference(trainer)
    return trainer


def run(recipe: Recipe, command: str = "", callbacks: list | None = None):
    """Train the recipe end to end; returns the trainer."""
    import yaml

    from rlhfv.hub import check_hub_settings, push_final_model
    from rlhfv.liger import check_liger_can_run

    script_args, training_args, model_args = recipe.script_args, recipe.training_args, recipe.model_args
    _setup_logging(training_args)
    logger.info("Recipe: %s", recipe.path or "(command line only)")
    logger.info("Script arguments: %s", script_args)
    logger.info("Model arguments: %s", model_args)
    logger.info("Training arguments: %s", training_args)

    # Everything that can be checked without training fails here, before minutes of loading
    check_liger_can_run(training_args)
    check_hub_settings(training_args)
    _check_distributed_backend(training_args)
    checkpoint = resolve_checkpoint(training_args)

    trainer = build_trainer(recipe, command=command, callbacks=callbacks)
    state = trainer.accelerator.state
    logger.info("Training on %d processes, backend %s, device %s", state.num_processes, state.backend, state.device)
    if trainer.is_world_process_zero():
        os.makedirs(training_args.output_dir, exist_ok=True)
        Path(training_args.output_dir, "recipe.yaml").write_text(yaml.safe_dump(recipe.resolved, sort_keys=False))

    if checkpoint:
        logger.info("Resuming from %s", checkpoint)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()

    trainer.save_model(training_args.output_dir)
    logger.info("Saved the model and processor to %s", training_args.output_dir)

    if trainer.eval_dataset is not None:
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)

    # After evaluation, so that the card's final metrics include it
    trainer.create_model_card(model_name=Path(training_args.output_dir).name)
    if training_args.push_to_hub:
        push_final_model(trainer, dataset_name=script_args.dataset_name)

    if "wandb" in (training_args.report_to or []) and trainer.is_world_process_zero():
        import wandb

        # transformers' WandbCallback leaves its run open until the process exits; close it with the training so
        # that the run files are complete (and a notebook or test can start the next run)
        if wandb.run is not None:
            wandb.finish()
    _release_data_parallel_wrapper(trainer)
    if hasattr(trainer, "end"):
        # Finishes accelerate's trackers and the process group
        trainer.end()
    return trainer


def _release_data_parallel_wrapper(trainer) -> None:
    """Free the DDP wrapper while the process group is still registered, before `trainer.end()` destroys it.

    DDP's reducer holds the gloo process group. If the reducer is the group's last owner, the group's destructor (which
    joins gloo's worker threads) runs from the reducer's destructor with the GIL held, while a worker thread may need
    the GIL to free the tensors of its last collective: a deadlock at exit, seen in about one in four 2-process CPU
    runs with torch 2.13. Freed here, the reducer is not the last owner; `destroy_process_group` then drops the group
    from Python, whose binding releases the GIL before joining the threads.
    """
    import gc

    from torch.nn.parallel import DistributedDataParallel

    if not isinstance(trainer.model_wrapped, DistributedDataParallel):
        return
    trainer.model_wrapped = trainer.model
    trainer.accelerator.free_memory()
    gc.collect()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CommandError as error:
        print(f"rlhfv train: error: {error}", file=sys.stderr)
        sys.exit(1)
