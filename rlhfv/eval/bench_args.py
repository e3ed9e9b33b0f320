"""Arguments and plumbing shared by the benchmark commands (rlhfv.eval.bench_cli, rlhfv.eval.bench_score_cli)."""

from __future__ import annotations

from dataclasses import dataclass, field

from data_tools.errors import CommandError
from data_tools.settings import (
    add_settings_arguments,
    check_choice,
    check_range,
    output_field,
    read_settings,
)


def write_outputs(args, rep, details=None) -> None:
    from rlhfv.eval.io import write_json, write_jsonl

    if args.out:
        write_json(args.out, rep)
    if getattr(args, "details", None) and details is not None:
        write_jsonl(args.details, details)


DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class BenchGenerationSettings:
    """Decoding settings of every benchmark's `generate` step (written next to the answers)."""

    model: str = field(
        default="",
        metadata={"required": True, "help": "Model folder: saved by `rlhfv train`, a base model, or a PEFT adapter."},
    )
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate() call."})
    max_new_tokens: int = field(default=512, metadata={"help": "Longest answer, in tokens."})
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy decoding."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature, with --do-sample."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold, with --do-sample."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling, with --do-sample; 0 = off."})
    num_beams: int = field(default=1, metadata={"help": "Beam search width (Object HalBench in RLHF-V used 3)."})
    seed: int = field(default=0, metadata={"help": "Torch seed for sampling."})
    prompt_suffix: str = field(default="", metadata={"help": "Text appended to every question."})
    device: str | None = field(default=None, metadata={"help": "cuda, cpu, ... (default: cuda if available)."})
    dtype: str = field(default="auto", metadata={"choices": DTYPES, "help": "Weights' dtype."})
    quiet: bool = field(default=False, metadata={"help": "No progress bar."})
    strict_paths: bool = field(
        default=False,
        metadata={
            "help": "Refuse images outside --images and the benchmark file's folder (as `rlhfv convert "
            "--strict-paths`)."
        },
    )

    def __post_init__(self):
        from rlhfv.generation.generate import check_generation_ranges

        check_generation_ranges(self)
        check_range("num_beams", self.num_beams, minimum=1)
        check_choice("dtype", self.dtype, DTYPES)


@dataclass
class ReportOutputSettings:
    """Where a scoring step writes its report, and whether a missing answer is an error."""

    out: str | None = output_field("Write the report (JSON) here; `rlhfv eval report` reads it.")
    details: str | None = field(default=None, metadata={"help": "Write per-item results (JSONL) here."})
    allow_missing: bool = field(
        default=False,
        metadata={
            "help": "Score the answered items and list the missing ones in the report (default: a missing answer "
            "is an error)."
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace existing --output_dir/--details files."})


def add_command(sub, name: str, settings_type, run, help_text: str, description=None, hidden_flags=None):
    """A benchmark step whose flags are `settings_type`'s fields; `run(settings)` gets the settings built."""
    description = description or (settings_type.__doc__ or "").strip() or None
    parser = sub.add_parser(name, help=help_text, description=description)
    add_settings_arguments(parser, settings_type)
    if hidden_flags is not None:
        hidden_flags(parser)
    parser.set_defaults(func=lambda arguments: guard(run)(read_settings(arguments, settings_type)[0]))
    return parser


def guard(function):
    """Run a command body on its settings, turning input and endpoint errors into one-line failures."""

    def run(args) -> int:
        from rlhfv.endpoint import EndpointError
        from rlhfv.eval.io import EvalInputError, check_inputs_are_text, check_report_outputs
        from rlhfv.eval.judge import JudgeError

        try:
            if hasattr(args, "overwrite"):  # the commands that write reports (not the resumable answer files)
                check_report_outputs(args)
            check_inputs_are_text(args)
            return function(args)
        except (EvalInputError, EndpointError, JudgeError) as error:
            raise CommandError(str(error)) from None

    return run


def refuse_unknown_answers(answers: dict, expected: set[str], questions_path) -> None:
    """An answer for an id the benchmark does not have means the wrong files were paired: refuse, naming it."""
    extra = [key for key in answers if key not in expected]
    if extra:
        first = answers[extra[0]]["_where"]
        raise CommandError(
            f"{first}: id {extra[0]!r} is not in {questions_path} ({len(extra)} such answers): wrong answer file?"
        )
