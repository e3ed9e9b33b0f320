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
inside the commands. The scoring steps (`mmhal judge`, `object-halbench score`, `amber score`) are in
rlhfv.eval.bench_score_cli; each benchmark's logic is in its own module.
"""

from __future__ import annotations

from pathlib import Path

from data_tools.settings import add_output_argument
from rlhfv.eval.bench_args import add_output_arguments as _add_output_arguments
from rlhfv.eval.bench_args import guard as _guard
from rlhfv.eval.bench_args import refuse_unknown_answers as _unknown_answers
from rlhfv.eval.bench_args import write_outputs as _write
from rlhfv.eval.bench_score_cli import add_amber_score, add_mmhal_judge, add_objhal_score


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
    p.add_argument(
        "--strict-paths",
        action="store_true",
        help="refuse images outside --images and the benchmark file's folder (as `rlhfv convert --strict-paths`)",
    )


def _options(args):
    from rlhfv.generation.generate import GenerationOptions, check_generation_ranges

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
    from rlhfv.eval.io import input_paths, rows_outside

    options = _options(args)
    inputs = tuple(input_paths(args))
    if args.strict_paths:  # images may lie in --images or beside the benchmark's own files
        roots = [args.images] if getattr(args, "images", None) else []
        rows_outside(rows, roots + [str(Path(p) if Path(p).is_dir() else Path(p).parent) for p in inputs])
    counts = generate_for_benchmark(
        benchmark,
        args.model,
        rows,
        out,
        options,
        args.prompt_suffix,
        args.device,
        args.dtype,
        not args.quiet,
        inputs=inputs,
    )
    print(
        f"{counts['generated']} answers written to {out} ({counts['skipped']} of {counts['prompts']} were already "
        f"there); decoding settings in {settings_path(out)}"
    )
    return counts


def _subcommands(commands, name, help_text, description):
    parser = commands.add_parser(name, help=help_text, description=description)
    sub = parser.add_subparsers(dest=f"{name}_command", metavar="STEP")
    sub.required = True
    return sub


# ---- MMHal-Bench ----------------------------------------------------------------------------------------------------
def _register_mmhal(commands) -> None:
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
    add_mmhal_judge(sub)


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


# ---- Object HalBench ------------------------------------------------------------------------------------------------
def _register_object_halbench(commands) -> None:
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
    add_objhal_score(sub)


def _run_objhal_generate(args) -> int:
    from rlhfv.eval import object_halbench

    _generate("object-halbench", args, object_halbench.read_questions(args.questions, args.images), args.out)
    return 0


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
    add_amber_score(sub)


def _run_amber_generate(args) -> int:
    from rlhfv.eval import amber

    _generate("amber", args, amber.read_queries(args.queries, args.images), args.out)
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
    p.add_argument("--overwrite", action="store_true", help="replace existing --output_dir/--plot files")
    p.set_defaults(func=_guard(_run_report))


def _run_report(args) -> int:
    from rlhfv.eval import report

    models, columns, table = report.collect(args.result)
    text = report.markdown(models, columns, table)
    print(text, end="")
    if args.out:
        from data_tools.outputs import write_text

        write_text(args.out, text)
    if args.plot:
        report.plot(models, columns, table, args.plot)
        print(f"plot written to {args.plot}")
    return 0
