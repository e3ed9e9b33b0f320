"""Labelers: RLAIF-V's yes/no rule read from a real local HTTP server's log-probs, from a tiny in-process LLaVA's
logits (checked against an independent unbatched computation), and from the synthetic world's truth; every claim
without a verdict carries its reason."""

import base64
import json
import math

import pytest

from rlhfv.feedback.labeling import (
    ENDPOINT_FAILED,
    IMAGE_UNREADABLE,
    NOT_YES_NO,
    EndpointLabeler,
    LabelRequest,
    TransformersLabeler,
    TruthLabeler,
    decide,
    word_token_ids,
)
from tests.fixtures.openai_server import Server


def test_the_rule_sums_both_spellings_and_refuses_a_labeler_that_says_neither():
    assert decide(0.3, 0.2, 0.5).verdict is True
    assert decide(0.2, 0.3, 0.5).verdict is False
    assert decide(0.3, 0.3, 0.5).verdict is False  # a tie is not "yes"
    refused = decide(0.1, 0.1, 0.5)
    assert (refused.verdict, refused.reason) == (None, NOT_YES_NO)
    # the guard off (0, the default: RLAIF-V's code): yes > no whatever the total
    assert decide(0.001, 0.0001, 0.0).verdict is True and decide(0.0, 0.0, 0.0).verdict is False


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "img.png"
    Image.new("RGB", (32, 32), (0, 0, 255)).save(path)
    return path


def endpoint_labeler(url, tmp_path, timeout=10.0):
    from rlhfv.endpoint import EndpointClient, EndpointConfig

    config = EndpointConfig(base_url=url, model="labeler", cache_dir=str(tmp_path / "cache"), timeout=timeout,
                            max_retries=0)  # fmt: skip
    return EndpointLabeler(EndpointClient(config), top_logprobs=5)


def test_endpoint_labeler_reads_yes_and_no_from_the_top_logprobs(tmp_path, image):
    requests = [
        LabelRequest("Is it blue? Please answer yes or no.", str(image)),  # the server's default: Yes -0.2, yes -2 ...
        LabelRequest("TOP[No:-0.1| no:-3.0|Yes:-2.5] Is it red?", str(image)),
        LabelRequest("TOP[The:-0.05|A:-3.0] Is it?", str(image)),
        LabelRequest("Is it round?", str(tmp_path / "missing.png")),
    ]
    with Server() as server:
        labels = endpoint_labeler(server.url, tmp_path).label_many(requests, progress=False)
        bodies = list(server.requests)
    assert labels[0].p_yes == pytest.approx(math.exp(-0.2) + math.exp(-2.0))
    assert labels[0].p_no == pytest.approx(math.exp(-2.5) + math.exp(-4.0))
    assert labels[0].verdict is True
    # " no" with its leading space counts as "no"
    assert labels[1].p_no == pytest.approx(math.exp(-0.1) + math.exp(-3.0))
    assert labels[1].p_yes == pytest.approx(math.exp(-2.5))
    assert labels[1].verdict is False
    # neither word among the alternatives: RLAIF-V's rule (no guard by default) judges it false, yes > no failing
    assert (labels[2].p_yes, labels[2].p_no, labels[2].verdict, labels[2].reason) == (0.0, 0.0, False, None)
    assert (labels[3].verdict, labels[3].reason) == (None, IMAGE_UNREADABLE)
    # what was asked: one token, with log-probs, the image inline as a data URL
    assert len(bodies) == 3
    body = bodies[0]
    assert (body["max_tokens"], body["logprobs"], body["top_logprobs"], body["temperature"]) == (1, True, 5, 0.0)
    part = body["messages"][0]["content"][0]
    assert part["type"] == "image_url"
    prefix = "data:image/png;base64,"
    assert part["image_url"]["url"].startswith(prefix)
    assert base64.b64decode(part["image_url"]["url"][len(prefix) :]) == image.read_bytes()


def test_endpoint_failures_leave_only_the_failing_claims_without_a_verdict(tmp_path, image):
    requests = [
        LabelRequest("Is it blue?", str(image)),
        LabelRequest("BADJSON Is it red?", str(image)),
        LabelRequest("SLOW Is it green?", str(image)),
        LabelRequest("TOP[no:-0.01] Is it a cat?", str(image)),
    ]
    with Server() as server:
        labels = endpoint_labeler(server.url, tmp_path, timeout=0.5).label_many(requests, progress=False)
    assert [label.verdict for label in labels] == [True, None, None, False]
    assert labels[1].reason == ENDPOINT_FAILED and "not an OpenAI chat completion" in labels[1].detail
    assert labels[2].reason == ENDPOINT_FAILED and "timed out" in labels[2].detail


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    from rlhfv.generation.generate import LoadedModel
    from rlhfv.tiny_models import build_llava, build_tokenizer

    model, processor = build_llava(build_tokenizer(), seed=5)
    return LoadedModel(model.eval(), processor, "tiny-llava")


def sequence_probability(loaded, question, image_path, ids):
    """P(ids | prompt), token by token, from one unpadded forward pass over the prompt followed by `ids`."""
    import torch
    from PIL import Image

    processor = loaded.processor
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[Image.open(image_path).convert("RGB")], return_tensors="pt")
    n = inputs["input_ids"].shape[1]
    inputs["input_ids"] = torch.cat([inputs["input_ids"], torch.tensor([ids], dtype=torch.long)], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    with torch.no_grad():
        logits = loaded.model(**inputs).logits[0].double()
    probability = 1.0
    for k, token in enumerate(ids):
        probability *= float(torch.softmax(logits[n - 1 + k], -1)[token])
    return probability


def independent_probabilities(loaded, question, image_path):
    """(P(yes)+P(Yes), P(no)+P(No), yes ids, no ids): single tokens picked from the vocabulary's byte-level spellings
    ("yes", "Ġyes" = " yes", ...), each read as a one-token sequence; a word with no single token as its own
    token sequence."""
    tokenizer = loaded.tokenizer
    vocab = tokenizer.get_vocab()
    result = []
    for words in (("yes", "Yes"), ("no", "No")):
        singles = [t for w in words for t in (w, "Ġ" + w) if t in vocab]
        spelled = {t.removeprefix("Ġ") for t in singles}
        total = sum(sequence_probability(loaded, question, image_path, [vocab[t]]) for t in singles)
        total += sum(
            sequence_probability(loaded, question, image_path, tokenizer.encode(w, add_special_tokens=False))
            for w in words if w not in spelled
        )  # fmt: skip
        result += [total, sorted(vocab[t] for t in singles)]
    return result[0], result[2], result[1], result[3]


def test_transformers_labeler_matches_an_independent_computation_from_the_logits(tiny_llava, image, tmp_path):
    from PIL import Image

    other = tmp_path / "other.png"
    Image.new("RGB", (32, 32), (250, 250, 0)).save(other)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    requests = [
        LabelRequest("Is there a red ball? Please answer yes or no.", str(image)),
        LabelRequest("Is the cup on the left of the image, next to the clock? Please answer yes or no.", str(other)),
        LabelRequest("Is it round?", str(broken)),
        LabelRequest("Yes or no?", str(other)),
    ]
    labeler = TransformersLabeler(tiny_llava, batch_size=4, min_answer_probability=0.0)
    labels = labeler.label_many(requests, progress=False)
    for request, label in zip(requests, labels, strict=True):
        if request.image_path == str(broken):
            assert (label.verdict, label.reason) == (None, IMAGE_UNREADABLE)
            continue
        p_yes, p_no, yes_ids, no_ids = independent_probabilities(tiny_llava, request.question, request.image_path)
        assert sorted(labeler.yes_ids) == yes_ids and sorted(labeler.no_ids) == no_ids
        assert label.p_yes == pytest.approx(p_yes, rel=1e-4)
        assert label.p_no == pytest.approx(p_no, rel=1e-4)
        assert label.verdict == (p_yes > p_no)
    # a random tiny model puts almost no mass on yes/no: with the guard on it is "not answering yes/no"
    guarded = TransformersLabeler(tiny_llava, batch_size=4, min_answer_probability=0.5).label_many(
        requests[:1], progress=False
    )[0]
    assert (guarded.verdict, guarded.reason) == (None, NOT_YES_NO)


def test_word_token_ids_finds_every_spelling(tiny_llava):
    tokenizer = tiny_llava.tokenizer
    ids = word_token_ids(tokenizer, ("yes", "Yes"))
    assert ids and all(tokenizer.decode([i]).strip() in ("yes", "Yes") for i in ids)


def test_truth_labeler_follows_the_synthetic_annotator(tmp_path):
    from experiments.synthetic import load_scenes, write_prompts
    from experiments.synthetic.world import COLOURS, POSITIONS

    prompts = write_prompts(tmp_path / "p", n=1, seed=0)
    scenes = load_scenes(tmp_path / "p" / "scenes.json")
    image, scene = next(iter(scenes.items()))
    assert json.loads(prompts.read_text().splitlines()[0])["image"] == image
    obj = scene.objects[0]
    wrong = next(c for c in COLOURS if c != obj.colour)
    claims = [
        f"There is a {obj.colour} {obj.kind} {POSITIONS[obj.position]}",
        f"There is a {wrong} {obj.kind} {POSITIONS[obj.position]}",
    ]
    labeler = TruthLabeler(scenes)
    labels = labeler.label_many(
        [LabelRequest("q", None, image, c) for c in claims] + [LabelRequest("q", None, "x.png", "c")]
    )
    assert [label.verdict for label in labels] == [True, False, None]
    assert labels[2].reason == "image_not_in_truth"


def test_a_word_without_a_single_token_counts_with_its_sequence_probability(image):
    """A small tokenizer that splits "yes" (RLAIF-V's rule needs P(yes) all the same): the labeler's value equals
    P(tokens of "yes" | prompt) computed here token by token from an unpadded forward pass."""
    from rlhfv.generation.generate import LoadedModel
    from rlhfv.tiny_models import build_llava, build_tokenizer

    tokenizer = build_tokenizer(
        ["No cup. no ball. A red ball is on the left. Describe the image."] * 3, vocab_size=300
    )
    assert len(tokenizer.encode("yes", add_special_tokens=False)) > 1
    model, processor = build_llava(tokenizer, seed=2)
    loaded = LoadedModel(model.eval(), processor, "tiny")
    labeler = TransformersLabeler(loaded, batch_size=2, min_answer_probability=0.0)
    questions = ["Is there a ball? Please answer yes or no.", "Is it red?"]
    labels = labeler.label_many([LabelRequest(q, str(image)) for q in questions], progress=False)

    for question, label in zip(questions, labels, strict=True):
        p_yes, p_no, _, _ = independent_probabilities(loaded, question, str(image))
        assert label.p_yes == pytest.approx(p_yes, rel=1e-4)
        assert label.p_no == pytest.approx(p_no, rel=1e-4)
