"""The conquer step: a labeler answers each claim's yes/no question from the image in one forward pass.

A claim is judged true when P(yes) + P(Yes) > P(no) + P(No) for the first answer token (RLAIF-V). Labelers:
- `TransformersLabeler`: any transformers VLM or LLM (by path), including the policy itself (self-feedback);
  batched, left-padded, one forward pass per batch; the probabilities are summed over every vocabulary token that
  reads as the word once surrounding spaces are removed ("yes", " yes", "▁Yes", ...). A word that no single token
  spells (a small tokenizer may split "yes" into y + es) counts with the probability of its token sequence, read
  from one more forward pass over the prompt followed by those tokens.
- `EndpointLabeler`: an OpenAI-compatible endpoint with log-probabilities (`rlhfv.endpoint`), one token per answer;
  the probabilities come from the first token's top alternatives.
- `TruthLabeler`: the synthetic world's ground truth (the annotator of `experiments.synthetic`), for the CPU recipe
  and for measuring how often a model labeler agrees with the truth.

An endpoint that fails or an image that cannot be read leaves the claim without a verdict, with its reason; so does
a question the labeler does not answer with yes or no (P(yes)+P(Yes)+P(no)+P(No) below `min_answer_probability`)
when that guard is on. It is off by default (0), as in RLAIF-V's code, which judges yes > no whatever the total.
"""

from __future__ import annotations

import base64
import logging
import mimetypes
from dataclasses import asdict, dataclass
from pathlib import Path


logger = logging.getLogger(__name__)

YES_WORDS = ("yes", "Yes")
NO_WORDS = ("no", "No")
# reasons a claim has no verdict
NOT_YES_NO = "labeler_not_yes_no"
ENDPOINT_FAILED = "endpoint_failed"
NO_LOGPROBS = "endpoint_no_logprobs"
IMAGE_UNREADABLE = "image_unreadable"
UNKNOWN_IMAGE = "image_not_in_truth"


@dataclass(frozen=True)
class LabelRequest:
    question: str
    image_path: str | None = None  # a file to show the labeler
    image: str | None = None  # the image as named in the prompts file (the truth labeler's key)
    claim: str = ""


@dataclass(frozen=True)
class Label:
    p_yes: float | None
    p_no: float | None
    verdict: bool | None  # True = the claim is judged true
    reason: str | None = None  # why there is no verdict
    detail: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def decide(p_yes: float, p_no: float, min_answer_probability: float) -> Label:
    """RLAIF-V's rule, with an optional guard (`min_answer_probability` > 0) against a labeler that is not answering
    yes/no at all."""
    if p_yes + p_no < min_answer_probability:
        return Label(
            p_yes,
            p_no,
            None,
            NOT_YES_NO,
            f"P(yes)+P(no) = {p_yes + p_no:.3g} < min_answer_probability {min_answer_probability:g}",
        )
    return Label(p_yes, p_no, p_yes > p_no)


def word_token_ids(tokenizer, words: tuple[str, ...]) -> list[int]:
    """Ids of every vocabulary token that decodes to one of `words` once surrounding spaces are removed."""
    wanted = set(words)
    ids = []
    for token_id in range(len(tokenizer)):
        if tokenizer.decode([token_id]).strip() in wanted:
            ids.append(token_id)
    return ids


def multi_token_words(tokenizer, words: tuple[str, ...], single_ids: list[int]) -> list[list[int]]:
    """Token sequences of the `words` that no single token spells (none of `single_ids` decodes to them)."""
    spelled = {tokenizer.decode([i]).strip() for i in single_ids}
    return [tokenizer.encode(w, add_special_tokens=False) for w in words if w not in spelled]


class TransformersLabeler:
    """A local model (an `rlhfv.generation.generate.LoadedModel`) answering yes/no questions in one forward pass."""

    def __init__(self, loaded, batch_size: int = 16, min_answer_probability: float = 0.0):
        self.loaded = loaded
        self.batch_size = batch_size
        self.min_answer_probability = min_answer_probability
        tokenizer = loaded.tokenizer
        self.yes_ids = word_token_ids(tokenizer, YES_WORDS)
        self.no_ids = word_token_ids(tokenizer, NO_WORDS)
        # words without a single-token spelling: scored as token sequences
        self.yes_sequences = multi_token_words(tokenizer, YES_WORDS, self.yes_ids)
        self.no_sequences = multi_token_words(tokenizer, NO_WORDS, self.no_ids)

    def probabilities(self, requests: list[LabelRequest]) -> list[tuple[float, float]]:
        """(P(yes)+P(Yes), P(no)+P(No)) of the first answer token, for one batch."""
        import torch

        from rlhfv.generation.generate import build_inputs

        rows = [
            {"question": r.question, "_where": r.question, **({"_image_path": r.image_path} if r.image_path else {})}
            for r in requests
        ]
        inputs = build_inputs(self.loaded, rows)
        with torch.no_grad():
            logits = self.loaded.model(**inputs).logits[:, -1, :].float()
        probs = torch.softmax(logits, dim=-1)
        yes = probs[:, self.yes_ids].sum(-1)
        no = probs[:, self.no_ids].sum(-1)
        for sequence in self.yes_sequences:
            yes = yes + self._sequence_probability(inputs, sequence)
        for sequence in self.no_sequences:
            no = no + self._sequence_probability(inputs, sequence)
        return list(zip(yes.tolist(), no.tolist(), strict=True))

    def _sequence_probability(self, inputs, sequence: list[int]):
        """P(sequence | prompt) per row: the prompt (left-padded, so every row ends at the same column) followed by
        the sequence's tokens, one forward pass."""
        import torch

        batch = inputs["input_ids"].shape[0]
        length = inputs["input_ids"].shape[1]
        tail = torch.tensor(sequence, device=inputs["input_ids"].device).expand(batch, -1)
        extended = dict(inputs)
        extended["input_ids"] = torch.cat([inputs["input_ids"], tail], dim=1)
        extended["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(tail)], dim=1)
        for key, value in inputs.items():  # other per-token inputs (token type ids): text tokens are type 0
            if (
                key not in ("input_ids", "attention_mask")
                and getattr(value, "shape", None) == inputs["input_ids"].shape
            ):
                extended[key] = torch.cat([value, torch.zeros_like(tail)], dim=1)
        with torch.no_grad():
            logits = self.loaded.model(**extended).logits.float()
        logps = torch.log_softmax(logits[:, length - 1 : length - 1 + len(sequence)], dim=-1)
        return logps.gather(-1, tail.unsqueeze(-1)).squeeze(-1).sum(-1).exp()

    def label_many(self, requests: list[LabelRequest], progress: bool = True) -> list[Label]:
        from tqdm.auto import tqdm

        labels: list[Label] = []
        with tqdm(total=len(requests), desc="label", unit="claim", disable=not progress) as bar:
            for start in range(0, len(requests), self.batch_size):
                batch = requests[start : start + self.batch_size]
                labels.extend(self._label_batch(batch))
                bar.update(len(batch))
        return labels

    def _label_batch(self, batch: list[LabelRequest]) -> list[Label]:
        try:
            pairs = self.probabilities(batch)
        except OSError:  # an unreadable image: find it, label the others one by one
            if len(batch) == 1:
                raise
            return [label for request in batch for label in self._label_batch_one(request)]
        return [decide(p_yes, p_no, self.min_answer_probability) for p_yes, p_no in pairs]

    def _label_batch_one(self, request: LabelRequest) -> list[Label]:
        try:
            return self._label_batch([request])
        except OSError as error:
            return [Label(None, None, None, IMAGE_UNREADABLE, f"{request.image_path}: {error}")]


def image_data_url(path: str | Path) -> str:
    path = Path(path)
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


class EndpointLabeler:
    """An OpenAI-compatible endpoint answering with one token and its top log-probabilities."""

    def __init__(self, client, top_logprobs: int = 20, min_answer_probability: float = 0.0, batch_size: int = 64):
        self.client = client
        self.top_logprobs = top_logprobs
        self.min_answer_probability = min_answer_probability
        self.batch_size = batch_size

    def _request(self, request: LabelRequest):
        from rlhfv.endpoint import ChatRequest

        content: list[dict] = []
        if request.image_path:
            content.append({"type": "image_url", "image_url": {"url": image_data_url(request.image_path)}})
        content.append({"type": "text", "text": request.question})
        return ChatRequest(
            [{"role": "user", "content": content}],
            temperature=0.0,
            max_tokens=1,
            logprobs=True,
            top_logprobs=self.top_logprobs,
        )

    def _label(self, reply) -> Label:
        if not reply.logprobs:
            return Label(None, None, None, NO_LOGPROBS, f"reply {reply.text!r} carries no log-probabilities")
        return decide(
            reply.first_token_probability(*YES_WORDS),
            reply.first_token_probability(*NO_WORDS),
            self.min_answer_probability,
        )

    def label_many(self, requests: list[LabelRequest], progress: bool = True) -> list[Label]:
        from tqdm.auto import tqdm

        from rlhfv.endpoint import EndpointError

        labels: list[Label] = []
        with tqdm(total=len(requests), desc="label", unit="claim", disable=not progress) as bar:
            for start in range(0, len(requests), self.batch_size):
                batch = requests[start : start + self.batch_size]
                built: list = []
                for request in batch:
                    try:
                        built.append(self._request(request))
                    except OSError as error:
                        built.append(Label(None, None, None, IMAGE_UNREADABLE, f"{request.image_path}: {error}"))
                todo = [b for b in built if not isinstance(b, Label)]
                try:
                    replies = iter(self.client.chat_many(todo, progress=False))
                    labels.extend(b if isinstance(b, Label) else self._label(next(replies)) for b in built)
                except EndpointError:
                    # one request failed and stopped the batch: ask one by one (answered ones come from the
                    # cache) so that only the failing claims go without a verdict
                    labels.extend(b if isinstance(b, Label) else self._one(b) for b in built)
                bar.update(len(batch))
        return labels

    def _one(self, chat_request) -> Label:
        from rlhfv.endpoint import EndpointError, EndpointReplyError

        try:
            return self._label(self.client.chat_many([chat_request], progress=False)[0])
        except EndpointReplyError as error:  # refused by the client's checks, so not cached: a rerun asks again
            return Label(None, None, None, NO_LOGPROBS, str(error))
        except EndpointError as error:
            return Label(None, None, None, ENDPOINT_FAILED, str(error))


class TruthLabeler:
    """Ground truth of the synthetic world: a claim is true when the synthetic annotator would not change it."""

    def __init__(self, scenes: dict):
        self.scenes = scenes

    @classmethod
    def from_file(cls, path: str | Path) -> TruthLabeler:
        from rlhfv.extensions import import_object

        load_scenes = import_object("experiments.synthetic:load_scenes", what="labeler truth")

        return cls(load_scenes(path))

    def label_many(self, requests: list[LabelRequest], progress: bool = True) -> list[Label]:
        from rlhfv.extensions import import_object

        correct = import_object("experiments.synthetic:correct", what="labeler truth")

        labels = []
        for request in requests:
            scene = self.scenes.get(request.image)
            if scene is None:
                labels.append(Label(None, None, None, UNKNOWN_IMAGE, f"{request.image} is not in the scenes file"))
                continue
            text = request.claim.rstrip(".!?") + "."
            true = not correct(text, scene).edits
            labels.append(Label(float(true), float(not true), true))
        return labels
