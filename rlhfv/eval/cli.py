"""`rlhfv eval {generate,best-of-n,chair,judge}` and the benchmarks (`rlhfv.eval.bench_cli`): measure hallucination.

    rlhfv eval generate  --model PATH --prompts prompts.jsonl --out answers.jsonl
    rlhfv eval best-of-n --model PATH --reference SFT_PATH --prompts prompts.jsonl --out answers.jsonl -n 10
    rlhfv eval chair     --answers answers.jsonl --objects objects.json [--out report.json]
    rlhfv eval judge     --answers mmhal_answers.json --model gpt-4o [--base-url URL] [--out report.json]
    rlhfv eval {mmhal,object-halbench,amber,pope,report} ...   (see rlhfv/eval/bench_cli.py)

Heavy imports happen inside the commands, so `rlhfv --help` stays instant.
"""

from __future__ import annotations

from data_tools.errors import CommandError


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
    p.add_argument(
        "--model", required=True, help="model folder: saved by `rlhfv train`, a base model, or a PEFT adapter"
    )
    p.add_argument("--prompts", required=True, help="JSONL or JSON list of {id, image, question}; image paths are "
                   "relative to the prompt file's folder")  # fmt: skip
    p.add_argument("--out", required=True, help="answers JSONL (appended to; ids already there are skipped)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate() call (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="default 256")
    p.add_argument("--temperature", type=float, default=0.7 if best_of_n else 1.0, help="sampling temperature "
                   f"(default {0.7 if best_of_n else 1.0}; used with sampling)")  # fmt: skip
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (default 1.0)")
    p.add_argument("--top-k", type=int, default=0, help="top-k sampling, 0 = off (default 0)")
    p.add_argument("--seed", type=int, default=0, help="torch seed for sampling (default 0)")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda if available)")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16 (default auto)")
    if best_of_n:
        p.add_argument("-n", "--best-of", type=int, default=10, help="answers sampled per prompt (default 10)")
    else:
        p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
        p.add_argument("--best-of", type=int, default=1, help="sample N answers and keep the best by implicit reward "
                       "(same as `rlhfv eval best-of-n`; default 1 = off)")  # fmt: skip
    p.add_argument("--reference", default=None, help="best-of-N reference model folder (default: for a PEFT "
                   "adapter, its base model with the adapter disabled)")  # fmt: skip
    p.add_argument("--beta", type=float, default=0.1, help="best-of-N reward scale (default 0.1, RLAIF-V's DPO beta)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_generate, force_sampling=best_of_n)


def _run_generate(args) -> int:
    from rlhfv.eval.generate import GenerationOptions, generate_answers
    from rlhfv.eval.io import EvalInputError

    if args.batch_size < 1 or args.max_new_tokens < 1:
        raise CommandError("--batch-size and --max-new-tokens must be at least 1")
    if args.best_of < 1:
        raise CommandError("--best-of must be at least 1")
    sampling = args.force_sampling or getattr(args, "do_sample", False) or args.best_of > 1
    options = GenerationOptions(
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        do_sample=sampling,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        seed=args.seed,
        best_of=args.best_of,
        beta=args.beta,
    )
    try:
        counts = generate_answers(
            args.model, args.prompts, args.out, options, args.reference, args.device, args.dtype, not args.quiet
        )
    except EvalInputError as error:
        raise CommandError(str(error)) from None
    print(
        f"{counts['generated']} answers written to {args.out} "
        f"({counts['skipped']} of {counts['prompts']} prompts were already answered)"
    )
    return 0


def _register_chair(commands) -> None:
    p = commands.add_parser(
        "chair",
        help="object hallucination (CHAIR_s, CHAIR_i, recall) against ground-truth objects",
        description="Object hallucination, Object HalBench style. Finds the COCO objects each answer mentions "
        "(synonym table, whole words, longest match first; negations count as mentions) and reports CHAIR_s "
        "(responses with a hallucinated object / responses mentioning any object), CHAIR_i (hallucinated mentions "
        "/ all mentions), recall of ground-truth objects, mean answer length and per-class counts.",
    )
    p.add_argument("--answers", required=True, help="answers JSONL (from `rlhfv eval generate`): id, image, answer")
    p.add_argument("--objects", required=True, help="ground truth: COCO instances annotations JSON, or JSON "
                   "{image path or id: [object names]} (e.g. the synthetic world's objects.json)")  # fmt: skip
    p.add_argument("--field", default="answer", help="the answer field (default: answer)")
    p.add_argument("--synonyms", default=None, help="your own synonym table, JSON {class: [surface forms]} "
                   "(default: the built-in table for the 80 COCO classes)")  # fmt: skip
    p.add_argument("--out", default=None, help="write the report (JSON) here")
    p.add_argument("--details", default=None, help="write per-answer mentions (JSONL) here")
    p.set_defaults(func=_run_chair)


def _run_chair(args) -> int:
    from rlhfv.eval.chair import ObjectExtractor, format_report, load_ground_truth, load_synonyms, score_answers
    from rlhfv.eval.io import EvalInputError, read_rows, write_json, write_jsonl

    try:
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


def _register_judge(commands) -> None:
    from rlhfv.endpoint import add_endpoint_arguments

    p = commands.add_parser(
        "judge",
        help="MMHal-Bench style 0-6 ratings from an OpenAI-compatible judge model",
        description="Rate each answer 0-6 against the image content and a reference answer with a judge model "
        "behind any OpenAI-compatible chat endpoint, and report the mean score and the hallucination rate "
        "(share rated below 3), overall and per question type. Replies are cached on disk, so reruns are free.",
    )
    p.add_argument("--answers", required=True, help="JSONL or JSON list of {id, question, answer, image_content, "
                   "reference, question_type?}; MMHal-Bench's own response file (model_answer, gt_answer) works as "
                   "is")  # fmt: skip
    p.add_argument("--prompt-file", default=None, help="judge prompt with placeholders {image_content} {question} "
                   "{reference} {answer}, e.g. MMHal-Bench's published one (default: rlhfv's rubric)")  # fmt: skip
    add_endpoint_arguments(p)
    p.add_argument("--out", default=None, help="write the summary (JSON) here")
    p.add_argument("--details", default=None, help="write per-answer ratings and replies (JSONL) here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_judge)


def _run_judge(args) -> int:
    from rlhfv.endpoint import EndpointError, client_from_args
    from rlhfv.eval.io import EvalInputError, read_rows, write_json, write_jsonl
    from rlhfv.eval.judge import JudgeError, format_summary, judge_items, load_prompt, normalize_items, summarize

    try:
        client = client_from_args(args)
        template = load_prompt(args.prompt_file) if args.prompt_file else None
        items = normalize_items(read_rows(args.answers))
        results = judge_items(client, items, progress=not args.quiet, prompt_template=template)
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
