"""Generate answers for a prompt set with a trained or base model, batched, resumable.

Prompt set: JSONL (or a JSON list) of `{id, image, question}`; `image` is a path, relative to the prompt file's
folder unless absolute, and may be left out for text-only models. Output: JSONL of `{id, image, question, answer}`
(plus `candidates` with their rewards under best-of-N), one line per prompt, appended as batches finish, so an
interrupted run resumes where it stopped and scoring never needs generation again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from data_tools.images import is_inside
from rlhfv.eval.io import EvalInputError, check_answers_output, check_unique_ids, read_rows, require, row_id

# the prompt rendering every sampler shares (re-exported: callers import them from here)
from rlhfv.generation.inputs import build_inputs, chat_messages, render_prompt  # noqa: F401


logger = logging.getLogger(__name__)


@dataclass
class GenerationOptions:
    max_new_tokens: int = 256
    batch_size: int = 8
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0
    # best-of-N (RLAIF-V self-feedback); 1 = plain generation
    best_of: int = 1
    beta: float = 0.1
    extra: dict = field(default_factory=dict)

    def generate_kwargs(self) -> dict:
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample, **self.extra}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return kwargs


@dataclass
class LoadedModel:
    model: object
    processor: object  # a processor (VLM) or a tokenizer (text-only model)
    path: str

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def is_vision(self) -> bool:
        return hasattr(self.processor, "image_processor")

    @property
    def is_peft(self) -> bool:
        return hasattr(self.model, "disable_adapter") and hasattr(self.model, "peft_config")


def check_generation_ranges(settings) -> None:
    """The decoding numbers every generating command shares, in range (`rlhfv eval` and the benchmarks)."""
    from data_tools.settings import check_range

    check_range("batch_size", settings.batch_size, minimum=1)
    check_range("max_new_tokens", settings.max_new_tokens, minimum=1)
    check_range("temperature", settings.temperature, above=0)
    check_range("top_p", settings.top_p, above=0, maximum=1)
    check_range("top_k", settings.top_k, minimum=0)  # 0 = off
    check_range("seed", settings.seed, minimum=0)
    check_range("num_beams", getattr(settings, "num_beams", 1), minimum=1)


def load_model(path: str | Path, device: str | None = None, dtype: str = "auto") -> LoadedModel:
    """A model saved by the trainer (model + processor), a base model folder, or a PEFT adapter folder.

    Vision-language models load with `AutoModelForImageTextToText`, text models with `AutoModelForCausalLM`; an
    adapter folder (`adapter_config.json`) loads its base model and puts the adapter on it.
    """
    import torch
    from transformers import AutoConfig, AutoProcessor, AutoTokenizer

    path = Path(path)
    if not path.exists():
        raise EvalInputError(f"{path}: no such model folder")
    base_path = path
    adapter = (path / "adapter_config.json").is_file()
    if adapter:
        from peft import PeftConfig

        base_path = Path(PeftConfig.from_pretrained(str(path)).base_model_name_or_path)
    try:
        config = AutoConfig.from_pretrained(str(base_path))
    except (OSError, ValueError) as error:  # no config.json, or one no transformers class reads
        raise EvalInputError(f"{base_path}: not a model folder ({' '.join(str(error).split())})") from None
    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    if hasattr(config, "vision_config"):
        from transformers import AutoModelForImageTextToText as auto_class
    else:
        from transformers import AutoModelForCausalLM as auto_class
    model = auto_class.from_pretrained(str(base_path), dtype=torch_dtype)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(path))
    processor_path = path if (path / "tokenizer_config.json").is_file() else base_path
    processor = AutoProcessor.from_pretrained(str(processor_path))
    if not hasattr(processor, "image_processor") and not hasattr(processor, "apply_chat_template"):
        processor = AutoTokenizer.from_pretrained(str(processor_path))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    return LoadedModel(model, processor, str(path))


def read_prompts(path: str | Path, strict_paths: bool = False) -> list[dict]:
    """Prompt rows {id, question, image?}; the image under any name the converter's readers know (`image`,
    `image_path`, ...), relative to the file's folder. `strict_paths`: an image outside that folder is refused."""
    rows = read_rows(path)
    check_unique_ids(rows)
    base = Path(path).parent
    for row in rows:
        require(row, "question")
        key = _image_key(row)
        if key is not None:
            image = Path(require(row, key))
            resolved = image if image.is_absolute() else base / image
            if strict_paths and not is_inside(resolved, [base]):
                raise EvalInputError(
                    f"{row['_where']}: field {key!r}: image path {str(image)!r} leads outside {base.resolve()} "
                    "(--strict-paths)"
                )
            if not resolved.is_file():
                raise EvalInputError(f"{row['_where']}: field {key!r}: no such file {resolved}")
            row["_image_path"] = resolved
            row.setdefault("image", row[key])
    return rows


def _image_key(row: dict) -> str | None:
    """The column holding the row's one image path, or None for a text-only prompt."""
    from data_tools.errors import RowError
    from data_tools.formats import image_fields

    try:
        images = image_fields({k: v for k, v in row.items() if k != "_where"})
    except RowError as error:
        raise EvalInputError(f"{row['_where']}: field {error.field!r}: {error.detail}") from None
    if not images:
        return None
    if images[0][0].startswith("images["):
        raise EvalInputError(f"{row['_where']}: field 'images': a prompt takes one image path, under 'image'")
    return images[0][0]


def done_ids(out: Path, answer_field: str | None = None) -> set[str]:
    """Ids already done in `out`. A last line cut short by an interruption is removed (it is redone). With
    `answer_field`, a row counts only when it holds that text field (a prompts file is no answers file)."""
    if not out.is_file():
        return set()
    text = out.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    ids = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            # resume counts a row only when it holds an answer: a prompts file as --out is no answers file
            if answer_field is not None and not isinstance(record.get(answer_field), str):
                raise EvalInputError(
                    f"{out}:line {number}: no {answer_field!r} field: {out} is not an answers file; name another --output_dir"
                )
            ids.add(str(record["id"]))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            if number == len(lines) and not line.endswith("\n"):
                logger.warning("%s: dropping an incomplete last line (an interrupted run); it will be redone", out)
                out.write_text("".join(lines[:-1]), encoding="utf-8")
                break
            raise EvalInputError(f"{out}:line {number}: not an answer row; remove or fix it to resume") from None
    return ids


def trim_answer(token_ids: list[int], eos_ids: set[int], pad_id: int | None) -> list[int]:
    """Generated tokens up to and including the first end-of-sequence token; padding after it is dropped."""
    answer = []
    for token in token_ids:
        if token in eos_ids:
            answer.append(token)
            break
        if token == pad_id:
            break
        answer.append(token)
    return answer


def eos_token_ids(loaded: LoadedModel) -> set[int]:
    ids = loaded.model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    ids.add(loaded.tokenizer.eos_token_id)
    return ids


def generate_batch(loaded: LoadedModel, rows: list[dict], options: GenerationOptions, num_return_sequences: int = 1):
    """Per row, `num_return_sequences` answers as token id lists (trimmed after the end-of-sequence token)."""
    import torch

    inputs = build_inputs(loaded, rows)
    tokenizer = loaded.tokenizer
    eos = eos_token_ids(loaded)
    kwargs = options.generate_kwargs()
    image_token_id = getattr(loaded.processor, "image_token_id", None)
    if loaded.is_vision and image_token_id is not None:
        # an answer holding the image placeholder could not be fed back to the model (best-of-N scoring, training)
        kwargs["suppress_tokens"] = [*kwargs.get("suppress_tokens", []), image_token_id]
    with torch.no_grad():
        output = loaded.model.generate(
            **inputs,
            **kwargs,
            num_return_sequences=num_return_sequences,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=sorted(eos),
        )
    new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
    answers = [trim_answer(tokens, eos, tokenizer.pad_token_id) for tokens in new_tokens]
    return [answers[i * num_return_sequences : (i + 1) * num_return_sequences] for i in range(len(rows))]


def decode(loaded: LoadedModel, token_ids: list[int]) -> str:
    return loaded.tokenizer.decode(token_ids, skip_special_tokens=True).strip()


def generate_answers(
    model_path: str | Path,
    prompts_path: str | Path,
    out_path: str | Path,
    options: GenerationOptions,
    reference_path: str | Path | None = None,
    device: str | None = None,
    dtype: str = "auto",
    progress: bool = True,
    loaded: LoadedModel | None = None,
    reference: LoadedModel | None = None,
    strict_paths: bool = False,
) -> dict:
    """Answer every prompt not yet in `out_path`; returns counts {prompts, skipped, generated}. `strict_paths`:
    refuse image paths that lead outside the prompts file's folder."""
    import torch
    from tqdm.auto import tqdm

    from rlhfv.generation.best_of_n import pick_best

    rows = read_prompts(prompts_path, strict_paths)
    out = Path(out_path)
    check_answers_output(out, [prompts_path, model_path, reference_path])
    skip = done_ids(out, answer_field="answer")
    todo = [row for row in rows if row_id(row) not in skip]
    counts = {"prompts": len(rows), "skipped": len(rows) - len(todo), "generated": 0}
    if not todo:
        return counts
    if options.best_of < 1:
        raise EvalInputError("--best-of must be at least 1")
    if options.best_of > 1 and not options.do_sample:
        raise EvalInputError("best-of-N needs sampling (do_sample=True): greedy decoding gives N identical answers")
    loaded = loaded or load_model(model_path, device, dtype)
    if options.best_of > 1 and reference is None:
        if reference_path is not None:
            reference = load_model(reference_path, device, dtype)
        elif not loaded.is_peft:
            raise EvalInputError(
                "best-of-N needs a reference model: pass --reference PATH (e.g. the SFT model the policy was "
                "trained from), or a PEFT adapter as the model, whose base serves as the reference"
            )
    torch.manual_seed(options.seed)
    with (
        out.open("a", encoding="utf-8") as f,
        tqdm(total=len(todo), desc="generate", unit="prompt", disable=not progress) as bar,
    ):
        for start in range(0, len(todo), options.batch_size):
            batch = todo[start : start + options.batch_size]
            samples = generate_batch(loaded, batch, options, num_return_sequences=options.best_of)
            for row, candidates in zip(batch, samples, strict=True):
                record = {"id": row["id"], "question": row["question"]}
                if "image" in row:
                    record["image"] = row["image"]
                if options.best_of == 1:
                    record["answer"] = decode(loaded, candidates[0])
                else:
                    best, rewards = pick_best(loaded, reference, row, candidates, options.beta)
                    record["answer"] = decode(loaded, candidates[best])
                    record["candidates"] = [
                        {"answer": decode(loaded, c), "reward": r} for c, r in zip(candidates, rewards, strict=True)
                    ]
                f.write(json.dumps(record) + "\n")
                counts["generated"] += 1
            f.flush()
            bar.update(len(batch))
    return counts
