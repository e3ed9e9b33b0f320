"""Train with Dense DPO from a recipe: `rlhfv train --config RECIPE.yaml [--field value ...]`.

The same entry point runs as `python -m rlhfv.train` and under `accelerate launch -m rlhfv.train`. `main` has the
shape of TRL's `scripts/dpo.py`: the three parsed dataclasses in, a trained, saved, evaluated (and pushed) model out.
Recipe parsing and checking live in `rlhfv.recipe`, data loading in `rlhfv.data`, model loading in
`rlhfv.model_loading`, the model card in the trainer itself.

`model_name_or_path` is a Hub id or a local folder (loaded by TRL as an image-text-to-text or causal LM, from its
config), or `tiny:llava`, `tiny:qwen2-vl`, `tiny:llama` for a small model and tokenizer built in-process from
`rlhfv.tiny_models` (no download; the demo recipe and the tests use it).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path

from data_tools.errors import CommandError
from rlhfv.recipe import Recipe, parse_recipe


logger = logging.getLogger("rlhfv.train")


def register(subparsers) -> None:
    # No help of its own: `--help` reaches TRL's parser (through `train_argv`), which lists every field
    parser = subparsers.add_parser(
        "train", help="train with Dense DPO from a recipe (all TRL options work)", add_help=False
    )
    parser.set_defaults(func=lambda args: cli_main(args.train_argv, prog="rlhfv train"))


def cli_main(argv: list[str] | None = None, prog: str = "python -m rlhfv.train", callbacks: list | None = None) -> int:
    """Parse `argv` (a recipe and overrides) and train. `callbacks` are extra `TrainerCallback`s."""
    argv = list(sys.argv[1:] if argv is None else argv)
    run(parse_recipe(argv, prog=prog), command=_command_line(prog, argv), callbacks=callbacks)
    return 0


def run(recipe: Recipe, command: str = "", callbacks: list | None = None):
    """Train a parsed recipe; the model card records the command and the recipe as it ran. Returns the trainer."""
    from rlhfv.model_card import RunRecord

    record = RunRecord(
        base_model=recipe.model_args.model_name_or_path,
        dataset=recipe.script_args.dataset_name,
        dataset_format=recipe.script_args.dataset_format,
        command=command,
        recipe=recipe.resolved,
        recipe_file=recipe.path,
    )
    return main(recipe.script_args, recipe.training_args, recipe.model_args, callbacks=callbacks, run_record=record)


def main(script_args, training_args, model_args, callbacks: list | None = None, run_record=None):
    """Load data and model, train (resuming when asked), save model + processor + card + metrics, evaluate, push."""
    from rlhfv.model_card import RunRecord

    _setup_logging(training_args)
    record = run_record or RunRecord(
        base_model=model_args.model_name_or_path,
        dataset=script_args.dataset_name,
        dataset_format=script_args.dataset_format,
    )
    logger.info("Recipe: %s", record.recipe_file or "(command line only)")
    checkpoint = _check_before_loading(script_args, training_args)
    trainer = _build_trainer(script_args, training_args, model_args, callbacks, record)
    _train_and_save(trainer, script_args, training_args, record, checkpoint)
    _finish(trainer)
    if trainer.is_world_process_zero():
        _print_result(trainer, training_args.output_dir)
    return trainer


def _check_before_loading(script_args, training_args) -> str | None:
    """Everything that can be checked without training fails here, before minutes of loading; the checkpoint to
    resume from (None for a fresh run)."""
    from rlhfv.hub import check_hub_settings
    from rlhfv.liger import check_liger_can_run
    from rlhfv.resume import resolve_checkpoint, warn_on_changed_settings

    check_liger_can_run(training_args)
    check_hub_settings(training_args)
    _check_distributed_backend(training_args)
    checkpoint = resolve_checkpoint(training_args)
    if checkpoint:
        warn_on_changed_settings(checkpoint, training_args, script_args.dataset_name)
    return checkpoint


def _build_trainer(script_args, training_args, model_args, callbacks: list | None, record):
    """The data, the model (and reference) and the `DenseDPOTrainer` with the recipe's callbacks."""
    from trl import get_peft_config, get_quantization_config

    from rlhfv._compat import ignore_bool_buffers_in_ddp
    from rlhfv.callbacks import import_callback, recipe_to_wandb_callback, run_file_callback
    from rlhfv.data import load_preference_data
    from rlhfv.liger import apply_liger_to_reference
    from rlhfv.model_loading import load_model
    from rlhfv.trainer import DenseDPOTrainer

    train_dataset, eval_dataset = load_preference_data(script_args, training_args)
    # only once the checks and the data have passed: a mistake must not leave an output folder behind
    if training_args.process_index == 0:
        # the resolved configuration (about 120 lines) goes to the output folder and its log, not the screen
        from rlhfv.run_log import log_configuration, open_run_log

        log_file = open_run_log(training_args.output_dir)
        config_file = log_configuration(
            training_args.output_dir, script_args=script_args, model_args=model_args, training_args=training_args
        )
        logger.info("Resolved configuration: %s (secrets redacted); log: %s", config_file, log_file)
    logger.info("Training rows: %d; evaluation rows: %s", len(train_dataset), eval_dataset and len(eval_dataset))
    peft_config = get_peft_config(model_args)
    model, ref_model, processor = load_model(model_args, training_args, use_peft=peft_config is not None)
    callbacks = [
        *(callbacks or []),
        *(import_callback(spec) for spec in script_args.callbacks),
        run_file_callback(record),
    ]
    if "wandb" in (training_args.report_to or []):
        callbacks.insert(0, recipe_to_wandb_callback(record, script_args, model_args))
    trainer = DenseDPOTrainer(
        model=model,
        ref_model=ref_model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=callbacks,
        quantization_config=get_quantization_config(model_args),
    )
    trainer.run_record = record
    if script_args.ignore_bias_buffers:
        ignore_bool_buffers_in_ddp(trainer.model)
    apply_liger_to_reference(trainer)
    return trainer


def _train_and_save(trainer, script_args, training_args, record, checkpoint: str | None) -> None:
    """Train (resuming from `checkpoint`), save the model, metrics and state, evaluate, write the card, push."""
    import yaml

    from rlhfv.hub import push_final_model
    from rlhfv.trainer import TrainingDivergedError

    state = trainer.accelerator.state
    logger.info("Training on %d processes, backend %s, device %s", state.num_processes, state.backend, state.device)
    if trainer.is_world_process_zero():
        os.makedirs(training_args.output_dir, exist_ok=True)
        Path(training_args.output_dir, "recipe.yaml").write_text(yaml.safe_dump(record.recipe, sort_keys=False))
    if checkpoint:
        logger.info("Resuming from %s", checkpoint)
    try:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
    except TrainingDivergedError as error:
        raise CommandError(str(error)) from error
    _report_metrics(trainer, "train", train_result.metrics)
    trainer.save_state()
    trainer.save_model(training_args.output_dir)
    logger.info("Saved the model and processor to %s", training_args.output_dir)

    if trainer.eval_dataset is not None:
        _report_metrics(trainer, "eval", trainer.evaluate())
    # After evaluation, so that the card's final metrics include it
    trainer.create_model_card(model_name=Path(training_args.output_dir).name)
    if training_args.push_to_hub:
        push_final_model(trainer, dataset_name=script_args.dataset_name)


def _report_metrics(trainer, split: str, metrics: dict) -> None:
    """Metrics to <split>_results.json and train.log; one line of them on the screen."""
    from rlhfv.run_log import log_metrics, metrics_line

    trainer.save_metrics(split, metrics)
    if trainer.is_world_process_zero():
        log_metrics(split, metrics)
        print(metrics_line(split, metrics, str(Path(trainer.args.output_dir) / f"{split}_results.json")), flush=True)


def _print_result(trainer, output_dir: str) -> None:
    """The run's last lines: each callback's `final_report` (e.g. a before/after table), then where things are."""
    for callback in trainer.callback_handler.callbacks:
        report = getattr(callback, "final_report", None)
        if report:
            print(report, flush=True)
    card = Path(output_dir) / "README.md"
    print(f"model saved to {output_dir}" + (f"; model card: {card}" if card.is_file() else ""), flush=True)


def _finish(trainer) -> None:
    """Close the W&B run and the process group cleanly."""
    from rlhfv._compat import release_ddp_wrapper

    if "wandb" in (trainer.args.report_to or []) and trainer.is_world_process_zero():
        import wandb

        # transformers' WandbCallback leaves its run open until the process exits; close it with the training so
        # that the run files are complete (and a notebook or test can start the next run)
        if wandb.run is not None:
            wandb.finish()
    release_ddp_wrapper(trainer)
    if hasattr(trainer, "end"):
        # Finishes accelerate's trackers and the process group
        trainer.end()


def _command_line(prog: str, argv: list[str]) -> str:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        return f"accelerate launch --num_processes {world_size} -m rlhfv.train {shlex.join(argv)}"
    return f"{prog} {shlex.join(argv)}".strip()


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


if __name__ == "__main__":
    try:
        sys.exit(cli_main())
    except CommandError as error:
        print(f"rlhfv train: error: {error}", file=sys.stderr)
        sys.exit(1)
