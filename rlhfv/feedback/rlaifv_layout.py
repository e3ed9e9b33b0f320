"""Scored answers in the layout RLAIF-V's `utils/get_preference_pairs.py` reads -> rlhfv's pair rules.

Two files, as RLAIF-V's pipeline writes them (RLHF-V/RLAIF-V, script/data_gen/construct_pairs.sh):
    answers (the divided answers, `--gpt_divide_gq_path`): one row per answer
        {question_id, ds_question_id, raw_question, question?, answer, facts: [claim, ...],
         metainfos: {image_path, reference?, origin_file?}}
    judgements (the labeler's output, `--autocheck_path`): one row per claim question
        {question_id (the answer's), raw_question or question (the claim's yes/no question),
         scores: {yes, Yes, no, No}, ds_question_id or metainfos.ds_question_id,
         metainfos: {metainfos: {origin_question}}}
Either file may be JSONL or one JSON list.

Read as RLAIF-V's code reads them: answers rows whose (ds_question_id, raw_question) reappears after another
instruction's rows are left out (its `filter_same_instruct`; counted); a claim is true when P(yes)+P(Yes) >
P(no)+P(No); an answer's score is minus its false judgements; its judgements are keyed by question text, and an
answer whose number of distinct judged questions differs from its number of non-empty facts is left out of the pairs.
Answers are grouped for pairing by (ds_question_id, origin_question) and capped per ds_question_id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from data_tools.errors import CommandError
from rlhfv.feedback.pairing import Candidate


@dataclass
class ScoredSet:
    groups: dict[str, list[Candidate]]  # "ds_question_id@origin_question" -> scored answers
    answers: dict[str, dict]  # question_id (as text) -> answers row
    judgements: dict[str, dict[str, str]]  # question_id -> {question text: "1" true / "0" false}
    counts: dict = field(default_factory=dict)


def read_records(path: str | Path) -> list[tuple[str, dict]]:
    """(where, row) for every row of a JSON list or JSONL file; `where` names the file and row."""
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, list):
        rows = [(f"{path}: item {n}", row) for n, row in enumerate(whole)]
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((f"{path}: line {n}", json.loads(line)))
                except json.JSONDecodeError as error:
                    raise CommandError(f"{path}: line {n}: not JSON ({error.msg})") from None
    for where, row in rows:
        if not isinstance(row, dict):
            raise CommandError(f"{where}: a row must be a JSON object; got {type(row).__name__}")
    return rows


def need(where: str, row: dict, *keys: str):
    """row[keys[0]][keys[1]]..., or a one-line error naming the file, row and field."""
    value = row
    for depth, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise CommandError(f"{where}: field '{'.'.join(keys[: depth + 1])}' is missing")
        value = value[key]
    return value


def first_blocks(rows: list[tuple[str, dict]]):
    """RLAIF-V's `filter_same_instruct`: keep each instruction's first run of consecutive rows; (kept, left out)."""
    seen, current, kept, left_out = set(), None, [], 0
    for where, row in rows:
        key = f"{need(where, row, 'ds_question_id')}@{need(where, row, 'raw_question')}"
        if key != current:
            if key in seen:
                left_out += 1
                continue
            seen.add(key)
            current = key
        kept.append((where, row))
    return kept, left_out


def judged(where: str, row: dict, min_answer_probability: float) -> bool | None:
    scores = need(where, row, "scores")
    try:
        p_yes = float(need(where, row, "scores", "yes")) + float(need(where, row, "scores", "Yes"))
        p_no = float(need(where, row, "scores", "no")) + float(need(where, row, "scores", "No"))
    except (TypeError, ValueError):
        raise CommandError(f"{where}: field 'scores' must hold numbers; got {scores!r}") from None
    if p_yes + p_no < min_answer_probability:
        return None
    return p_yes > p_no


def read_scored(
    answers_path, judgements_path, keep_repeated_claims: bool = False, min_answer_probability: float = 0.0
) -> ScoredSet:
    """The scored answers of the two files, grouped for pairing; answers that cannot be paired are counted."""
    answer_rows, repeated_blocks = first_blocks(read_records(answers_path))
    answers: dict[str, dict] = {}
    for where, row in answer_rows:
        qid = str(need(where, row, "question_id"))
        if qid in answers:
            raise CommandError(f"{where}: field 'question_id': {qid} is used by an earlier answer")
        for key in ("answer", "facts"):
            need(where, row, key)
        need(where, row, "metainfos", "image_path")
        answers[qid] = row
    labels: dict[str, list[bool | None]] = {}
    judgements: dict[str, dict[str, str]] = {}
    groups_ids: dict[str, list[str]] = {}
    for where, row in read_records(judgements_path):
        qid = str(need(where, row, "question_id"))
        if qid not in answers:
            continue  # as RLAIF-V: judgements of answers left out (or absent) are not read
        metainfos = need(where, row, "metainfos")
        ds_id = (
            metainfos["ds_question_id"]
            if isinstance(metainfos, dict) and "ds_question_id" in metainfos
            else (need(where, row, "ds_question_id"))
        )
        group = f"{ds_id}@{need(where, row, 'metainfos', 'metainfos', 'origin_question')}"
        question = row["raw_question"] if "raw_question" in row else need(where, row, "question")
        verdict = judged(where, row, min_answer_probability)
        labels.setdefault(qid, []).append(verdict)
        judgements.setdefault(qid, {})[question] = "" if verdict is None else str(int(verdict))
        if qid not in groups_ids.setdefault(group, []):
            groups_ids[group].append(qid)
    counts = {
        "answers": len(answers),
        "answers_repeated_instruction": repeated_blocks,
        "answers_unjudged": 0,
        "answers_claim_count_mismatch": 0,
        "answers_unlabeled": 0,
    }
    counts["answers_unjudged"] = sum(qid not in labels for qid in answers)
    pairable = set()
    for qid, verdicts in labels.items():
        facts = [fact for fact in answers[qid]["facts"] if fact != ""]
        count = len(verdicts) if keep_repeated_claims else len(judgements[qid])
        if any(v is None for v in verdicts):
            counts["answers_unlabeled"] += 1
        elif count != len(facts):
            counts["answers_claim_count_mismatch"] += 1
        else:
            pairable.add(qid)
    groups = {}
    for group, qids in groups_ids.items():
        groups[group] = [
            Candidate(qid, answers[qid]["answer"], sum(labels[qid]) - len(labels[qid]))
            for qid in qids
            if qid in pairable
        ]
    return ScoredSet(groups, answers, judgements, counts)


def cap_group_of(group: str) -> str:
    """RLAIF-V caps pairs per ds_question_id: the group key without its last '@' part (the question)."""
    return group.rsplit("@", 1)[0]


def read_picks(path: str | Path) -> dict[str, list[tuple[str, str]]]:
    """Picks file: one row per ds_question_id, {ds_question_id, pairs: [[chosen question_id, rejected question_id],
    ...]}: the pairs a run of the random cap kept (e.g. RLAIF-V's unseeded `random.sample`)."""
    picks: dict[str, list[tuple[str, str]]] = {}
    for where, row in read_records(path):
        group = str(need(where, row, "ds_question_id"))
        pairs = need(where, row, "pairs")
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise CommandError(f"{where}: field 'pairs' must be a list of [chosen, rejected] question ids")
        if group in picks:
            raise CommandError(f"{where}: field 'ds_question_id': {group} has an earlier row")
        picks[group] = [(str(c), str(r)) for c, r in pairs]
    return picks
