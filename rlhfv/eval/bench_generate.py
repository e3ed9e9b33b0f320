"""Answering a benchmark's prompts: batched, resumable, with the decoding settings written next to the answers.

Every benchmark command turns its official files into prompt rows `{id, question, image}` (an image is a file path
or the image bytes) and calls `generate_for_benchmark`. Answers are appended to a JSONL file `{id, question, image,
answer}` as each batch finishes; a rerun skips the ids already there, so a crash at item 900 restarts at item 900.
The decoding settings go to `<answers>.settings.json`; resuming with other settings is refused, because one answer
file must not mix two decodings.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path

from data_tools.outputs import write_text
from rlhfv.eval.io import EvalInputError, check_answers_output
from rlhfv.generation.generate import GenerationOptions, decode, done_ids, generate_batch, load_model


def settings_path(answers: str | Path) -> Path:
    answers = Path(answers)
    return answers.with_name(answers.stem + ".settings.json")


def decoding_settings(benchmark: str, model: str, options: GenerationOptions, prompt_suffix: str) -> dict:
    options_dict = asdict(options)
    # batch size is no decoding setting: a run that ran out of memory must be able to resume with a smaller one
    for unused in ("extra", "best_of", "beta", "batch_size"):
        options_dict.pop(unused)
    if not options.do_sample:  # greedy decoding ignores them; recording them would suggest otherwise
        for unused in ("temperature", "top_p", "top_k", "seed"):
            options_dict.pop(unused)
    return {
        "benchmark": benchmark,
        "model": str(model),
        "decoding": {**options_dict, "num_beams": options.extra.get("num_beams", 1)},
        "prompt_suffix": prompt_suffix,
    }


def check_settings(path: Path, settings: dict, answers: Path, batch_size: int) -> None:
    """Refuse to resume an answer file written with other settings; record the settings (and the batch sizes
    used, run after run) next to the answers."""
    batch_sizes = []
    if path.is_file() and answers.is_file() and answers.stat().st_size > 0:
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
            batch_sizes = before.pop("batch_sizes", [])
        except (ValueError, AttributeError):
            raise EvalInputError(
                f"{path}: unreadable decoding settings of {answers}; delete both files to start again"
            ) from None
        if before != settings:
            changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            raise EvalInputError(
                f"{answers} was generated with other settings ({', '.join(changed)} differ; see {path}); one answer "
                "file must not mix two decodings: pass another --output_dir, or delete both files to start again"
            )
    if not batch_sizes or batch_sizes[-1] != batch_size:
        batch_sizes.append(batch_size)
    write_text(path, json.dumps({**settings, "batch_sizes": batch_sizes}, indent=2) + "\n")  # whole or not at all


def generate_for_benchmark(
    benchmark: str,
    model_path: str | Path,
    rows: list[dict],
    out_path: str | Path,
    options: GenerationOptions,
    prompt_suffix: str = "",
    device: str | None = None,
    dtype: str = "auto",
    progress: bool = True,
    loaded=None,
    inputs: tuple = (),
) -> dict:
    """Answer every row not yet in `out_path`; returns counts {prompts, skipped, generated}. `inputs`: the files
    the rows came from (the answers never replace them).

    `rows`: dicts with `id` (str), `question`, `_image` (a Path or the image bytes), `_where` (for errors) and
    optionally `image` (the name written to the answers).
    """
    import torch
    from tqdm.auto import tqdm

    out = Path(out_path)
    check_answers_output(out, [model_path, *inputs])
    seen: set[str] = set()
    for row in rows:
        if row["id"] in seen:
            raise EvalInputError(f"{row['_where']}: duplicate id {row['id']!r}")
        seen.add(row["id"])
        if isinstance(row["_image"], Path) and not row["_image"].is_file():
            raise EvalInputError(f"{row['_where']}: image not found: {row['_image']}")
    settings = decoding_settings(benchmark, model_path, options, prompt_suffix)
    check_settings(settings_path(out), settings, out, options.batch_size)
    skip = done_ids(out, answer_field="answer")
    todo = [row for row in rows if row["id"] not in skip]
    counts = {"prompts": len(rows), "skipped": len(rows) - len(todo), "generated": 0}
    if not todo:
        return counts
    loaded = loaded or load_model(model_path, device, dtype)
    torch.manual_seed(options.seed)

    with (
        out.open("a", encoding="utf-8") as f,
        tqdm(total=len(todo), desc=f"{benchmark} generate", unit="prompt", disable=not progress) as bar,
    ):
        for start in range(0, len(todo), options.batch_size):
            batch = todo[start : start + options.batch_size]
            # build_inputs opens `_image_path` with PIL: a file path, or a fresh buffer over embedded image bytes
            prompts = [
                {**row, "question": row["question"] + prompt_suffix, "_image_path": _image_source(row)}
                for row in batch
            ]
            samples = generate_batch(loaded, prompts, options)
            for row, prompt, candidates in zip(batch, prompts, samples, strict=True):
                record = {"id": row["id"], "question": prompt["question"]}
                if "image" in row:
                    record["image"] = row["image"]
                record["answer"] = decode(loaded, candidates[0])
                f.write(json.dumps(record) + "\n")
                counts["generated"] += 1
            f.flush()
            bar.update(len(batch))
    return counts


def _image_source(row: dict):
    source = row["_image"]
    return io.BytesIO(source) if isinstance(source, bytes) else source


def read_answers(path: str | Path, id_fields=("id",), answer_fields=("answer",)) -> dict[str, dict]:
    """Answers by id from JSONL or a JSON list; the id and answer field names a benchmark's own files use are
    accepted. Each value is {answer, _where}; a duplicate id or a row without an answer is an error."""
    from rlhfv.eval.io import read_rows

    answers: dict[str, dict] = {}
    for row in read_rows(path):
        id_field = next((f for f in id_fields if f in row), None)
        if id_field is None:
            raise EvalInputError(f"{row['_where']}: missing field {' or '.join(map(repr, id_fields))}")
        answer_field = next((f for f in answer_fields if f in row), None)
        if answer_field is None or not isinstance(row[answer_field], str):
            raise EvalInputError(f"{row['_where']}: missing or non-text field {' or '.join(map(repr, answer_fields))}")
        key = str(row[id_field])
        if key in answers:
            raise EvalInputError(f"{row['_where']}: duplicate id {key!r} (first at {answers[key]['_where']})")
        answers[key] = {"answer": row[answer_field], "_where": row["_where"]}
    return answers


def missing_report(expected_ids: list[str], answers: dict[str, dict], allow_missing: bool, what: str) -> list[str]:
    """Ids with no answer. Without `allow_missing` any is an error; with it they are returned for the report."""
    missing = [i for i in expected_ids if i not in answers]
    if missing and not allow_missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise EvalInputError(
            f"{len(missing)} of {len(expected_ids)} {what} have no answer (ids {shown}); finish generation (it "
            "resumes), or pass --allow-missing to score the answered ones and list the missing in the report"
        )
    return missing
