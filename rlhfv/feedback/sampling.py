"""Instructions -> N sampled answers each (RLAIF-V: 10 per instruction, temperature 0.7, the same decoding for all,
so answers differ by chance and not by style). Appends one line per instruction as batches finish: a crashed run
resumes with the instructions not yet answered. Each batch is seeded by (seed, its first instruction id)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from rlhfv.eval.io import EvalInputError


IMAGE_MISSING = "image_missing"
IMAGE_UNREADABLE = "image_unreadable"


def check_image(row: dict) -> tuple[str, str] | None:
    """(reason, detail) when the row's image cannot be used, else None."""
    if "_image_path" not in row:
        return None
    path = Path(row["_image_path"])
    if not path.is_file():
        return IMAGE_MISSING, f"no such file {path}"
    try:
        from PIL import Image

        with Image.open(path) as image:
            image.convert("RGB")
    except Exception as error:  # PIL raises many kinds for a broken file
        return IMAGE_UNREADABLE, f"{path}: {type(error).__name__}: {error}"
    return None


def done_ids(path: Path) -> set[str]:
    from rlhfv.eval.generate import done_ids as generation_done_ids

    try:
        return generation_done_ids(path)
    except EvalInputError as error:
        from data_tools.errors import CommandError

        raise CommandError(str(error)) from None


def sample_answers(rows: list[dict], out: Path, get_model, config, fail) -> int:
    """Sample `config.num_samples` answers for every row not yet in `out`; returns how many rows were done now.

    `get_model()` loads the policy on first use; `fail(reject)` is called for each bad row (it raises under
    on_error=fail)."""
    import torch
    from tqdm.auto import tqdm

    from rlhfv.eval.generate import GenerationOptions, decode, generate_batch

    done = done_ids(out)
    todo = [row for row in rows if row["id"] not in done]
    if not todo:
        return 0
    options = GenerationOptions(
        max_new_tokens=config.max_new_tokens, do_sample=True, temperature=config.temperature, top_p=config.top_p,
        top_k=0, seed=config.seed,
    )  # fmt: skip
    with out.open("a", encoding="utf-8") as f, tqdm(
        total=len(todo), desc="sample", unit="instruction", disable=not config.progress
    ) as bar:  # fmt: skip
        good = []
        for row in todo:
            problem = check_image(row)
            if problem is None:
                good.append(row)
                continue
            reject = {"reason": problem[0], "where": row["_where"], "field": "image", "detail": problem[1]}
            fail(reject)
            f.write(json.dumps({"id": row["id"], "question": row["question"], "reject": reject}) + "\n")
            bar.update(1)
        f.flush()
        loaded = get_model() if good else None
        for start in range(0, len(good), config.sample_batch_size):
            batch = good[start : start + config.sample_batch_size]
            # seeded by the batch's first instruction: reproducible, and distinct across processes
            torch.manual_seed(zlib.crc32(f"{config.seed}:{batch[0]['id']}".encode()))
            samples = generate_batch(loaded, batch, options, num_return_sequences=config.num_samples)
            for row, answers in zip(batch, samples, strict=True):
                record = {
                    "id": row["id"],
                    "question": row["question"],
                    "answers": [decode(loaded, a) for a in answers],
                }
                if "image" in row:
                    record["image"], record["image_path"] = row["image"], row["_image_path"]
                f.write(json.dumps(record) + "\n")
            f.flush()
            bar.update(len(batch))
    return len(todo)
