"""Arguments and plumbing shared by the benchmark commands (rlhfv.eval.bench_cli, rlhfv.eval.bench_score_cli)."""

from __future__ import annotations

from data_tools.errors import CommandError
from data_tools.settings import add_output_argument


def write_outputs(args, rep, details=None) -> None:
    from rlhfv.eval.io import write_json, write_jsonl

    if args.out:
        write_json(args.out, rep)
    if getattr(args, "details", None) and details is not None:
        write_jsonl(args.details, details)


def add_output_arguments(p) -> None:
    add_output_argument(p, help="write the report (JSON) here; `rlhfv eval report` reads it")
    p.add_argument("--details", default=None, help="write per-item results (JSONL) here")
    p.add_argument("--allow-missing", action="store_true", help="score the answered items and list the missing "
                   "ones in the report (default: a missing answer is an error)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace existing --output_dir/--details files")


def guard(function):
    """Run a command body, turning input and endpoint errors into one-line failures."""

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
