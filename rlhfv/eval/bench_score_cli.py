"""The scoring steps of the benchmark commands: `mmhal judge`, `object-halbench score`, `amber score`.

Each follows its benchmark's official scoring code by default (rlhfv.eval.mmhal / judge, object_halbench /
objhal_chair, amber); the options that deviate from it are named, and every report says which mode produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from data_tools.errors import CommandError
from data_tools.settings import check_choice, check_range
from rlhfv.endpoint_settings import EndpointSettings, refuse_api_key_flag
from rlhfv.eval.bench_args import ReportOutputSettings, add_command
from rlhfv.eval.bench_args import refuse_unknown_answers as _unknown_answers
from rlhfv.eval.bench_args import write_outputs as _write
from rlhfv.eval.language import LanguageSettings
from rlhfv.eval.object_halbench import OFFICIAL_EXTRACTOR


RATINGS = ("official", "lenient")


@dataclass
class MmhalJudgeSettings(EndpointSettings, ReportOutputSettings):
    """`rlhfv eval mmhal judge`: rate the filled response file 0-6 with a judge model."""

    responses: str = field(
        default="",
        metadata={
            "required": True,
            "help": "The filled response file (from `mmhal generate`, or any file in the response_template.json "
            "layout).",
        },
    )
    prompt_file: str | None = field(
        default=None,
        metadata={
            "help": "The judge prompt, e.g. MMHal-Bench's published one, with placeholders {image_content} "
            "{question} {reference} {answer} (default: rlhfv's rubric)."
        },
    )
    ratings: str = field(
        default="official",
        metadata={
            "choices": RATINGS,
            "help": "official: a reply without exactly one 'rating: N' is rated 0, as summarize_gpt_mmhal.py; "
            "lenient: more forms accepted, a malformed reply stops the run.",
        },
    )
    max_tokens: int | None = field(
        default=None, metadata={"help": "Judge reply limit (default: none, as eval_gpt_mmhal.py)."}
    )
    quiet: bool = field(default=False, metadata={"help": "No progress bar."})

    def __post_init__(self):
        super().__post_init__()
        check_choice("ratings", self.ratings, RATINGS)
        check_range("max_tokens", self.max_tokens, minimum=1, optional=True)


def add_mmhal_judge(sub) -> None:
    add_command(
        sub,
        "judge",
        MmhalJudgeSettings,
        _run_mmhal_judge,
        "rate the filled response file 0-6 with a judge model",
        hidden_flags=refuse_api_key_flag,
    )


def _run_mmhal_judge(args) -> int:
    import hashlib

    from rlhfv.eval import mmhal
    from rlhfv.eval.io import EvalInputError
    from rlhfv.eval.judge import judge_items, load_prompt

    items, missing = mmhal.judge_inputs(args.responses, args.allow_missing)
    if not items:
        raise EvalInputError(f"{args.responses}: no answered item to rate")
    template = load_prompt(args.prompt_file) if args.prompt_file else None
    client = args.client()
    results = judge_items(client, items, not args.quiet, template, args.max_tokens, args.ratings)
    prompt = "rlhfv rubric"
    if template is not None:
        prompt = f"{args.prompt_file} (sha256 {hashlib.sha256(template.encode()).hexdigest()[:16]})"
    rep = mmhal.report(results, client.model, prompt, missing, args.ratings)
    rep["responses"] = str(args.responses)
    print(mmhal.format_report(rep))
    cached = sum(r["cached"] for r in results)
    print(f"{len(results)} answers rated: {cached} from the cache, {client.calls_made} requests made")
    _write(args, rep, results)
    return 0


EXTRACT = ("rule", "llm")


@dataclass
class ObjhalScoreSettings(EndpointSettings, LanguageSettings, ReportOutputSettings):
    """`rlhfv eval object-halbench score`: CHAIR_s, CHAIR_i and recall, as the official script computes them (the
    endpoint settings are the extractor's, used with --extract llm)."""

    model_env: ClassVar[str] = "RLHFV_EXTRACTOR_MODEL"

    model: str | None = field(
        default=None,
        metadata={
            "help": f"Extractor model name (default: $RLHFV_EXTRACTOR_MODEL, else {OFFICIAL_EXTRACTOR}, the official "
            "script's; retired: name a substitute)."
        },
    )
    questions: str = field(default="", metadata={"required": True, "help": "The question file."})
    answers: str = field(
        default="", metadata={"required": True, "help": "Answers JSONL (id or question_id, answer or text)."}
    )
    instances: list[str] | None = field(
        default=None,
        metadata={
            "required": True,
            "append": True,
            "help": "COCO instances_val2014.json (repeat to add instances_train2014.json, as the official code does).",
        },
    )
    captions: list[str] | None = field(
        default=None,
        metadata={"required": True, "append": True, "help": "COCO captions_val2014.json (repeatable)."},
    )
    synonyms: str | None = field(
        default=None,
        metadata={
            "help": "The benchmark's eval/data/synonyms_refine.txt (RLHF-V repository); without it rlhfv's own "
            "table, not comparable with papers."
        },
    )
    extract: str = field(
        default="rule",
        metadata={
            "choices": EXTRACT,
            "help": "rule: the answer's own words, the official script without --use_gpt; llm: an extractor model "
            "lists the objects, the papers' protocol (--use_gpt).",
        },
    )
    prompt_file: str | None = field(
        default=None,
        metadata={
            "help": "The extraction prompt: RLHF-V's eval/eval_gpt_obj_halbench.py (its prompt_template is read) "
            "or a text file with {question} and {answer}; without it rlhfv's own prompt, not comparable with "
            "papers."
        },
    )
    spacy_model: str = field(
        default="en_core_web_trf",
        metadata={"help": "spaCy model for the extracted names (en_core_web_trf is the official script's)."},
    )
    quiet: bool = field(default=False, metadata={"help": "No progress bar."})

    def __post_init__(self):
        super().__post_init__()
        check_choice("extract", self.extract, EXTRACT)


def add_objhal_score(sub) -> None:
    add_command(
        sub,
        "score",
        ObjhalScoreSettings,
        _run_objhal_score,
        "CHAIR_s, CHAIR_i and recall, as the official script computes them",
        hidden_flags=refuse_api_key_flag,
    )


def _run_objhal_score(args) -> int:
    from rlhfv.eval import object_halbench as ohb
    from rlhfv.eval.bench_generate import missing_report, read_answers
    from rlhfv.eval.io import EvalInputError
    from rlhfv.eval.judge import read_prompt_text
    from rlhfv.eval.language import tools_from_args
    from rlhfv.eval.objhal_chair import load_synonym_file, rlhfv_table

    questions = ohb.read_questions_for_scoring(args.questions)
    answers = read_answers(args.answers, id_fields=("id", "question_id"), answer_fields=("answer", "text"))
    if not answers:
        raise EvalInputError(f"{args.answers}: no answers to score (the file holds no rows)")
    missing = missing_report([q["id"] for q in questions], answers, args.allow_missing, "questions")
    _unknown_answers(answers, {q["id"] for q in questions}, args.questions)
    table = load_synonym_file(args.synonyms) if args.synonyms else rlhfv_table()
    needs = ("split_sentences", "lemmatize") + (("analyze_phrase",) if args.extract == "llm" else ())
    tools, resources = tools_from_args(args, needs, {"analyze_phrase": args.spacy_model})
    truth = ohb.coco_truth(args.instances, args.captions, table, tools, {q["image_id"] for q in questions})
    setup = {"table": table, "tools": tools, "mode": args.extract, "missing": missing, "progress": not args.quiet}
    if args.extract == "llm":
        if not args.model_name():
            args.model = ohb.OFFICIAL_EXTRACTOR
        setup["client"] = args.client()
        setup["template"], setup["prompt_source"] = ohb.EXTRACTION_PROMPT, "rlhfv"
        if args.prompt_file:
            setup["template"], setup["prompt_source"] = (
                read_prompt_text(args.prompt_file, "prompt_template"),
                str(args.prompt_file),
            )
            if "{answer}" not in setup["template"]:
                raise CommandError(f"{args.prompt_file}: the extraction prompt needs an {{answer}} placeholder")
    rep, details = ohb.score(questions, answers, truth, setup)
    rep["language_resources"] = resources
    rep["answers"] = str(args.answers)
    print(ohb.format_report(rep))
    print(f"language resources: {resources}")
    _write(args, rep, details)
    return 0


YES_NO = ("exact", "first-word")


@dataclass
class AmberScoreSettings(LanguageSettings, ReportOutputSettings):
    """`rlhfv eval amber score`: AMBER's metrics, as its inference.py computes them."""

    answers: str = field(
        default="", metadata={"required": True, "help": "Answers JSONL, or AMBER's JSON list of {id, response}."}
    )
    queries: str = field(
        default="",
        metadata={"required": True, "help": "The query file that was answered (sets the expected items)."},
    )
    annotations: str = field(default="", metadata={"required": True, "help": "data/annotations.json."})
    relation: str = field(default="", metadata={"required": True, "help": "data/relation.json."})
    safe_words: str = field(default="", metadata={"required": True, "help": "data/safe_words.txt."})
    metrics: str | None = field(
        default=None,
        metadata={
            "help": "data/metrics.txt, the counters' starting values (default: metrics.txt beside --annotations)."
        },
    )
    similarity_threshold: float = field(
        default=0.8,
        metadata={"help": "Word-vector similarity above which two words match (0.8 is AMBER's)."},
    )
    spacy_model: str = field(default="en_core_web_lg", metadata={"help": "Word vectors (en_core_web_lg is AMBER's)."})
    yes_no: str = field(
        default="exact",
        metadata={
            "choices": YES_NO,
            "help": "Discriminative answers: exactly 'Yes'/'No' as AMBER's script, or the first word, case and "
            "punctuation ignored (a deviation the report names).",
        },
    )

    def __post_init__(self):
        check_range("similarity_threshold", self.similarity_threshold, minimum=-1, maximum=1)
        check_choice("yes_no", self.yes_no, YES_NO)


def add_amber_score(sub) -> None:
    add_command(
        sub, "score", AmberScoreSettings, _run_amber_score, "AMBER's metrics, as its inference.py computes them"
    )


def _run_amber_score(args) -> int:
    from rlhfv.eval import amber
    from rlhfv.eval.bench_generate import missing_report, read_answers
    from rlhfv.eval.io import EvalInputError
    from rlhfv.eval.language import tools_from_args

    queries = amber.read_queries(args.queries, None)
    expected = [q["id"] for q in queries]
    answers = read_answers(args.answers, answer_fields=("answer", "response"))
    if not answers:
        raise EvalInputError(f"{args.answers}: no answers to score (the file holds no rows)")
    missing = missing_report(expected, answers, args.allow_missing, "queries")
    _unknown_answers(answers, set(expected), args.queries)
    metrics = args.metrics or Path(args.annotations).with_name("metrics.txt")
    assets = {
        "association": amber.load_association(args.relation),
        "safe_words": amber.load_safe_words(args.safe_words),
        "metrics": amber.load_metrics(metrics),
        "threshold": args.similarity_threshold,
    }
    annotations = amber.load_annotations(args.annotations)
    needs = ("split_sentences", "tag", "lemmatize", "similarity")
    tools, resources = tools_from_args(args, needs, {"similarity": args.spacy_model})
    rep, details = amber.score(annotations, answers, assets, tools, args.yes_no, missing)
    rep["language_resources"] = resources
    rep["answers"] = str(args.answers)
    print(amber.format_report(rep))
    print(f"language resources: {resources}")
    _write(args, rep, details)
    return 0
