"""`rlhfv eval {generate,best-of-n,chair,judge}` and the benchmarks (`rlhfv.eval.bench_cli`): measure hallucination.

    rlhfv eval generate  --model PATH --prompts prompts.jsonl --output_dir answers.jsonl
    rlhfv eval best-of-n --model PATH --reference SFT_PATH --prompts prompts.jsonl --output_dir answers.jsonl -n 10
    rlhfv eval chair     --answers answers.jsonl --objects objects.json [--output_dir report.json]
    rlhfv eval judge     --answers mmhal_answers.json --model gpt-4o [--base-url URL] [--output_dir report.json]
    rlhfv eval {mmhal,object-halbench,amber,pope,report} ...   (see rlhfv/eval/bench_cli.py)

Heavy imports happen inside the commands, so `rlhfv --help` stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from data_tools.errors import CommandError
from data_tools.settings import (
    SettingError,
    add_settings_arguments,
    check_choice,
    check_range,
    output_field,
    read_settings,
)
from rlhfv.endpoint_settings import EndpointSettings


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="measure hallucination: generate answers, CHAIR, judge scoring, best-of-N, MMHal-Bench, Object "
        "HalBench, AMBER, POPE, reports",
        description="Measure hallucination. `generate` answers a prompt set; `chair` scores object hallucination "
        "against ground-truth objects; `judge` rates answers 0-6 with an OpenAI-compatible judge (MMHal-Bench "
        "style); `best-of-n` samples N answers and keeps the one the policy's implicit reward prefers. `mmhal`, "
        "`object-halbench`, `amber` and `pope` run the published benchmarks from their own files; `report` puts "
        "several models' results in one table and plot.",
    )
    commands = parser.add_subparsers(dest="eval_command", metavar="EVAL_COMMAND")
    commands.required = True
    _register_generate(commands, "generate", best_of_n=False)
    _register_generate(commands, "best-of-n", best_of_n=True)
    _register_chair(commands)
    _register_judge(commands)
    from rlhfv.eval import bench_cli

    bench_cli.register(commands)


DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class GenerateSettings:
    """`rlhfv eval generate`: answers for a prompt set, batched and resumable."""

    model: str = field(
        default="",
        metadata={"required": True, "help": "Model folder: saved by `rlhfv train`, a base model, or a PEFT adapter."},
    )
    prompts: str = field(
        default="",
        metadata={
            "required": True,
            "help": "JSONL or JSON list of {id, image, question}; image paths are relative to the prompt file's "
            "folder.",
        },
    )
    out: str = output_field("Answers JSONL (appended to; ids already there are skipped).", required=True, default="")
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate() call."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest answer, in tokens."})
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy decoding."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (> 0; used with sampling)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold in (0, 1]."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling, 0 = off."})
    seed: int = field(default=0, metadata={"help": "Torch seed for sampling."})
    device: str | None = field(default=None, metadata={"help": "cuda, cpu, ... (default: cuda if available)."})
    dtype: str = field(default="auto", metadata={"choices": DTYPES, "help": "Weights' dtype."})
    best_of: int = field(
        default=1,
        metadata={
            "help": "Sample N answers and keep the best by implicit reward (as `rlhfv eval best-of-n`; 1 = off)."
        },
    )
    reference: str | None = field(
        default=None,
        metadata={
            "help": "Best-of-N reference model folder (default: for a PEFT adapter, its base model with the adapter "
            "disabled)."
        },
    )
    beta: float = field(default=0.1, metadata={"help": "Best-of-N reward scale (RLAIF-V's DPO beta)."})
    strict_paths: bool = field(
        default=False,
        metadata={
            "help": "Refuse image paths that lead outside the prompts file's folder (as `rlhfv convert "
            "--strict-paths`)."
        },
    )
    quiet: bool = field(default=False, metadata={"help": "No progress bar."})

    def __post_init__(self):
        from rlhfv.generation.generate import check_generation_ranges

        check_generation_ranges(self)
        check_range("best_of", self.best_of, minimum=1)
        check_range("beta", self.beta, above=0)
        check_choice("dtype", self.dtype, DTYPES)

    def sampling(self) -> bool:
        return self.do_sample or self.best_of > 1


@dataclass
class BestOfNSettings(GenerateSettings):
    """`rlhfv eval best-of-n`: RLAIF-V's self-feedback at inference; always samples."""

    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature (> 0)."})
    best_of: int = field(default=10, metadata={"aliases": ("-n",), "help": "Answers sampled per prompt."})

    def sampling(self) -> bool:
        return True


def _register_generate(commands, name: str, best_of_n: bool) -> None:
    if best_of_n:
        help_text = "sample N answers per prompt and keep the one with the highest implicit reward (RLAIF-V)"
        description = (
            "Best-of-N with self-feedback (RLAIF-V): sample N answers per prompt and keep the one with the highest "
            "length-normalised implicit reward (beta / T) * sum_t log(pi(y_t) / pi_ref(y_t)) of the policy against "
            "its reference. All candidates and their rewards are written too."
        )
    else:
        help_text = "generate answers for a prompt set (JSONL {id, image, question}), batched and resumable"
        description = (
            "Generate answers for a prompt set with a trained or base model and write them as JSONL {id, image, "
            "question, answer}. Ids already in the output file are skipped, so an interrupted run resumes."
        )
    p = commands.add_parser(name, help=help_text, description=description)
    settings = BestOfNSettings if best_of_n else GenerateSettings
    add_settings_arguments(p, settings)
    p.set_defaults(func=_run_generate, settings_type=settings)


def _run_generate(arguments) -> int:
    from rlhfv.eval.io import EvalInputError
    from rlhfv.generation.generate import GenerationOptions, generate_answers

    (args,) = read_settings(arguments, arguments.settings_type)
    options = GenerationOptions(
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        do_sample=args.sampling(),
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        seed=args.seed,
        best_of=args.best_of,
        beta=args.beta,
    )
    try:
        counts = generate_answers(
            args.model,
            args.prompts,
            args.out,
            options,
            args.reference,
            args.device,
            args.dtype,
            not args.quiet,
            strict_paths=args.strict_paths,
        )
    except EvalInputError as error:
        raise CommandError(str(error)) from None
    print(
        f"{counts['generated']} answers written to {args.out} "
        f"({counts['skipped']} of {counts['prompts']} prompts were already answered)"
    )
    return 0


@dataclass
class ChairSettings:
    """`rlhfv eval chair`: object hallucination against ground-truth objects."""

    answers: str = field(
        default="",
        metadata={"required": True, "help": "Answers JSONL (from `rlhfv eval generate`): id, image, answer."},
    )
    objects: str = field(
        default="",
        metadata={
            "required": True,
            "help": "Ground truth: COCO instances annotations JSON, or JSON {image path or id: [object names]} (e.g. "
            "the synthetic world's objects.json).",
        },
    )
    synonyms: str | None = field(
        default=None,
        metadata={
            "help": "Your own synonym table, JSON {class: [surface forms]} (default: the built-in table for the 80 "
            "COCO classes)."
        },
    )
    out: str | None = output_field("Write the report (JSON) here.")
    details: str | None = field(default=None, metadata={"help": "Write per-answer mentions (JSONL) here."})
    overwrite: bool = field(default=False, metadata={"help": "Replace existing --output_dir/--details files."})
    # last: from this line on, `field` in the class body is this attribute, not dataclasses.field
    field: str = field(default="answer", metadata={"help": "The answer field."})

    def __post_init__(self):
        if not self.field:
            raise SettingError("`field` must name the answer field; got an empty name")


def _register_chair(commands) -> None:
    p = commands.add_parser(
        "chair",
        help="object hallucination (CHAIR_s, CHAIR_i, recall) against ground-truth objects",
        description="Object hallucination, Object HalBench style. Finds the COCO objects each answer mentions "
        "(synonym table, whole words, longest match first; negations count as mentions) and reports CHAIR_s "
        "(responses with a hallucinated object / responses mentioning any object), CHAIR_i (hallucinated mentions "
        "/ all mentions), recall of ground-truth objects, mean answer length and per-class counts.",
    )
    add_settings_arguments(p, ChairSettings)
    p.set_defaults(func=_run_chair)


def _run_chair(arguments) -> int:
    from rlhfv.eval.chair import ObjectExtractor, format_report, load_ground_truth, load_synonyms, score_answers
    from rlhfv.eval.io import (
        EvalInputError,
        check_inputs_are_text,
        check_report_outputs,
        read_rows,
        write_json,
        write_jsonl,
    )

    (args,) = read_settings(arguments, ChairSettings)
    check_report_outputs(args)
    try:
        check_inputs_are_text(args)
        extractor = ObjectExtractor(load_synonyms(args.synonyms) if args.synonyms else None)
        truth = load_ground_truth(args.objects, extractor)
        report, details = score_answers(read_rows(args.answers), truth, extractor, args.field)
    except EvalInputError as error:
        raise CommandError(str(error)) from None
    report = {"answers": str(args.answers), "objects": str(args.objects), **report}
    # the numbers `rlhfv eval report` puts in its table (percent, as the benchmark reports give them)
    report["headline"] = {
        f"CHAIR {name}": None if report.get(key) is None else 100 * report[key]
        for name, key in (("CHAIR_s", "chair_s"), ("CHAIR_i", "chair_i"), ("recall", "recall"))
    }
    print(format_report(report))
    if args.out:
        write_json(args.out, report)
    if args.details:
        write_jsonl(args.details, details)
    return 0


@dataclass
class JudgeSettings(EndpointSettings):
    """`rlhfv eval judge`: MMHal-Bench style 0-6 ratings (the endpoint's own flags: rlhfv/endpoint_settings.py)."""

    answers: str = field(
        default="",
        metadata={
            "required": True,
            "help": "JSONL or JSON list of {id, question, answer, image_content, reference, question_type?}; "
            "MMHal-Bench's own response file (model_answer, gt_answer) works as is.",
        },
    )
    prompt_file: str | None = field(
        default=None,
        metadata={
            "help": "Judge prompt with placeholders {image_content} {question} {reference} {answer}, e.g. "
            "MMHal-Bench's published one (default: rlhfv's rubric)."
        },
    )
    out: str | None = output_field("Write the summary (JSON) here.")
    details: str | None = field(default=None, metadata={"help": "Write per-answer ratings and replies (JSONL) here."})
    overwrite: bool = field(default=False, metadata={"help": "Replace existing --output_dir/--details files."})
    quiet: bool = field(default=False, metadata={"help": "No progress bar."})


def _register_judge(commands) -> None:
    from rlhfv.endpoint_settings import refuse_api_key_flag

    p = commands.add_parser(
        "judge",
        help="MMHal-Bench style 0-6 ratings from an OpenAI-compatible judge model",
        description="Rate each answer 0-6 against the image content and a reference answer with a judge model "
        "behind any OpenAI-compatible chat endpoint, and report the mean score and the hallucination rate "
        "(share rated below 3), overall and per question type. Replies are cached on disk, so reruns are free.",
    )
    add_settings_arguments(p, JudgeSettings)
    refuse_api_key_flag(p)
    p.set_defaults(func=_run_judge)


def _run_judge(arguments) -> int:
    from rlhfv.endpoint import EndpointError
    from rlhfv.eval.io import (
        EvalInputError,
        check_inputs_are_text,
        check_report_outputs,
        read_rows,
        write_json,
        write_jsonl,
    )
    from rlhfv.eval.judge import JudgeError, format_summary, judge_items, load_prompt, normalize_items, summarize

    (args,) = read_settings(arguments, JudgeSettings)
    check_report_outputs(args)
    try:
        check_inputs_are_text(args)
        client = args.client()
        template = load_prompt(args.prompt_file) if args.prompt_file else None
        rows = read_rows(args.answers)
        if not rows:
            raise EvalInputError(f"{args.answers}: no answers to rate (the file holds no rows)")
        items = normalize_items(rows)
        results = judge_items(client, items, not args.quiet, template, max_tokens=512, ratings="lenient")
    except (EvalInputError, JudgeError, EndpointError) as error:
        raise CommandError(str(error)) from None
    summary = summarize(results)
    print(format_summary(summary))
    cached = sum(r["cached"] for r in results)
    print(f"{len(results)} answers rated: {cached} from the cache, {client.calls_made} requests made")
    if args.out:
        write_json(args.out, {"answers": str(args.answers), "judge_model": client.model, **summary})
    if args.details:
        write_jsonl(args.details, results)
    return 0
