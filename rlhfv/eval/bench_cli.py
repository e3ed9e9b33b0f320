"""`rlhfv eval {mmhal,object-halbench,amber,pope,report}`: the hallucination benchmarks papers report.

    rlhfv eval mmhal generate  --model M --template response_template.json --images DIR --output_dir mmhal_filled.json
    rlhfv eval mmhal judge     --responses mmhal_filled.json --model gpt-4o [--prompt-file PROMPT]
                               --output_dir mmhal.json
    rlhfv eval object-halbench generate --model M --questions obj_halbench.jsonl [--images DIR]
                               --output_dir answers.jsonl
    rlhfv eval object-halbench score --questions Q --answers A --instances I --captions C [--extract llm ...]
    rlhfv eval amber generate  --model M --queries query_all.json --images DIR --output_dir answers.jsonl
    rlhfv eval amber score     --answers A --annotations annotations.json --relation relation.json
                               --safe-words safe_words.txt --queries query_all.json --output_dir amber.json
    rlhfv eval pope generate   --model M --pope-dir output/coco --images DIR --output_dir answers_dir
    rlhfv eval pope score      --pope-dir output/coco --answers answers_dir --output_dir pope.json
    rlhfv eval report          --result sft=mmhal.json --result dpo=mmhal.json ... --output_dir report.md
                               --plot report.png

Generation is batched and resumable; its decoding settings are written next to the answers. Heavy imports happen
inside the commands. (Over 350 lines on purpose: only argument parsing and dispatch, one block per benchmark; each
benchmark's logic is in its own module.)
"""

from __future__ import annotations

from pathlib import Path

from data_tools.errors import CommandError
from data_tools.settings import add_output_argument


def register(commands) -> None:
    _register_mmhal(commands)
    _register_object_halbench(commands)
    _register_amber(commands)
    _register_pope(commands)
    _register_report(commands)


# ---- shared arguments ---------------------------------------------------------------------------------------------
def _add_generation_arguments(p, prompt_suffix: str = "") -> None:
    p.add_argument("--model", required=True, help="model folder: saved by `rlhfv train`, a base model, or a PEFT "
                   "adapter")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate() call (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=512, help="default 512")
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0, help="with --do-sample (default 1.0)")
    p.add_argument("--top-p", type=float, default=1.0, help="with --do-sample (default 1.0)")
    p.add_argument("--top-k", type=int, default=0, help="with --do-sample, 0 = off (default 0)")
    p.add_argument("--num-beams", type=int, default=1, help="beam search width (default 1; Object HalBench in "
                   "RLHF-V used 3)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="torch seed for sampling (default 0)")
    p.add_argument("--prompt-suffix", default=prompt_suffix, help="text appended to every question "
                   f"(default {prompt_suffix!r})")  # fmt: skip
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda if available)")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16 (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _options(args):
    from rlhfv.eval.cli import check_generation_ranges
    from rlhfv.eval.generate import GenerationOptions

    check_generation_ranges(args)
    return GenerationOptions(
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        seed=args.seed,
        extra={"num_beams": args.num_beams} if args.num_beams > 1 else {},
    )


def _generate(benchmark, args, rows, out) -> dict:
    from rlhfv.eval.bench_generate import generate_for_benchmark, settings_path

    counts = generate_for_benchmark(
        benchmark, args.model, rows, out, _options(args), args.prompt_suffix, args.device, args.dtype, not args.quiet
    )
    print(
        f"{counts['generated']} answers written to {out} ({counts['skipped']} of {counts['prompts']} were already "
        f"there); decoding settings in {settings_path(out)}"
    )
    return counts


def _write(args, rep, details=None) -> None:
    from rlhfv.eval.io import write_json, write_jsonl

    if args.out:
        write_json(args.out, rep)
    if getattr(args, "details", None) and details is not None:
        write_jsonl(args.details, details)


def _add_output_arguments(p) -> None:
    add_output_argument(p, help="write the report (JSON) here; `rlhfv eval report` reads it")
    p.add_argument("--details", default=None, help="write per-item results (JSONL) here")
    p.add_argument("--allow-missing", action="store_true", help="score the answered items and list the missing "
                   "ones in the report (default: a missing answer is an error)")  # fmt: skip


def _guard(function):
    """Run a command body, turning input and endpoint errors into one-line failures."""

    def run(args) -> int:
        from rlhfv.endpoint import EndpointError
        from rlhfv.eval.io import EvalInputError
        from rlhfv.eval.judge import JudgeError

        try:
            return function(args)
        except (EvalInputError, EndpointError, JudgeError) as error:
            raise CommandError(str(error)) from None

    return run


def _subcommands(commands, name, help_text, description):
    parser = commands.add_parser(name, help=help_text, description=description)
    sub = parser.add_subparsers(dest=f"{name}_command", metavar="STEP")
    sub.required = True
    return sub


# ---- MMHal-Bench ----------------------------------------------------------------------------------------------------
def _register_mmhal(commands) -> None:
    from rlhfv.endpoint import add_endpoint_arguments

    sub = _subcommands(
        commands,
        "mmhal",
        "MMHal-Bench: fill the response template, then rate 0-6 with a judge model",
        "MMHal-Bench (LLaVA-RLHF). `generate` fills model_answer in the official response_template.json, keeping "
        "its order; `judge` rates each answer 0-6 with any OpenAI-compatible judge and reports the average score, "
        "the hallucination rate (rating < 3) and the 8 per-type scores (type = index mod 8).",
    )
    p = sub.add_parser("generate", help="answer the 96 questions; writes the filled response file")
    p.add_argument("--template", required=True, help="MMHal-Bench's response_template.json")
    p.add_argument("--images", required=True, help="the benchmark's image folder (file names as in image_src)")
    add_output_argument(
        p,
        required=True,
        help="the filled response file (JSON list; may be the template itself). Answers accumulate in "
        "<output stem>.answers.jsonl, so a rerun resumes",
    )
    _add_generation_arguments(p)
    p.set_defaults(func=_guard(_run_mmhal_generate))

    p = sub.add_parser("judge", help="rate the filled response file 0-6 with a judge model")
    p.add_argument("--responses", required=True, help="the filled response file (from `mmhal generate`, or any "
                   "file in the response_template.json layout)")  # fmt: skip
    p.add_argument("--prompt-file", default=None, help="the judge prompt, e.g. MMHal-Bench's published one, with "
                   "placeholders {image_content} {question} {reference} {answer} (default: rlhfv's rubric)")  # fmt: skip
    add_endpoint_arguments(p)
    _add_output_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_guard(_run_mmhal_judge))


def _run_mmhal_generate(args) -> int:
    from rlhfv.eval import mmhal
    from rlhfv.eval.bench_generate import read_answers

    template = mmhal.read_template(args.template)
    out = Path(args.out)
    answers_path = out.with_name(out.stem + ".answers.jsonl")
    _generate("mmhal", args, mmhal.prompt_rows(template, args.images), answers_path)
    mmhal.write_filled(out, mmhal.fill_template(template, read_answers(answers_path)))
    print(f"filled response file: {out} ({len(template)} items, template order)")
    return 0


def _run_mmhal_judge(args) -> int:
    import hashlib

    from rlhfv.endpoint import client_from_args
    from rlhfv.eval import mmhal
    from rlhfv.eval.judge import judge_items, load_prompt

    items, missing = mmhal.judge_inputs(args.responses, args.allow_missing)
    template = load_prompt(args.prompt_file) if args.prompt_file else None
    client = client_from_args(args)
    results = judge_items(client, items, progress=not args.quiet, prompt_template=template)
    prompt = "rlhfv rubric"
    if template is not None:
        prompt = f"{args.prompt_file} (sha256 {hashlib.sha256(template.encode()).hexdigest()[:16]})"
    rep = mmhal.report(results, client.model, prompt, missing)
    rep["responses"] = str(args.responses)
    print(mmhal.format_report(rep))
    cached = sum(r["cached"] for r in results)
    print(f"{len(results)} answers rated: {cached} from the cache, {client.calls_made} requests made")
    _write(args, rep, results)
    return 0


# ---- Object HalBench ------------------------------------------------------------------------------------------------
def _register_object_halbench(commands) -> None:
    from rlhfv.endpoint import add_endpoint_arguments

    sub = _subcommands(
        commands,
        "object-halbench",
        "Object HalBench: detailed descriptions of COCO images scored with CHAIR",
        "Object HalBench (RLHF-V, RLAIF-V): answer its detailed-description prompts, then score CHAIR_s, CHAIR_i "
        "and recall against COCO instance + caption annotations. Objects are found by the synonym matcher "
        "(--extract rule) or listed by an LLM and mapped to COCO classes (--extract llm, the papers' protocol).",
    )
    p = sub.add_parser("generate", help="answer the prompts")
    p.add_argument("--questions", required=True, help="the question file (JSONL: image_id, question, image)")
    p.add_argument("--images", default=None, help="COCO val2014 image folder (when the file embeds no images)")
    add_output_argument(p, required=True, help="answers JSONL (a rerun resumes)")
    _add_generation_arguments(p)
    p.set_defaults(func=_guard(_run_objhal_generate))

    p = sub.add_parser("score", help="CHAIR_s, CHAIR_i and recall")
    p.add_argument("--questions", required=True, help="the question file")
    p.add_argument("--answers", required=True, help="answers JSONL (id or question_id, answer)")
    p.add_argument("--instances", required=True, action="append", help="COCO instances_val2014.json (repeat to "
                   "add instances_train2014.json, as CHAIR's code does)")  # fmt: skip
    p.add_argument("--captions", required=True, action="append", help="COCO captions_val2014.json (repeatable)")
    p.add_argument("--extract", choices=["rule", "llm"], default="rule", help="object extraction: the synonym "
                   "matcher (default), or an LLM through the endpoint (comparable with the papers)")  # fmt: skip
    p.add_argument("--prompt-file", default=None, help="LLM extraction prompt with an {answer} placeholder")
    add_endpoint_arguments(p, model_env="RLHFV_EXTRACTOR_MODEL", what="extractor")
    _add_output_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_guard(_run_objhal_score))


def _run_objhal_generate(args) -> int:
    from rlhfv.eval import object_halbench

    _generate("object-halbench", args, object_halbench.read_questions(args.questions, args.images), args.out)
    return 0


def _run_objhal_score(args) -> int:
    from rlhfv.eval import object_halbench as ohb
    from rlhfv.eval.bench_generate import missing_report, read_answers
    from rlhfv.eval.chair import ObjectExtractor

    questions = ohb.read_questions_for_scoring(args.questions)
    answers = read_answers(args.answers, id_fields=("id", "question_id"), answer_fields=("answer", "text"))
    missing = missing_report([q["id"] for q in questions], answers, args.allow_missing, "questions")
    _unknown_answers(answers, {q["id"] for q in questions}, args.questions)
    extractor = ObjectExtractor()
    truth = ohb.coco_truth(args.instances, args.captions, extractor, {q["image_id"] for q in questions})
    client, template = None, ohb.EXTRACTION_PROMPT
    if args.extract == "llm":
        from rlhfv.endpoint import client_from_args

        client = client_from_args(args)
        if args.prompt_file:
            template = Path(args.prompt_file).read_text(encoding="utf-8")
            if "{answer}" not in template:
                raise CommandError(f"{args.prompt_file}: the extraction prompt needs an {{answer}} placeholder")
    rep, details = ohb.score(
        questions, answers, truth, extractor, args.extract, client, template, missing, progress=not args.quiet
    )
    rep["answers"] = str(args.answers)
    print(ohb.format_report(rep))
    _write(args, rep, details)
    return 0


def _unknown_answers(answers: dict, expected: set[str], questions_path) -> None:
    """An answer for an id the benchmark does not have means the wrong files were paired: refuse, naming it."""
    extra = [key for key in answers if key not in expected]
    if extra:
        first = answers[extra[0]]["_where"]
        raise CommandError(
            f"{first}: id {extra[0]!r} is not in {questions_path} ({len(extra)} such answers): wrong answer file?"
        )


# ---- AMBER ----------------------------------------------------------------------------------------------------------
def _register_amber(commands) -> None:
    sub = _subcommands(
        commands,
        "amber",
        "AMBER: generative (CHAIR, Cover, Hal, Cog) and discriminative (yes/no) hallucination",
        "AMBER. `generate` answers its queries; `score` computes CHAIR, Cover, Hal and Cog on the generative "
        "items and accuracy/precision/recall/F1 ('No' positive) per type on the discriminative ones.",
    )
    p = sub.add_parser("generate", help="answer AMBER's queries")
    p.add_argument("--queries", required=True, help="data/query/query_all.json (or one of the per-task files)")
    p.add_argument("--images", required=True, help="AMBER's image folder (AMBER_<n>.jpg)")
    add_output_argument(p, required=True, help="answers JSONL (a rerun resumes)")
    _add_generation_arguments(p)
    p.set_defaults(func=_guard(_run_amber_generate))

    p = sub.add_parser("score", help="AMBER's metrics")
    p.add_argument("--answers", required=True, help="answers JSONL, or AMBER's JSON list of {id, response}")
    p.add_argument("--queries", required=True, help="the query file that was answered (sets the expected items)")
    p.add_argument("--annotations", required=True, help="data/annotations.json")
    p.add_argument("--relation", required=True, help="data/relation.json")
    p.add_argument("--safe-words", required=True, help="data/safe_words.txt")
    p.add_argument("--word-vectors", choices=["auto", "on", "off"], default="auto", help="spaCy word similarity "
                   "as AMBER (auto: when spaCy and the model are installed; off: exact/singular match)")  # fmt: skip
    p.add_argument("--spacy-model", default="en_core_web_lg", help="default en_core_web_lg (AMBER's)")
    _add_output_arguments(p)
    p.set_defaults(func=_guard(_run_amber_score))


def _run_amber_generate(args) -> int:
    from rlhfv.eval import amber

    _generate("amber", args, amber.read_queries(args.queries, args.images), args.out)
    return 0


def _run_amber_score(args) -> int:
    from rlhfv.eval import amber
    from rlhfv.eval.bench_generate import missing_report, read_answers

    queries = amber.read_queries(args.queries, None)
    expected = [q["id"] for q in queries]
    answers = read_answers(args.answers, answer_fields=("answer", "response"))
    missing = missing_report(expected, answers, args.allow_missing, "queries")
    _unknown_answers(answers, set(expected), args.queries)
    rep, details = amber.score(
        amber.load_annotations(args.annotations),
        answers,
        amber.load_association(args.relation),
        amber.load_safe_words(args.safe_words),
        amber.WordMatcher(args.word_vectors, args.spacy_model),
        expected,
        missing,
    )
    rep["answers"] = str(args.answers)
    print(amber.format_report(rep))
    _write(args, rep, details)
    return 0


# ---- POPE -----------------------------------------------------------------------------------------------------------
POPE_SUFFIX = "\nAnswer the question using a single word or phrase."


def _register_pope(commands) -> None:
    sub = _subcommands(
        commands,
        "pope",
        "POPE: yes/no object probing, random/popular/adversarial",
        "POPE. `generate` answers each split's questions into <out>/<split>.jsonl; `score` reports accuracy, "
        "precision, recall, F1 ('yes' positive) and the yes-ratio per split.",
    )
    p = sub.add_parser("generate", help="answer the split files")
    p.add_argument("--pope-dir", required=True, help="folder with POPE's coco_pope_{random,popular,adversarial}.json")
    p.add_argument("--images", required=True, help="COCO val2014 image folder")
    add_output_argument(p, required=True, help="answers folder: one <split>.jsonl per split (a rerun resumes)")
    _add_generation_arguments(p, prompt_suffix=POPE_SUFFIX)
    p.set_defaults(func=_guard(_run_pope_generate))

    p = sub.add_parser("score", help="accuracy, precision, recall, F1, yes-ratio per split")
    p.add_argument("--pope-dir", required=True, help="folder with POPE's split files")
    p.add_argument("--answers", required=True, help="answers folder (<split>.jsonl per split, from `generate`)")
    p.add_argument("--unclear-as", choices=["pope", "wrong"], default="pope", help="an answer neither clearly yes "
                   "nor no: read as POPE reads it ('no' if it says no/not, else 'yes'; default), or scored as "
                   "wrong")  # fmt: skip
    _add_output_arguments(p)
    p.set_defaults(func=_guard(_run_pope_score))


def _run_pope_generate(args) -> int:
    from rlhfv.eval import pope

    for split, path in pope.find_split_files(args.pope_dir).items():
        _generate(f"pope-{split}", args, pope.read_questions(path, args.images), Path(args.out) / f"{split}.jsonl")
    return 0


def _run_pope_score(args) -> int:
    from rlhfv.eval import pope
    from rlhfv.eval.bench_generate import missing_report, read_answers
    from rlhfv.eval.io import EvalInputError

    per_split, missing, details = {}, {}, []
    for split, path in pope.find_split_files(args.pope_dir).items():
        answers_path = Path(args.answers) / f"{split}.jsonl"
        if not answers_path.is_file():
            raise EvalInputError(f"{answers_path}: no answers for split {split!r} (run `rlhfv eval pope generate`)")
        questions = pope.read_questions(path)
        answers = read_answers(answers_path, id_fields=("id", "question_id"), answer_fields=("answer", "text"))
        missing[split] = missing_report(
            [q["id"] for q in questions], answers, args.allow_missing, f"{split} questions"
        )
        _unknown_answers(answers, {q["id"] for q in questions}, path)
        per_split[split], split_details = pope.score_split(questions, answers, args.unclear_as)
        details += [{"split": split, **d} for d in split_details]
    rep = pope.report(per_split, missing, args.unclear_as)
    rep["answers"] = str(args.answers)
    print(pope.format_report(rep))
    _write(args, rep, details)
    return 0


# ---- report ---------------------------------------------------------------------------------------------------------
def _register_report(commands) -> None:
    p = commands.add_parser(
        "report",
        help="several models' benchmark results in one Markdown table and one plot",
        description="Put several models' benchmark reports (the --output_dir files of the benchmark commands) side by "
        "side: one Markdown table (a row per model, a column per headline number) and one PNG plot.",
    )
    p.add_argument("--result", action="append", required=True, metavar="MODEL=PATH", help="a model's report; "
                   "repeat for each model and benchmark")  # fmt: skip
    add_output_argument(p, help="write the Markdown table here (default: print it)")
    p.add_argument("--plot", default=None, help="write the PNG plot here (needs matplotlib)")
    p.set_defaults(func=_guard(_run_report))


def _run_report(args) -> int:
    from rlhfv.eval import report

    models, columns, table = report.collect(args.result)
    text = report.markdown(models, columns, table)
    print(text, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    if args.plot:
        report.plot(models, columns, table, args.plot)
        print(f"plot written to {args.plot}")
    return 0
