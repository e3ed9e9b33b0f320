"""Instructions -> N sampled answers each (RLAIF-V: 10 per instruction, temperature 0.7, the same decoding for all,
so answers differ by chance and not by style). Appends one line per instruction as batches finish: a crashed run
resumes with the instructions not yet answered. With transformers each batch is seeded by (seed, its first
instruction id); with vLLM each instruction by (seed, its id)."""

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
    from rlhfv.generation.generate import done_ids as generation_done_ids

    try:
        return generation_done_ids(path)
    except EvalInputError as error:
        from data_tools.errors import CommandError

        raise CommandError(str(error)) from None


def batch_seed(seed: int, first_id: str) -> int:
    """The seed of a batch (transformers) or of one instruction (vLLM): reproducible, distinct across processes."""
    return zlib.crc32(f"{seed}:{first_id}".encode())


class TransformersSampler:
    """`num_samples` answers per row with transformers `generate` (the policy loaded by `get_model()` on first use)."""

    def __init__(self, get_model, config):
        self.get_model, self.config = get_model, config

    def sample(self, batch: list[dict]) -> list[list[str]]:
        import torch

        from rlhfv.generation.generate import GenerationOptions, decode, generate_batch

        c = self.config
        options = GenerationOptions(
            max_new_tokens=c.max_new_tokens,
            do_sample=True,
            temperature=c.temperature,
            top_p=c.top_p,
            top_k=0,
            seed=c.seed,
        )
        loaded = self.get_model()
        torch.manual_seed(batch_seed(c.seed, batch[0]["id"]))
        samples = generate_batch(loaded, batch, options, num_return_sequences=c.num_samples)
        return [[decode(loaded, a) for a in answers] for answers in samples]


def sample_answers(rows: list[dict], out: Path, sampler, config, fail) -> int:
    """Sample `config.num_samples` answers for every row not yet in `out`; returns how many rows were done now.

    `sampler.sample(batch)` gives the answers of a batch of rows (`TransformersSampler`, or `VLLMSampler` in
    rlhfv.feedback.vllm_sampling); `fail(reject)` is called for each bad row (it raises under on_error=fail)."""
    from tqdm.auto import tqdm

    done = done_ids(out)
    todo = [row for row in rows if row["id"] not in done]
    if not todo:
        return 0
    with (
        out.open("a", encoding="utf-8") as f,
        tqdm(total=len(todo), desc="sample", unit="instruction", disable=not config.progress) as bar,
    ):
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
        for start in range(0, len(good), config.sample_batch_size):
            batch = good[start : start + config.sample_batch_size]
            samples = sampler.sample(batch)
            for row, answers in zip(batch, samples, strict=True):
                record = {"id": row["id"], "question": row["question"], "answers": answers}
                if "image" in row:
                    record["image"], record["image_path"] = row["image"], row["_image_path"]
                f.write(json.dumps(record) + "\n")
            f.flush()
            bar.update(len(batch))
    return len(todo)
