"""`FeedbackConfig`: every option of `rlhfv feedback`, with RLAIF-V's defaults; also one round's settings in
`rlhfv iterate` recipes."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from data_tools.errors import CommandError
from rlhfv.feedback.instructions import INSTRUCTION_FORMATS
from rlhfv.feedback.spans import CHOSEN_SPAN_MODES


SPLITTERS = ("rule", "transformers", "endpoint")
ON_ERROR = ("fail", "skip")
SAMPLERS = ("transformers", "vllm")
STAGES = ("sample", "claims", "label", "score", "pairs", "dataset")


@dataclass
class FeedbackConfig:
    prompts: str = field(default="", metadata={"help": "Instructions: a prompts file {id, question, image?} or any "
                         "input `rlhfv convert` reads (RLHF-V, RLAIF-V, LLaVA-RLHF, pairs, corrections; JSONL, JSON, "
                         "Parquet or a datasets folder); one instruction per distinct (image, question)."})  # fmt: skip
    prompts_format: str = field(default="auto", metadata={"help": f"Layout of prompts: auto (detected from the "
                                f"columns, as the converter does) or one of {INSTRUCTION_FORMATS}."})  # fmt: skip
    prompts_image_root: str | None = field(default=None, metadata={"help": "Folder that image paths in prompts are "
                                           "relative to (default: the prompts file's folder)."})  # fmt: skip
    strict_paths: bool = field(
        default=False,
        metadata={
            "help": "Refuse image paths in prompts that lead outside prompts_image_root (or the prompts file's "
            "folder), as `rlhfv convert --strict-paths` does."
        },
    )
    images_dir: str | None = field(default=None, metadata={"help": "Where images embedded in the prompts rows are "
                                   "written, once, named by content hash (default: <out>/images)."})  # fmt: skip
    policy: str = field(default="", metadata={"help": "The model that samples the answers (a saved model folder)."})
    out: str = field(default="", metadata={"help": "Output folder: every stage's file, the dataset, the summary."})
    # sampling (RLAIF-V: 10 answers, temperature 0.7, the same decoding for all)
    sampler: str = field(default="transformers", metadata={"help": f"One of {SAMPLERS}: transformers `generate`, or "
                         "vLLM's offline engine (pip install 'rlhfv[vllm]'; a GPU)."})  # fmt: skip
    vllm_gpu_memory_utilization: float = field(default=0.9, metadata={"help": "sampler vllm: share of the GPU's "
                                               "memory the engine takes (lower it when a labeler shares the GPU)."})  # fmt: skip
    vllm_max_model_len: int | None = field(default=None, metadata={"help": "sampler vllm: longest prompt + answer "
                                           "in tokens (default: the model's)."})  # fmt: skip
    num_samples: int = field(default=10, metadata={"help": "Answers sampled per instruction."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature (one setting for all answers)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold (1 = off)."})
    max_new_tokens: int = field(default=512, metadata={"help": "Longest sampled answer, in tokens."})
    sample_batch_size: int = field(default=8, metadata={"help": "Instructions per generation batch."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling and of the pair cap's random pick."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: cuda when available)."})
    # claims and questions
    claim_splitter: str = field(default="rule", metadata={"help": f"One of {SPLITTERS}: rule-based (no model), a "
                                "local transformers LLM (llm_model), or the endpoint."})  # fmt: skip
    question_writer: str = field(default="rule", metadata={"help": f"One of {SPLITTERS}, as claim_splitter."})
    llm_model: str | None = field(default=None, metadata={"help": "Local LLM folder for the transformers options."})
    claims_prompt_file: str | None = field(default=None, metadata={"help": "Claim-splitting prompt with {question} "
                                           "and {answer} (default: prompts.CLAIMS_PROMPT)."})  # fmt: skip
    question_prompt_file: str | None = field(default=None, metadata={"help": "Question prompt with {claim} "
                                             "(default: prompts.QUESTION_PROMPT)."})  # fmt: skip
    question_template: str | None = field(default=None, metadata={"help": "Rule-based question with {claim} "
                                          "(default: prompts.QUESTION_TEMPLATE)."})  # fmt: skip
    # labeling
    labeler: str = field(default="self", metadata={"help": "'self' (the policy), 'endpoint', 'truth' (synthetic "
                         "world, needs truth_scenes), or a transformers model folder."})  # fmt: skip
    truth_scenes: str | None = field(
        default=None, metadata={"help": "scenes.json of a synthetic world (labeler: truth)."}
    )
    label_batch_size: int = field(default=16, metadata={"help": "Questions per labeler forward pass."})
    min_answer_probability: float = field(default=0.0, metadata={"help": "Least P(yes)+P(Yes)+P(no)+P(No) for a "
                                          "verdict; below it the claim has none and its answer is unscored (a guard "
                                          "against a labeler that is not answering yes/no; 0 = off, as RLAIF-V's "
                                          "code, which judges yes > no whatever the total)."})  # fmt: skip
    top_logprobs: int = field(default=20, metadata={"help": "Top alternatives asked of the endpoint labeler."})
    # endpoint (claims, questions or labels); the key comes from api_key_env, never from the recipe
    base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible endpoint, e.g. "
                                 "http://localhost:8000/v1."})  # fmt: skip
    endpoint_model: str | None = field(default=None, metadata={"help": "Model name sent to the endpoint."})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "Environment variable with the API key."})
    endpoint_cache_dir: str | None = field(
        default=None, metadata={"help": "Reply cache (default: <out>/endpoint_cache)."}
    )
    endpoint_timeout: float = field(default=120.0, metadata={"help": "Seconds per endpoint attempt."})
    endpoint_max_retries: int = field(default=5, metadata={"help": "Endpoint retries (openai's backoff)."})
    endpoint_concurrency: int = field(default=4, metadata={"help": "Endpoint requests in flight."})
    # pairs and spans (RLAIF-V's rules)
    min_score_gap: int = field(default=1, metadata={"help": "Least score difference of a pair."})
    max_pairs_per_instruction: int = field(default=2, metadata={"help": "Pairs kept per instruction, picked at "
                                           "random (<= 0 keeps all)."})  # fmt: skip
    drop_identical_before_cap: bool = field(default=False, metadata={"help": "Drop pairs of identical texts "
                                            "before the per-instruction cap, so the cap picks among distinct texts "
                                            "(RLAIF-V's code drops them after the cap)."})  # fmt: skip
    keep_repeated_claims: bool = field(default=False, metadata={"help": "Score answers two of whose claims ask the "
                                       "same question (RLAIF-V's code keys judgements by question text and drops "
                                       "them)."})  # fmt: skip
    length_balance: bool = field(default=True, metadata={"help": "Drop pairs whose rejected answer is much longer, "
                                 "with the ratio that balances mean lengths."})  # fmt: skip
    chosen_spans: str = field(default="none", metadata={"help": f"What the chosen answer gets as spans: one of "
                              f"{CHOSEN_SPAN_MODES} (docs/feedback.md)."})  # fmt: skip
    # errors, progress
    on_error: str = field(default="fail", metadata={"help": "'fail': stop at the first bad input (unreadable "
                          "image, labeler not answering yes/no, endpoint failure, answer without claims); 'skip': "
                          "count it, list it in rejects.jsonl, go on."})  # fmt: skip
    stop_after: str | None = field(default=None, metadata={"help": f"Stop after this stage (one of {STAGES}), e.g. "
                                   "to check the claims before labeling."})  # fmt: skip
    progress: bool = field(default=True, metadata={"help": "Progress bars."})

    def __post_init__(self):
        for name, value, choices in (
            ("claim_splitter", self.claim_splitter, SPLITTERS),
            ("question_writer", self.question_writer, SPLITTERS),
            ("chosen_spans", self.chosen_spans, CHOSEN_SPAN_MODES),
            ("on_error", self.on_error, ON_ERROR),
            ("sampler", self.sampler, SAMPLERS),
        ):
            if value not in choices:
                raise CommandError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        if self.sampler == "vllm":
            from rlhfv.feedback.vllm_sampling import require_vllm

            require_vllm()  # before any model loads
        if self.prompts_format not in ("auto", *INSTRUCTION_FORMATS):
            raise CommandError(
                f"prompts_format must be auto or one of {', '.join(INSTRUCTION_FORMATS)}; got {self.prompts_format!r}"
            )
        if self.stop_after is not None and self.stop_after not in STAGES:
            raise CommandError(f"stop_after must be one of {', '.join(STAGES)}; got {self.stop_after!r}")
        if self.num_samples < 2:
            raise CommandError(f"num_samples must be at least 2 (pairs need two answers); got {self.num_samples}")
        if self.temperature <= 0:
            raise CommandError("temperature must be positive: the answers are sampled (RLAIF-V uses 0.7)")
        if self.question_template is not None and "{claim}" not in self.question_template:
            raise CommandError(f"question_template must contain {{claim}}; got {self.question_template!r}")
        if self.labeler == "truth" and not self.truth_scenes:
            raise CommandError("labeler 'truth' needs truth_scenes: the scenes.json of the synthetic world")
        uses_llm = "transformers" in (self.claim_splitter, self.question_writer)
        if uses_llm and not self.llm_model:
            raise CommandError("the transformers claim splitter / question writer needs llm_model (a model folder)")
        uses_endpoint = "endpoint" in (self.claim_splitter, self.question_writer, self.labeler)
        if uses_endpoint and not self.endpoint_model:
            raise CommandError("an endpoint option is set: give endpoint_model (and base_url for a local server)")

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}
