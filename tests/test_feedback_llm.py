"""The LLM options of claim splitting and question writing, through a real local OpenAI-compatible server, with
prompts overridden by file (the server answers lines given by a LIST[...] marker in the prompt)."""

from rlhfv.feedback.claims import LLMClaimSplitter
from rlhfv.feedback.generators import EndpointGenerator, TransformersGenerator
from rlhfv.feedback.prompts import load_prompt
from rlhfv.feedback.questions import LLMQuestionWriter
from tests.fixtures.openai_server import Server


def client(url, tmp_path):
    from rlhfv.endpoint import EndpointClient, EndpointConfig

    return EndpointClient(EndpointConfig(base_url=url, model="llm", cache_dir=str(tmp_path / "cache"), max_retries=0))


def test_endpoint_claims_and_questions_with_prompt_files(tmp_path):
    claims_file = tmp_path / "claims.txt"
    claims_file.write_text("LIST[1. a red ball is on the left|- A kite flies] Q: {question} A: {answer}")
    questions_file = tmp_path / "questions.txt"
    questions_file.write_text("LIST[Is there a red ball on the left?] {claim}")
    answer = "There is a red ball on the left. A kite flies high."
    with Server() as server:
        generator = EndpointGenerator(client(server.url, tmp_path))
        splitter = LLMClaimSplitter(generator, load_prompt(claims_file, "", ("question", "answer")))
        (claims,) = splitter.split_many([("Describe.", answer)])
        writer = LLMQuestionWriter(generator, load_prompt(questions_file, "", ("claim",)))
        questions = writer.write_many([c.text for c in claims])
        prompts = [r["messages"][0]["content"] for r in server.requests]
    # claim 1 is reworded ("is"): placed on the sentence it shares most words with, [0, 32) with its period;
    # claim 2 is verbatim at 33
    assert [(c.text, c.start, c.end) for c in claims] == [
        ("a red ball is on the left", 0, 32),
        ("A kite flies", 33, 45),
    ]
    assert answer[0:32] == "There is a red ball on the left." and answer[33:45] == "A kite flies"
    assert questions == ["Is there a red ball on the left? Please answer yes or no."] * 2
    # the answer and question went into the file's prompt; the claims prompt was asked once, the question prompt per claim
    assert prompts[0].endswith(f"Q: Describe. A: {answer}")
    # (the per-claim requests run concurrently, so they may reach the server in either order)
    assert len(prompts) == 3
    assert sorted(prompts[1:]) == sorted(f"LIST[Is there a red ball on the left?] {c.text}" for c in claims)


def test_transformers_generator_completes_each_prompt_greedily():
    from rlhfv.generation.generate import LoadedModel
    from rlhfv.tiny_models import build_text_model, build_tokenizer

    tokenizer = build_tokenizer()
    loaded = LoadedModel(build_text_model(tokenizer, seed=1).eval(), tokenizer, "tiny")
    generator = TransformersGenerator(loaded, max_new_tokens=5, batch_size=2)
    prompts = ["Split: a red ball.", "Split: a cup.", "Split: a kite and a dog."]
    batched = generator.complete(prompts)
    one_by_one = [TransformersGenerator(loaded, max_new_tokens=5, batch_size=1).complete([p])[0] for p in prompts]
    assert len(batched) == 3 and batched == one_by_one  # left padding does not change greedy output
