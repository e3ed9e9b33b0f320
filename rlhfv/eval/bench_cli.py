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

from dataclasses import dataclass, field
from pathlib import Path

from data_tools.settings import check_choice, output_field
from rlhfv.eval.bench_args import BenchGenerationSettings, ReportOutputSettings, add_command
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
def _options(args):
    from rlhfv.generation.generate import GenerationOptions

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
@dataclass
class MmhalGenerateSettings(BenchGenerationSettings):
    """`rlhfv eval mmhal generate`: fill model_answer in MMHal-Bench's response template, keeping its order."""

    template: str = field(default="", metadata={"required": True, "help": "MMHal-Bench's response_template.json."})
    images: str = field(
        default="",
        metadata={"required": True, "help": "The benchmark's image folder (file names as in image_src)."},
    )
    out: str | None = output_field(
        "The filled response file (JSON list; may be the template itself). Answers accumulate in "
        "<output stem>.answers.jsonl, so a rerun resumes.",
        required=True,
    )


def _register_mmhal(commands) -> None:
    sub = _subcommands(
        commands,
        "mmhal",
        "MMHal-Bench: fill the response template, then rate 0-6 with a judge model",
        "MMHal-Bench (LLaVA-RLHF). `generate` fills model_answer in the official response_template.json, keeping "
        "its order; `judge` rates each answer 0-6 with any OpenAI-compatible judge and reports the average score, "
        "the hallucination rate (rating < 3) and the 8 per-type scores (type = index mod 8).",
    )
    add_command(
        sub,
        "generate",
        MmhalGenerateSettings,
        _run_mmhal_generate,
        "answer the 96 questions; writes the filled response file",
    )
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
@dataclass
class ObjhalGenerateSettings(BenchGenerationSettings):
    """`rlhfv eval object-halbench generate`: answer Object HalBench's detailed-description prompts."""

    questions: str = field(
        default="", metadata={"required": True, "help": "The question file (JSONL: image_id, question, image)."}
    )
    images: str | None = field(
        default=None, metadata={"help": "COCO val2014 image folder (when the file embeds no images)."}
    )
    out: str | None = output_field("Answers JSONL (a rerun resumes).", required=True)


def _register_object_halbench(commands) -> None:
    sub = _subcommands(
        commands,
        "object-halbench",
        "Object HalBench: detailed descriptions of COCO images scored with CHAIR",
        "Object HalBench (RLHF-V, RLAIF-V): answer its detailed-description prompts, then score CHAIR_s, CHAIR_i "
        "and recall against COCO instance + caption annotations. Objects are found by the synonym matcher "
        "(--extract rule) or listed by an LLM and mapped to COCO classes (--extract llm, the papers' protocol).",
    )
    add_command(sub, "generate", ObjhalGenerateSettings, _run_objhal_generate, "answer the prompts")
    add_objhal_score(sub)


def _run_objhal_generate(args) -> int:
    from rlhfv.eval import object_halbench

    _generate("object-halbench", args, object_halbench.read_questions(args.questions, args.images), args.out)
    return 0


# ---- AMBER ----------------------------------------------------------------------------------------------------------
@dataclass
class AmberGenerateSettings(BenchGenerationSettings):
    """`rlhfv eval amber generate`: answer AMBER's queries."""

    queries: str = field(
        default="",
        metadata={"required": True, "help": "data/query/query_all.json (or one of the per-task files)."},
    )
    images: str = field(default="", metadata={"required": True, "help": "AMBER's image folder (AMBER_<n>.jpg)."})
    out: str | None = output_field("Answers JSONL (a rerun resumes).", required=True)


def _register_amber(commands) -> None:
    sub = _subcommands(
        commands,
        "amber",
        "AMBER: generative (CHAIR, Cover, Hal, Cog) and discriminative (yes/no) hallucination",
        "AMBER. `generate` answers its queries; `score` computes CHAIR, Cover, Hal and Cog on the generative "
        "items and accuracy/precision/recall/F1 ('No' positive) per type on the discriminative ones.",
    )
    add_command(sub, "generate", AmberGenerateSettings, _run_amber_generate, "answer AMBER's queries")
    add_amber_score(sub)


def _run_amber_generate(args) -> int:
    from rlhfv.eval import amber

    _generate("amber", args, amber.read_queries(args.queries, args.images), args.out)
    return 0


# ---- POPE -----------------------------------------------------------------------------------------------------------
POPE_SUFFIX = "\nAnswer the question using a single word or phrase."


@dataclass
class PopeGenerateSettings(BenchGenerationSettings):
    """`rlhfv eval pope generate`: answer each split's questions into <output_dir>/<split>.jsonl."""

    pope_dir: str = field(
        default="",
        metadata={"required": True, "help": "Folder with POPE's coco_pope_{random,popular,adversarial}.json."},
    )
    images: str = field(default="", metadata={"required": True, "help": "COCO val2014 image folder."})
    out: str | None = output_field("Answers folder: one <split>.jsonl per split (a rerun resumes).", required=True)
    prompt_suffix: str = field(default=POPE_SUFFIX, metadata={"help": "Text appended to every question."})


UNCLEAR = ("pope", "wrong")


@dataclass
class PopeScoreSettings(ReportOutputSettings):
    """`rlhfv eval pope score`: accuracy, precision, recall, F1 ('yes' positive) and the yes-ratio per split."""

    pope_dir: str = field(default="", metadata={"required": True, "help": "Folder with POPE's split files."})
    answers: str = field(
        default="",
        metadata={"required": True, "help": "Answers folder (<split>.jsonl per split, from `generate`)."},
    )
    unclear_as: str = field(
        default="pope",
        metadata={
            "choices": UNCLEAR,
            "help": "An answer neither clearly yes nor no: read as POPE reads it ('no' if it says no/not, else "
            "'yes'), or scored as wrong.",
        },
    )

    def __post_init__(self):
        check_choice("unclear_as", self.unclear_as, UNCLEAR)


def _register_pope(commands) -> None:
    sub = _subcommands(
        commands,
        "pope",
        "POPE: yes/no object probing, random/popular/adversarial",
        "POPE. `generate` answers each split's questions into <out>/<split>.jsonl; `score` reports accuracy, "
        "precision, recall, F1 ('yes' positive) and the yes-ratio per split.",
    )
    add_command(sub, "generate", PopeGenerateSettings, _run_pope_generate, "answer the split files")
    add_command(
        sub, "score", PopeScoreSettings, _run_pope_score, "accuracy, precision, recall, F1, yes-ratio per split"
    )


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
@dataclass
class ReportSettings:
    """`rlhfv eval report`: several models' benchmark reports in one Markdown table and one plot."""

    result: list[str] | None = field(
        default=None,
        metadata={
            "required": True,
            "append": True,
            "metavar": "MODEL=PATH",
            "help": "A model's report; repeat for each model and benchmark.",
        },
    )
    out: str | None = output_field("Write the Markdown table here (default: print it).")
    plot: str | None = field(default=None, metadata={"help": "Write the PNG plot here (needs matplotlib)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace existing --output_dir/--plot files."})


def _register_report(commands) -> None:
    add_command(
        commands,
        "report",
        ReportSettings,
        _run_report,
        "several models' benchmark results in one Markdown table and one plot",
        description="Put several models' benchmark reports (the --output_dir files of the benchmark commands) side by "
        "side: one Markdown table (a row per model, a column per headline number) and one PNG plot.",
    )


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
