"""`FeedbackConfig`: every option of `rlhfv feedback`, with RLAIF-V's defaults; also one round's settings in
`rlhfv iterate` recipes. Read by the settings parser of every command (data_tools/settings.py); every field's range is
checked at start."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from data_tools.errors import CommandError
from data_tools.settings import SettingError, check_choice, check_range, output_field
from rlhfv.feedback.instructions import INSTRUCTION_FORMATS
from rlhfv.feedback.spans import CHOSEN_SPAN_MODES


SPLITTERS = ("rule", "transformers", "endpoint")
ON_ERROR = ("fail", "skip")
SAMPLERS = ("transformers", "vllm")
STAGES = ("sample", "claims", "label", "score", "pairs", "dataset")


@dataclass
class FeedbackConfig:
    prompts: str = field(
        default="",
        metadata={
            "required": True,
            "help": "Instructions: a prompts file {id, question, image?} or any input `rlhfv convert` reads (RLHF-V, "
            "RLAIF-V, LLaVA-RLHF, pairs, corrections; JSONL, JSON, Parquet or a datasets folder); one instruction per "
            "distinct (image, question).",
        },
    )
    prompts_format: str = field(
        default="auto",
        metadata={
            "help": f"Layout of prompts: auto (detected from the columns, as the converter does) or one of "
            f"{INSTRUCTION_FORMATS}."
        },
    )
    prompts_image_root: str | None = field(
        default=None,
        metadata={"help": "Folder that image paths in prompts are relative to (default: the prompts file's folder)."},
    )
    strict_paths: bool = field(
        default=False,
        metadata={
            "help": "Refuse image paths in prompts that lead outside prompts_image_root (or the prompts file's "
            "folder), as `rlhfv convert --strict-paths` does."
        },
    )
    images_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where images embedded in the prompts rows are written, once, named by content hash "
            "(default: <output_dir>/images)."
        },
    )
    policy: str = field(
        default="",
        metadata={"required": True, "help": "The model that samples the answers (a saved model folder)."},
    )
    out: str = output_field("Output folder: every stage's file, the dataset, the summary.", required=True, default="")
    # sampling (RLAIF-V: 10 answers, temperature 0.7, the same decoding for all)
    sampler: str = field(
        default="transformers",
        metadata={
            "help": f"One of {SAMPLERS}: transformers `generate`, or vLLM's offline engine "
            "(pip install 'rlhfv[vllm]'; a GPU)."
        },
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.9,
        metadata={
            "help": "sampler vllm: share of the GPU's memory the engine takes (lower it when a labeler shares the "
            "GPU); in (0, 1]."
        },
    )
    vllm_max_model_len: int | None = field(
        default=None,
        metadata={"help": "sampler vllm: longest prompt + answer in tokens (default: the model's)."},
    )
    num_samples: int = field(default=10, metadata={"help": "Answers sampled per instruction (at least 2)."})
    temperature: float = field(
        default=0.7, metadata={"help": "Sampling temperature (one setting for all answers; > 0)."}
    )
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold in (0, 1] (1 = off)."})
    max_new_tokens: int = field(default=512, metadata={"help": "Longest sampled answer, in tokens."})
    sample_batch_size: int = field(default=8, metadata={"help": "Instructions per generation batch."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling and of the pair cap's random pick."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: cuda when available)."})
    # claims and questions
    claim_splitter: str = field(
        default="rule",
        metadata={
            "help": f"One of {SPLITTERS}: rule-based (no model), a local transformers LLM (llm_model), or the "
            "endpoint."
        },
    )
    question_writer: str = field(default="rule", metadata={"help": f"One of {SPLITTERS}, as claim_splitter."})
    llm_model: str | None = field(default=None, metadata={"help": "Local LLM folder for the transformers options."})
    claims_prompt_file: str | None = field(
        default=None,
        metadata={"help": "Claim-splitting prompt with {question} and {answer} (default: prompts.CLAIMS_PROMPT)."},
    )
    question_prompt_file: str | None = field(
        default=None, metadata={"help": "Question prompt with {claim} (default: prompts.QUESTION_PROMPT)."}
    )
    question_template: str | None = field(
        default=None, metadata={"help": "Rule-based question with {claim} (default: prompts.QUESTION_TEMPLATE)."}
    )
    # labeling
    labeler: str = field(
        default="self",
        metadata={
            "help": "'self' (the policy), 'endpoint', 'truth' (synthetic world, needs truth_scenes), or a "
            "transformers model folder."
        },
    )
    truth_scenes: str | None = field(
        default=None, metadata={"help": "scenes.json of a synthetic world (labeler: truth)."}
    )
    label_batch_size: int = field(default=16, metadata={"help": "Questions per labeler forward pass."})
    min_answer_probability: float = field(
        default=0.0,
        metadata={
            "help": "Least P(yes)+P(Yes)+P(no)+P(No) for a verdict, in [0, 1]; below it the claim has none and its "
            "answer is unscored (a guard against a labeler that is not answering yes/no; 0 = off, as RLAIF-V's "
            "code, which judges yes > no whatever the total)."
        },
    )
    top_logprobs: int = field(default=20, metadata={"help": "Top alternatives asked of the endpoint labeler."})
    # endpoint (claims, questions or labels); the key comes from api_key_env, never from the recipe
    base_url: str | None = field(
        default=None, metadata={"help": "OpenAI-compatible endpoint, e.g. http://localhost:8000/v1."}
    )
    endpoint_model: str | None = field(default=None, metadata={"help": "Model name sent to the endpoint."})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "Environment variable with the API key."})
    endpoint_cache_dir: str | None = field(
        default=None, metadata={"help": "Reply cache (default: <output_dir>/endpoint_cache)."}
    )
    endpoint_timeout: float = field(default=120.0, metadata={"help": "Seconds per endpoint attempt."})
    endpoint_max_retries: int = field(default=5, metadata={"help": "Endpoint retries (openai's backoff)."})
    endpoint_concurrency: int = field(default=4, metadata={"help": "Endpoint requests in flight."})
    # pairs and spans (RLAIF-V's rules)
    min_score_gap: int = field(
        default=1, metadata={"help": "Least score difference of a pair (at least 1: equal scores are no preference)."}
    )
    max_pairs_per_instruction: int = field(
        default=2, metadata={"help": "Pairs kept per instruction, picked at random (<= 0 keeps all)."}
    )
    drop_identical_before_cap: bool = field(
        default=False,
        metadata={
            "help": "Drop pairs of identical texts before the per-instruction cap, so the cap picks among distinct "
            "texts (RLAIF-V's code drops them after the cap)."
        },
    )
    keep_repeated_claims: bool = field(
        default=False,
        metadata={
            "help": "Score answers two of whose claims ask the same question (RLAIF-V's code keys judgements by "
            "question text and drops them)."
        },
    )
    length_balance: bool = field(
        default=True,
        metadata={
            "help": "Drop pairs whose rejected answer is much longer, with the ratio that balances mean lengths."
        },
    )
    chosen_spans: str = field(
        default="none",
        metadata={"help": f"What the chosen answer gets as spans: one of {CHOSEN_SPAN_MODES} (docs/feedback.md)."},
    )
    # errors, progress
    on_error: str = field(
        default="fail",
        metadata={
            "help": "'fail': stop at the first bad input (unreadable image, labeler not answering yes/no, endpoint "
            "failure, answer without claims); 'skip': count it, list it in rejects.jsonl, go on."
        },
    )
    stop_after: str | None = field(
        default=None,
        metadata={"help": f"Stop after this stage (one of {STAGES}), e.g. to check the claims before labeling."},
    )
    progress: bool = field(default=True, metadata={"help": "Progress bars."})

    def __post_init__(self):
        check_choice("claim_splitter", self.claim_splitter, SPLITTERS)
        check_choice("question_writer", self.question_writer, SPLITTERS)
        check_choice("chosen_spans", self.chosen_spans, CHOSEN_SPAN_MODES)
        check_choice("on_error", self.on_error, ON_ERROR)
        check_choice("sampler", self.sampler, SAMPLERS)
        check_choice("prompts_format", self.prompts_format, ("auto", *INSTRUCTION_FORMATS))
        check_choice("stop_after", self.stop_after, STAGES, optional=True)
        self.check_ranges()
        if self.question_template is not None and "{claim}" not in self.question_template:
            raise SettingError(f"`question_template` must contain {{claim}}; got {self.question_template!r}")
        if self.labeler == "truth" and not self.truth_scenes:
            raise CommandError("labeler 'truth' needs truth_scenes: the scenes.json of the synthetic world")
        uses_llm = "transformers" in (self.claim_splitter, self.question_writer)
        if uses_llm and not self.llm_model:
            raise CommandError("the transformers claim splitter / question writer needs llm_model (a model folder)")
        uses_endpoint = "endpoint" in (self.claim_splitter, self.question_writer, self.labeler)
        if uses_endpoint and not self.endpoint_model:
            raise CommandError("an endpoint option is set: give endpoint_model (and base_url for a local server)")
        if self.sampler == "vllm":
            from rlhfv.feedback.vllm_sampling import require_vllm

            require_vllm()  # before any model loads

    def check_ranges(self) -> None:
        """Every number in its range (issue: nonsense settings used to fail deep inside a stage, or not at all)."""
        if self.num_samples < 2:
            raise SettingError(f"`num_samples` must be >= 2 (pairs need two answers); got {self.num_samples}")
        # the answers are sampled: temperature 0 would be greedy decoding, N copies of one answer (RLAIF-V: 0.7)
        check_range("temperature", self.temperature, above=0)
        check_range("top_p", self.top_p, above=0, maximum=1)
        check_range("max_new_tokens", self.max_new_tokens, minimum=1)
        check_range("sample_batch_size", self.sample_batch_size, minimum=1)
        check_range("seed", self.seed, minimum=0)
        check_range("vllm_gpu_memory_utilization", self.vllm_gpu_memory_utilization, above=0, maximum=1)
        check_range("vllm_max_model_len", self.vllm_max_model_len, minimum=1, optional=True)
        check_range("label_batch_size", self.label_batch_size, minimum=1)
        check_range("min_answer_probability", self.min_answer_probability, minimum=0, maximum=1)
        check_range("top_logprobs", self.top_logprobs, minimum=1)
        check_range("endpoint_timeout", self.endpoint_timeout, above=0)
        check_range("endpoint_max_retries", self.endpoint_max_retries, minimum=0)
        check_range("endpoint_concurrency", self.endpoint_concurrency, minimum=1)
        # a gap of 0 pairs answers of equal score: no preference, and a rejected answer without false claims
        check_range("min_score_gap", self.min_score_gap, minimum=1)
        check_range("max_pairs_per_instruction", self.max_pairs_per_instruction)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}
