"""The conquer step: a labeler answers each claim's yes/no question from the image in one forward pass.

A claim is judged true when P(yes) + P(Yes) > P(no) + P(No) for the first answer token (RLAIF-V). Labelers:
- `TransformersLabeler`: any transformers VLM or LLM (by path), including the policy itself (self-feedback);
  batched, left-padded, one forward pass per batch; the probabilities are summed over every vocabulary token that
  reads as the word once surrounding spaces are removed ("yes", " yes", "▁Yes", ...).
- `EndpointLabeler`: an OpenAI-compatible endpoint with log-probabilities (`rlhfv.endpoint`), one token per answer;
  the probabilities come from the first token's top alternatives.
- `TruthLabeler`: the synthetic world's ground truth (the annotator of `data_tools.synthetic`), for the CPU recipe
  and for measuring how often a model labeler agrees with the truth.

A question the labeler does not answer with yes or no (P(yes)+P(Yes)+P(no)+P(No) below `min_answer_probability`),
an endpoint that fails, or an image that cannot be read leaves the claim without a verdict, with its reason.
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
    """RLAIF-V's rule, with a guard against a labeler that is not answering yes/no at all."""
    if p_yes + p_no < min_answer_probability:
        return Label(
            p_yes, p_no, None, NOT_YES_NO,
            f"P(yes)+P(no) = {p_yes + p_no:.3g} < min_answer_probability {min_answer_probability:g}",
        )  # fmt: skip
    return Label(p_yes, p_no, p_yes > p_no)


def word_token_ids(tokenizer, words: tuple[str, ...]) -> list[int]:
    """Ids of every vocabulary token that decodes to one of `words` once surrounding spaces are removed."""
    wanted = set(words)
    ids = []
    for token_id in range(len(tokenizer)):
        if tokenizer.decode([token_id]).strip() in wanted:
            ids.append(token_id)
    return ids


class TransformersLabeler:
    """A local model (an `rlhfv.eval.generate.LoadedModel`) answering yes/no questions in one forward pass."""

    def __init__(self, loaded, batch_size: int = 16, min_answer_probability: float = 0.5):
        self.loaded = loaded
        self.batch_size = batch_size
        self.min_answer_probability = min_answer_probability
        self.yes_ids = word_token_ids(loaded.tokenizer, YES_WORDS)
        self.no_ids = word_token_ids(loaded.tokenizer, NO_WORDS)
        if not self.yes_ids or not self.no_ids:
            raise ValueError(f"{loaded.path}: the tokenizer has no single token for yes/Yes or no/No")

    def probabilities(self, requests: list[LabelRequest]) -> list[tuple[float, float]]:
        """(P(yes)+P(Yes), P(no)+P(No)) of the first answer token, for one batch."""
        import torch

        from rlhfv.eval.generate import build_inputs

        rows = [
            {"question": r.question, "_where": r.question, **({"_image_path": r.image_path} if r.image_path else {})}
            for r in requests
        ]
        inputs = build_inputs(self.loaded, rows)
        with torch.no_grad():
            logits = self.loaded.model(**inputs).logits[:, -1, :].float()
        probs = torch.softmax(logits, dim=-1)
        yes = probs[:, self.yes_ids].sum(-1).tolist()
        no = probs[:, self.no_ids].sum(-1).tolist()
        return list(zip(yes, no, strict=True))

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

    def __init__(self, client, top_logprobs: int = 20, min_answer_probability: float = 0.5, batch_size: int = 64):
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
            [{"role": "user", "content": content}], temperature=0.0, max_tokens=1, logprobs=True,
            top_logprobs=self.top_logprobs,
        )  # fmt: skip

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
        from rlhfv.endpoint import EndpointError

        try:
            return self._label(self.client.chat_many([chat_request], progress=False)[0])
        except EndpointError as error:
            return Label(None, None, None, ENDPOINT_FAILED, str(error))


class TruthLabeler:
    """Ground truth of the synthetic world: a claim is true when the synthetic annotator would not change it."""

    def __init__(self, scenes: dict):
        self.scenes = scenes

    @classmethod
    def from_file(cls, path: str | Path) -> TruthLabeler:
        from data_tools.synthetic import load_scenes

        return cls(load_scenes(path))

    def label_many(self, requests: list[LabelRequest], progress: bool = True) -> list[Label]:
        from data_tools.synthetic import correct

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
