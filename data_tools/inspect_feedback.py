"""`rlhfv inspect FEEDBACK_FOLDER`: one feedback run (`rlhfv feedback`, or `round_<k>/feedback` of `rlhfv iterate`)
read back per instruction: each sampled answer with its claims coloured by the labeler's verdict and P(yes), the pairs
made from the answers, and why every other pair of answers was not made.

It reads the run's own files (answers, claims, labels, scores, pairs JSONL and pairs_stats.json) and nothing else.
Why a pair was not made is worked out from the scores and the pairs written: unscored answer, equal scores, a score
gap under `--min-score-gap` (the run's `min_score_gap`, 1 by default), identical text, or, for a pair that passed
those, dropped afterwards by the per-instruction cap or the length balancing (the run's totals of each are shown).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path


RUN_FILES = ("answers.jsonl", "claims.jsonl", "labels.jsonl", "scores.jsonl", "pairs.jsonl")
GREEN, RED, YELLOW, DIM, RESET = "\033[32m", "\033[31m", "\033[33m", "\033[2m", "\033[0m"


def is_feedback_run(path: str) -> bool:
    return Path(path).is_dir() and all((Path(path) / name).is_file() for name in ("answers.jsonl", "scores.jsonl"))


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@dataclass
class Answer:
    index: int
    text: str
    claims: list[dict] = field(default_factory=list)  # text, start, end, verdict, p_yes (share of yes), reason
    score: int | None = None
    unscored_reason: str | None = None


@dataclass
class Instruction:
    id: str
    question: str
    image: str | None
    answers: list[Answer]
    pairs: list[dict]
    not_paired: list[tuple[int, int, str]]  # (better answer, worse answer, why no pair)


def _p_yes(label: dict) -> float | None:
    yes, no = label.get("p_yes"), label.get("p_no")
    if yes is None or no is None or yes + no <= 0:
        return None
    return yes / (yes + no)


def load_run(folder: str, min_score_gap: int = 1) -> tuple[list[Instruction], dict]:
    """Every instruction of the run, and the run's pair statistics."""
    root = Path(folder)
    claims = {(r["id"], r["answer_index"]): r["claims"] for r in _jsonl(root / "claims.jsonl")}
    labels = {(r["id"], r["answer_index"]): r["labels"] for r in _jsonl(root / "labels.jsonl")}
    scores = {(r["id"], r["answer_index"]): r for r in _jsonl(root / "scores.jsonl")}
    pairs_by_id: dict[str, list[dict]] = {}
    for pair in _jsonl(root / "pairs.jsonl"):
        pairs_by_id.setdefault(pair["id"], []).append(pair)
    instructions = []
    for row in _jsonl(root / "answers.jsonl"):
        answers = []
        for index, text in enumerate(row.get("answers") or []):
            key = (row["id"], index)
            marked = []
            answer_claims, answer_labels = claims.get(key, []), labels.get(key, [])
            # a claim without a label (labeling stopped or rejected the answer) shows as unlabeled
            padded = (answer_labels + [None] * len(answer_claims))[: len(answer_claims)]
            for claim, label in zip(answer_claims, padded, strict=True):
                marked.append(
                    {
                        **claim,
                        "verdict": None if label is None else label.get("verdict"),
                        "p_yes": None if label is None else _p_yes(label),
                        "reason": None if label is None else label.get("reason"),
                    }
                )
            score = scores.get(key, {})
            answers.append(Answer(index, text, marked, score.get("score"), score.get("reason")))
        pairs = pairs_by_id.get(row["id"], [])
        instructions.append(
            Instruction(
                row["id"],
                row.get("question", ""),
                row.get("image"),
                answers,
                pairs,
                _not_paired(answers, pairs, min_score_gap),
            )
        )
    stats_path = root / "pairs_stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    return instructions, stats


def _not_paired(answers: list[Answer], pairs: list[dict], min_gap: int) -> list[tuple[int, int, str]]:
    made = {(p["chosen_index"], p["rejected_index"]) for p in pairs}
    out = []
    for a in answers:
        for b in answers:
            if a.index >= b.index:
                continue
            better, worse = (a, b) if (a.score or 0) >= (b.score or 0) else (b, a)
            if (better.index, worse.index) in made or (worse.index, better.index) in made:
                continue
            if a.score is None or b.score is None:
                unscored = a if a.score is None else b
                why = f"answer {unscored.index} has no score ({unscored.unscored_reason or 'unscored'})"
            elif a.score == b.score:
                why = f"equal scores ({a.score})"
            elif better.score - worse.score < min_gap:
                why = f"score gap {better.score - worse.score} < min_score_gap {min_gap}"
            elif better.text.strip() == worse.text.strip():
                why = "identical text"
            else:
                why = "dropped after pairing: over the per-instruction cap, or by length balancing"
            out.append((better.index, worse.index, why))
    return out


def _marked(answer: Answer, paint) -> str:
    """The answer with each claim painted by `paint(claim_text, claim)`; text outside claims as it is."""
    parts, at = [], 0
    for claim in sorted(answer.claims, key=lambda c: c.get("start", 0)):
        start, end = claim.get("start"), claim.get("end")
        if start is None or end is None or start < at:
            continue
        parts.append(("plain", answer.text[at:start]))
        parts.append((claim, answer.text[start:end]))
        at = end
    parts.append(("plain", answer.text[at:]))
    return "".join(paint(text, None if kind == "plain" else kind) for kind, text in parts)


def _verdict(claim: dict) -> str:
    return {True: "true", False: "false"}.get(claim.get("verdict"), "unlabeled")


def _p(claim: dict) -> str:
    return "P(yes) ?" if claim.get("p_yes") is None else f"P(yes) {claim['p_yes']:.2f}"


def render_terminal(item: Instruction, color: bool) -> str:
    colours = {"true": GREEN, "false": RED, "unlabeled": YELLOW}

    def paint(text: str, claim: dict | None) -> str:
        if claim is None:
            return text
        verdict = _verdict(claim)
        if color:
            return f"{colours[verdict]}{text}{RESET}{DIM}[{_p(claim)}]{RESET}"
        mark = {"true": "+", "false": "-", "unlabeled": "?"}[verdict]
        return f"{{{mark}{text}{mark}}}[{_p(claim)}]"

    lines = [f"instruction {item.id}: {item.question}" + (f"  (image {item.image})" if item.image else "")]
    for answer in item.answers:
        false = sum(c.get("verdict") is False for c in answer.claims)
        score = "no score" if answer.score is None else f"score {answer.score}"
        lines.append(
            f"  answer {answer.index} ({score}; {false} of {len(answer.claims)} claims false): "
            + _marked(answer, paint).replace("\n", " ")
        )
    lines.append(f"  pairs made: {len(item.pairs)}")
    for pair in item.pairs:
        lines.append(
            f"    chosen {pair['chosen_index']} (score {pair['chosen_score']}) > rejected "
            f"{pair['rejected_index']} (score {pair['rejected_score']})"
        )
    if item.not_paired:
        lines.append("  not paired:")
        lines += [f"    {better} vs {worse}: {why}" for better, worse, why in item.not_paired]
    return "\n".join(lines)


LEGEND = (
    "Claims: {+true+} / {-false-} / {?unlabeled?} by the labeler's verdict, each followed by P(yes), the share of "
    "yes in the labeler's yes/no probabilities."
)
STYLE = """body{font-family:sans-serif;max-width:70em;margin:2em auto;line-height:1.5}
section{border-top:1px solid #ccc;padding:.6em 0}.meta{color:#666;font-size:.9em}
.c{padding:0 .15em;border-radius:.2em}.true{background:#d4f4d4}.false{background:#f8d0d0}.unlabeled{background:#f8f0c0}
.p{font-size:.75em;color:#555;vertical-align:super;margin-left:.1em}td,th{padding:.1em .6em;text-align:left}"""


def render_html(folder: str, items: list[Instruction], total: int, stats: dict) -> str:
    def paint(text: str, claim: dict | None) -> str:
        if claim is None:
            return escape(text)
        verdict, p = _verdict(claim), _p(claim)
        title = f"{verdict}; {p}" + (f"; {claim['reason']}" if claim.get("reason") else "")
        return f'<span class="c {verdict}" title="{escape(title)}">{escape(text)}</span><span class="p">{p}</span>'

    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f"<title>rlhfv inspect: {escape(folder)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Feedback run {escape(folder)}</h1>",
        '<p>Claims: <span class="c true">true</span> <span class="c false">false</span> '
        '<span class="c unlabeled">unlabeled</span>, each followed by P(yes), the share of yes in the labeler\'s '
        "yes/no probabilities.</p>",
        f'<p class="meta">Showing {len(items)} of {total} instructions. Run totals: '
        + escape(", ".join(f"{k} {v}" for k, v in stats.items()))
        + "</p>",
    ]
    for item in items:
        parts.append(f"<section><h3>{escape(item.id)}: {escape(item.question)}</h3>")
        if item.image:
            parts.append(f'<div class="meta">image {escape(item.image)}</div>')
        parts.append("<table><tr><th>answer</th><th>score</th><th>claims false</th><th>text</th></tr>")
        for answer in item.answers:
            false = sum(c.get("verdict") is False for c in answer.claims)
            score = "–" if answer.score is None else str(answer.score)
            parts.append(
                f"<tr><td>{answer.index}</td><td>{score}</td><td>{false} / {len(answer.claims)}</td>"
                f"<td>{_marked(answer, paint)}</td></tr>"
            )
        parts.append("</table>")
        made = "".join(
            f"<li>chosen {p['chosen_index']} (score {p['chosen_score']}) &gt; rejected "
            f"{p['rejected_index']} (score {p['rejected_score']})</li>"
            for p in item.pairs
        )
        parts.append(f"<p><b>Pairs made: {len(item.pairs)}</b></p><ul>{made}</ul>")
        if item.not_paired:
            rows = "".join(f"<li>{b} vs {w}: {escape(why)}</li>" for b, w, why in item.not_paired)
            parts.append(f"<p><b>Not paired</b></p><ul>{rows}</ul>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def run(args, color: bool) -> int:
    """The `inspect` command on a feedback run folder."""
    from data_tools.errors import CommandError

    instructions, stats = load_run(args.dataset, args.min_score_gap)
    if not instructions:
        raise CommandError(f"{args.dataset}: the feedback run has no answered instruction (answers.jsonl is empty)")
    if args.index is not None:
        for index in args.index:
            if not 0 <= index < len(instructions):
                raise CommandError(f"--index {index} is out of range: the run has {len(instructions)} instructions")
        shown = [instructions[i] for i in args.index]
    else:
        shown = instructions[: args.rows]
    print(
        f"feedback run {args.dataset}: {len(instructions)} instructions; "
        + ", ".join(f"{k} {v}" for k, v in stats.items())
    )
    if not color:
        print(LEGEND)
    for item in shown:
        print()
        print(render_terminal(item, color))
    print()
    print(f"Showing {len(shown)} of {len(instructions)} instructions; --rows N or --index I ... shows others.")
    if args.html:
        Path(args.html).write_text(render_html(args.dataset, shown, len(instructions), stats), encoding="utf-8")
        print(f"wrote {args.html}")
    return 0
