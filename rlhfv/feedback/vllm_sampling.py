"""Sampling with vLLM's offline engine (`sampler: vllm`): the same answers file, resume, rejects and split over
processes as the transformers sampler, much faster on a GPU.

vLLM is an optional dependency (`pip install 'rlhfv[vllm]'`): it pins its own torch build, so it is never required.
Asking for it when it is absent fails at config time, before any model loads (`require_vllm`).

Each request: the prompt rendered with the policy processor's chat template by `rlhfv.generation.generate.render_prompt`
(the function the transformers sampler uses, so both ask the same text), the image through `multi_modal_data`, and
RLAIF-V's settings: n = num_samples, temperature, top_p, max_tokens, a seed per request from (seed, instruction id).
Under `accelerate launch` each process builds its own engine on its own GPU (vLLM's `external_launcher` backend,
as TRL's colocated vLLM does).
"""

from __future__ import annotations

import importlib.util
import os

from data_tools.errors import CommandError
from rlhfv.feedback.sampling import batch_seed


def require_vllm() -> None:
    """Fail in one line when vLLM is not installed, saying what to install and what works without it."""
    if importlib.util.find_spec("vllm") is None:
        raise CommandError(
            "sampler: vllm needs the vllm package, which is not installed: pip install 'rlhfv[vllm]' (or `pip install "
            "vllm` in an environment whose torch matches the vLLM build). `sampler: transformers` (the default, "
            "--sampler transformers) samples without it."
        )


def load_processor(path: str):
    """The policy's processor (a tokenizer for a text-only model), loaded as `rlhfv.generation.generate.load_model` does."""
    from pathlib import Path

    from transformers import AutoProcessor, AutoTokenizer

    if (Path(path) / "adapter_config.json").is_file():
        raise CommandError(
            f"{path}: is a LoRA adapter; sampler: vllm loads a full model folder (merge the adapter first, as "
            "`rlhfv iterate` does, or use sampler: transformers)"
        )
    processor = AutoProcessor.from_pretrained(path)
    if not hasattr(processor, "image_processor") and not hasattr(processor, "apply_chat_template"):
        processor = AutoTokenizer.from_pretrained(path)
    return processor


def build_requests(processor, batch: list[dict]) -> list[dict]:
    """vLLM prompt inputs: {"prompt": text} plus {"multi_modal_data": {"image": PIL image}} for a row with an image."""
    from PIL import Image

    from rlhfv.generation.generate import render_prompt

    requests = []
    for row in batch:
        request = {"prompt": render_prompt(processor, row)}
        if "_image_path" in row:
            with Image.open(row["_image_path"]) as image:
                request["multi_modal_data"] = {"image": image.convert("RGB")}
        requests.append(request)
    return requests


def sampling_params(config, batch: list[dict]) -> list[dict]:
    """The keyword arguments of each request's `vllm.SamplingParams` (RLAIF-V's settings, a seed per request)."""
    return [
        {
            "n": config.num_samples,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "top_k": 0,
            "max_tokens": config.max_new_tokens,
            "seed": batch_seed(config.seed, row["id"]),
            "skip_special_tokens": True,
        }
        for row in batch
    ]


class VLLMSampler:
    """`num_samples` answers per row from one vLLM engine, built on first use."""

    def __init__(self, config, rank: int = 0, world: int = 1):
        require_vllm()
        self.config, self.rank, self.world = config, rank, world
        self._llm = None
        self._processor = None

    def engine(self):
        if self._llm is None:
            from vllm import LLM

            c = self.config
            kwargs = {
                "model": c.policy,
                "seed": c.seed + self.rank,
                "gpu_memory_utilization": c.vllm_gpu_memory_utilization,
                "limit_mm_per_prompt": {"image": 1},
            }
            if c.vllm_max_model_len:
                kwargs["max_model_len"] = c.vllm_max_model_len
            if self.world > 1:
                # one engine per process on its own GPU, inside the process group accelerate started
                kwargs["distributed_executor_backend"] = "external_launcher"
                os.environ.setdefault("RANK", str(self.rank))
                os.environ.setdefault("WORLD_SIZE", str(self.world))
            self._llm = LLM(**kwargs)
            self._processor = load_processor(c.policy)
        return self._llm

    def sample(self, batch: list[dict]) -> list[list[str]]:
        from vllm import SamplingParams

        llm = self.engine()
        params = [SamplingParams(**kwargs) for kwargs in sampling_params(self.config, batch)]
        outputs = llm.generate(build_requests(self._processor, batch), sampling_params=params, use_tqdm=False)
        return [[completion.text.strip() for completion in output.outputs] for output in outputs]

    def close(self) -> None:
        """Drop the engine so that its GPU memory goes back before labeling or training."""
        import gc

        import torch

        self._llm = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
