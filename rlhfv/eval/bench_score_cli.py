"""The scoring steps of the benchmark commands: `mmhal judge`, `object-halbench score`, `amber score`.

Each follows its benchmark's official scoring code by default (rlhfv.eval.mmhal / judge, object_halbench /
objhal_chair, amber); the options that deviate from it are named, and every report says which mode produced it.
"""

from __future__ import annotations

from pathlib import Path

from data_tools.errors import CommandError
from rlhfv.eval.bench_args import add_output_arguments as _add_output_arguments
from rlhfv.eval.bench_args import guard as _guard
from rlhfv.eval.bench_args import refuse_unknown_answers as _unknown_answers
from rlhfv.eval.bench_args import write_outputs as _write
from rlhfv.eval.language import add_language_arguments


def add_mmhal_judge(sub) -> None:
    from rlhfv.endpoint import add_endpoint_arguments

    p = sub.add_parser("judge", help="rate the filled response file 0-6 with a judge model")
    p.add_argument("--responses", required=True, help="the filled response file (from `mmhal generate`, or any "
                   "file in the response_template.json layout)")  # fmt: skip
    p.add_argument("--prompt-file", default=None, help="the judge prompt, e.g. MMHal-Bench's published one, with "
                   "placeholders {image_content} {question} {reference} {answer} (default: rlhfv's rubric)")  # fmt: skip
    p.add_argument("--ratings", choices=["official", "lenient"], default="official", help="official (default): "
                   "a reply without exactly one 'rating: N' is rated 0, as summarize_gpt_mmhal.py; lenient: more "
                   "forms accepted, a malformed reply stops the run")  # fmt: skip
    p.add_argument("--max-tokens", type=int, default=None, help="judge reply limit (default: none, as "
                   "eval_gpt_mmhal.py)")  # fmt: skip
    add_endpoint_arguments(p)
    _add_output_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_guard(_run_mmhal_judge))


def _run_mmhal_judge(args) -> int:
    import hashlib

    from rlhfv.endpoint import client_from_args
    from rlhfv.eval import mmhal
    from rlhfv.eval.io import EvalInputError
    from rlhfv.eval.judge import judge_items, load_prompt

    items, missing = mmhal.judge_inputs(args.responses, args.allow_missing)
    if not items:
        raise EvalInputError(f"{args.responses}: no answered item to rate")
    template = load_prompt(args.prompt_file) if args.prompt_file else None
    client = client_from_args(args)
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


def add_objhal_score(sub) -> None:
    from rlhfv.endpoint import add_endpoint_arguments
    from rlhfv.eval.object_halbench import OFFICIAL_EXTRACTOR

    p = sub.add_parser("score", help="CHAIR_s, CHAIR_i and recall, as the official script computes them")
    p.add_argument("--questions", required=True, help="the question file")
    p.add_argument("--answers", required=True, help="answers JSONL (id or question_id, answer or text)")
    p.add_argument("--instances", required=True, action="append", help="COCO instances_val2014.json (repeat to "
                   "add instances_train2014.json, as the official code does)")  # fmt: skip
    p.add_argument("--captions", required=True, action="append", help="COCO captions_val2014.json (repeatable)")
    p.add_argument("--synonyms", default=None, help="the benchmark's eval/data/synonyms_refine.txt (RLHF-V "
                   "repository); without it rlhfv's own table, not comparable with papers")  # fmt: skip
    p.add_argument("--extract", choices=["rule", "llm"], default="rule", help="rule (default): the answer's own "
                   "words, the official script without --use_gpt; llm: an extractor model lists the objects, the "
                   "papers' protocol (--use_gpt)")  # fmt: skip
    p.add_argument("--prompt-file", default=None, help="the extraction prompt: RLHF-V's eval/eval_gpt_obj_halbench.py "
                   "(its prompt_template is read) or a text file with {question} and {answer}; without it rlhfv's "
                   "own prompt, not comparable with papers")  # fmt: skip
    p.add_argument("--spacy-model", default="en_core_web_trf", help="spaCy model for the extracted names "
                   "(default en_core_web_trf, the official script's)")  # fmt: skip
    add_endpoint_arguments(p, model_env="RLHFV_EXTRACTOR_MODEL", what=f"extractor (default {OFFICIAL_EXTRACTOR}, "
                           "the official script's; retired: name a substitute)")  # fmt: skip
    add_language_arguments(p)
    _add_output_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_guard(_run_objhal_score))


def _run_objhal_score(args) -> int:
    import os

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
        from rlhfv.endpoint import client_from_args

        if not args.model and not os.environ.get(args.endpoint_model_env):
            args.model = ohb.OFFICIAL_EXTRACTOR
        setup["client"] = client_from_args(args)
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


def add_amber_score(sub) -> None:
    p = sub.add_parser("score", help="AMBER's metrics, as its inference.py computes them")
    p.add_argument("--answers", required=True, help="answers JSONL, or AMBER's JSON list of {id, response}")
    p.add_argument("--queries", required=True, help="the query file that was answered (sets the expected items)")
    p.add_argument("--annotations", required=True, help="data/annotations.json")
    p.add_argument("--relation", required=True, help="data/relation.json")
    p.add_argument("--safe-words", required=True, help="data/safe_words.txt")
    p.add_argument("--metrics", default=None, help="data/metrics.txt, the counters' starting values (default: "
                   "metrics.txt beside --annotations)")  # fmt: skip
    p.add_argument("--similarity-threshold", type=float, default=0.8, help="word-vector similarity above which "
                   "two words match (default 0.8, AMBER's)")  # fmt: skip
    p.add_argument("--spacy-model", default="en_core_web_lg", help="word vectors (default en_core_web_lg, AMBER's)")
    p.add_argument("--yes-no", choices=["exact", "first-word"], default="exact", help="discriminative answers: "
                   "exactly 'Yes'/'No' as AMBER's script (default), or the first word, case and punctuation "
                   "ignored (a deviation the report names)")  # fmt: skip
    add_language_arguments(p)
    _add_output_arguments(p)
    p.set_defaults(func=_guard(_run_amber_score))


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
