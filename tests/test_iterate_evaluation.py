"""`rlhfv iterate`'s held-out evaluation kinds (rlhfv/iterate_evaluation.py): the POPE and Object HalBench
evaluators on a tiny VLM give the numbers an independent scoring of the same answers gives; selection picks the
right candidate for min and max; bad settings fail at start; LoRA checkpoints are candidates; one round end to end
selects on POPE F1."""

import json
from types import SimpleNamespace

import pytest
import yaml

from data_tools.errors import CommandError
from rlhfv.cli import main as rlhfv_main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A saved tiny LLaVA, four small images and a POPE question file over them (labels mixed)."""
    import torch
    from PIL import Image

    from rlhfv.tiny_models import build_llava, build_tokenizer

    root = tmp_path_factory.mktemp("evaluation")
    model, processor = build_llava(build_tokenizer(), seed=3)
    model.config.text_config.initializer_range = 0.3  # answers and yes/no labels that differ (pipeline test)
    torch.manual_seed(3)
    model = type(model)(model.config)
    model.save_pretrained(root / "policy")
    processor.save_pretrained(root / "policy")
    (root / "images").mkdir()
    for i, color in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]):
        Image.new("RGB", (16, 16), color).save(root / "images" / f"COCO_val2014_{i + 1:012d}.jpg")
    pope = root / "pope_heldout.json"
    questions = [
        {"question_id": q, "image": f"COCO_val2014_{q % 4 + 1:012d}.jpg", "text": f"Is there a {obj} in the image?",
         "label": label}
        for q, (obj, label) in enumerate([("dog", "yes"), ("cat", "no"), ("car", "yes"), ("cup", "no"),
                                          ("bus", "no"), ("kite", "yes")])
    ]  # fmt: skip
    pope.write_text("".join(json.dumps(q) + "\n" for q in questions))  # POPE's own layout: JSONL under .json
    return root, questions


def iteration_with(settings):
    return SimpleNamespace(config=SimpleNamespace(evaluation=settings))


def pope_reading(answer: str) -> str:
    """POPE's rule, written out again: the first sentence, commas dropped; 'no' when a word is no / not / No."""
    words = answer.split(".")[0].replace(",", "").split(" ")
    return "no" if {"no", "not", "No"} & set(words) else "yes"


def test_pope_evaluator_equals_an_independent_scoring_of_its_answers(tiny, tmp_path):
    from rlhfv.eval.bench_cli import POPE_SUFFIX
    from rlhfv.iterate_evaluation import evaluate_pope

    root, questions = tiny
    settings = {"kind": "pope", "questions": str(root / "pope_heldout.json"), "images": str(root / "images"),
                "max_new_tokens": 6, "batch_size": 4, "device": "cpu", "progress": False}  # fmt: skip
    answers = tmp_path / "answers.jsonl"
    metrics = evaluate_pope(iteration_with(settings), root / "policy", answers)

    written = {row["id"]: row for row in map(json.loads, answers.read_text().splitlines())}
    assert sorted(written) == sorted(str(q["question_id"]) for q in questions)
    # asked as `rlhfv eval pope generate` asks: the question plus POPE's suffix
    assert all(written[str(q["question_id"])]["question"] == q["text"] + POPE_SUFFIX for q in questions)
    pairs = [(q["label"], pope_reading(written[str(q["question_id"])]["answer"])) for q in questions]
    tp = sum(pair == ("yes", "yes") for pair in pairs)
    fp = sum(pair == ("no", "yes") for pair in pairs)
    tn = sum(pair == ("no", "no") for pair in pairs)
    fn = sum(pair == ("yes", "no") for pair in pairs)
    precision = 100 * tp / (tp + fp) if tp + fp else None
    recall = 100 * tp / (tp + fn)
    assert metrics["n"] == 6
    assert metrics["accuracy"] == pytest.approx(100 * (tp + tn) / 6)
    assert metrics["yes_ratio"] == pytest.approx(100 * (tp + fp) / 6)
    assert metrics["recall"] == pytest.approx(recall)
    if precision and recall:
        assert metrics["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    else:
        assert metrics["f1"] == 0.0
    # a second call reads the answers already there (resumable generation), same numbers
    assert evaluate_pope(iteration_with(settings), root / "policy", answers) == metrics


def test_object_halbench_evaluator_equals_chair_by_hand(tiny, tmp_path):
    from rlhfv.eval.chair import ObjectExtractor
    from rlhfv.iterate_evaluation import evaluate_object_halbench

    root, _ = tiny
    questions = tmp_path / "objhal.jsonl"
    questions.write_text("".join(json.dumps({"question_id": i, "image_id": i, "question": "Describe the image.",
                                             "image_path": str(root / "images" / f"COCO_val2014_{i:012d}.jpg")})
                                 + "\n" for i in (1, 2)))  # fmt: skip
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps({"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1, "name": "dog"}],
                                     "annotations": [{"image_id": 1, "category_id": 1}]}))  # fmt: skip
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"images": [{"id": 1}, {"id": 2}],
                                    "annotations": [{"image_id": 2, "caption": "A red car on a road."}]}))  # fmt: skip
    settings = {"kind": "object_halbench", "questions": str(questions), "instances": str(instances),
                "captions": [str(captions)], "max_new_tokens": 8, "device": "cpu", "progress": False}  # fmt: skip
    answers = tmp_path / "answers.jsonl"
    metrics = evaluate_object_halbench(iteration_with(settings), root / "policy", answers)
    rows = {row["id"]: row["answer"] for row in map(json.loads, answers.read_text().splitlines())}
    truth = {"1": {"dog"}, "2": {"car"}}
    extractor = ObjectExtractor()
    mentions = {key: [m.cls for m in extractor.mentions(text)] for key, text in rows.items()}
    mentioning = [key for key in rows if mentions[key]]
    hallucinating = [key for key in mentioning if set(mentions[key]) - truth[key]]
    total = sum(len(m) for m in mentions.values())
    assert metrics["chair_s"] == (100 * len(hallucinating) / len(mentioning) if mentioning else None)
    assert metrics["chair_i"] == (
        100 * sum(c not in truth[k] for k in rows for c in mentions[k]) / total if total else None
    )
    assert metrics["mean_length_words"] == pytest.approx(sum(len(t.split()) for t in rows.values()) / 2)


def test_selection_picks_the_lowest_or_highest_and_never_a_missing_value():
    from rlhfv.iterate_evaluation import pick_best

    scored = [(0.40, 0, "final"), (None, 1, "ckpt-1"), (0.25, 2, "ckpt-2"), (0.61, 3, "ckpt-3"), (0.25, 4, "c4")]
    assert pick_best(scored, "min")[2] == "ckpt-2"  # a tie goes to the earlier candidate
    assert pick_best(scored, "max")[2] == "ckpt-3"
    assert pick_best([(None, 0, "final")], "max") is None


def write_iterate(path, evaluation, **extra):
    path.write_text(yaml.safe_dump({"initial_policy": "m", "feedback": {}, "evaluation": evaluation, **extra}))
    return str(path)


def test_bad_evaluation_settings_fail_at_start_naming_what_is_known(tmp_path):
    from rlhfv.iterate import IterateConfig, Iteration

    recipe = write_iterate(tmp_path / "r.yaml", {"kind": "pope", "questions": "q.json", "select_metric": "chair_s"})
    with pytest.raises(CommandError, match="select_metric 'chair_s' is not a metric of kind 'pope'; known: f1, "
                       "accuracy, precision, recall, yes_ratio"):  # fmt: skip
        IterateConfig.from_yaml(recipe, {})
    bad_mode = write_iterate(tmp_path / "m.yaml", {"kind": "pope", "questions": "q.json", "select_mode": "lowest"})
    with pytest.raises(CommandError, match="select_mode must be min or max"):
        IterateConfig.from_yaml(bad_mode, {})
    with pytest.raises(CommandError, match="kind must be one of none, synthetic, pope, object_halbench"):
        IterateConfig.from_yaml(write_iterate(tmp_path / "k.yaml", {"kind": "mmhal"}), {})
    with pytest.raises(CommandError, match="kind synthetic needs the synthetic block"):
        IterateConfig.from_yaml(write_iterate(tmp_path / "s.yaml", {"kind": "synthetic"}), {})
    with pytest.raises(CommandError, match="kind object_halbench needs questions, instances, captions"):
        IterateConfig.from_yaml(write_iterate(tmp_path / "o.yaml", {"kind": "object_halbench"}), {})
    with pytest.raises(CommandError, match="'question_file'.*not read by kind 'pope'"):
        IterateConfig.from_yaml(write_iterate(tmp_path / "u.yaml", {"kind": "pope", "question_file": "q"}), {})
    # the defaults per kind: POPE F1 highest, CHAIR_s lowest
    config = IterateConfig.from_yaml(write_iterate(tmp_path / "ok.yaml", {"kind": "pope", "questions": "q.json"}), {})
    assert (config.evaluation["select_metric"], config.evaluation["select_mode"]) == ("f1", "max")
    objhal = {"kind": "object_halbench", "questions": "q", "instances": "i", "captions": ["c"]}
    config = IterateConfig.from_yaml(write_iterate(tmp_path / "oh.yaml", objhal), {})
    assert (config.evaluation["select_metric"], config.evaluation["select_mode"]) == ("chair_s", "min")
    # a held-out file that is not there stops the run before anything trains or samples
    config = IterateConfig.from_yaml(write_iterate(tmp_path / "ok.yaml", {"kind": "pope", "questions": "q.json"}),
                                     {"out": str(tmp_path / "run")})  # fmt: skip
    with pytest.raises(CommandError, match="evaluation.questions: q.json: no such file"):
        Iteration(config).run()
    assert not (tmp_path / "run").exists()


def test_candidates_are_the_final_model_and_the_other_checkpoints_full_or_lora(tmp_path):
    from rlhfv.iterate import IterateConfig, Iteration

    trained = tmp_path / "train"
    for name, files in {".": ["config.json"], "checkpoint-2": ["adapter_config.json"],
                        "checkpoint-10": ["config.json"], "checkpoint-12": ["adapter_config.json"],
                        "checkpoint-4": ["optimizer.pt"]}.items():  # fmt: skip
        (trained / name).mkdir(parents=True, exist_ok=True)
        for file in files:
            (trained / name / file).write_text("{}")
    for name, step in ((".", 12), ("checkpoint-2", 2), ("checkpoint-10", 10), ("checkpoint-12", 12)):
        (trained / name / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    config = IterateConfig.from_yaml(write_iterate(tmp_path / "r.yaml", {"kind": "none"}), {})
    found = Iteration(config).candidates(trained)
    # checkpoint-12 is the final model again; checkpoint-4 holds no model; numeric order (2 before 10)
    assert [p.name for p in found] == ["train", "checkpoint-2", "checkpoint-10"]


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_one_round_selects_the_checkpoint_with_the_best_pope_f1(tiny, tmp_path):
    from experiments.synthetic import write_prompts

    root, _ = tiny
    prompts = write_prompts(tmp_path / "prompts", n=4, seed=0)
    out = tmp_path / "iter"
    recipe = {
        "rounds": 1, "out": str(out), "seed": 0, "initial_policy": str(root / "policy"),
        "feedback": {"prompts": str(prompts), "num_samples": 4, "max_new_tokens": 12, "labeler": "self",
                     "min_answer_probability": 0.0, "on_error": "skip", "progress": False, "device": "cpu",
                     "length_balance": False},
        "train": {"gamma": 5.0, "beta": 0.1, "learning_rate": 5.0e-2, "per_device_train_batch_size": 2,
                  "max_steps": 2, "max_length": 256, "use_cpu": True, "bf16": False, "eval_strategy": "no",
                  "save_strategy": "steps", "save_steps": 1, "save_only_model": True, "report_to": "none",
                  "logging_steps": 1, "activation_checkpointing": False},
        "evaluation": {"kind": "pope", "questions": str(root / "pope_heldout.json"), "images": str(root / "images"),
                       "max_new_tokens": 4, "batch_size": 6, "device": "cpu", "progress": False,
                       "select_metric": "accuracy"},
    }  # fmt: skip
    path = tmp_path / "iterate.yaml"
    path.write_text(yaml.safe_dump(recipe))
    # the tiny model answers gibberish (POPE reads it all as "yes": every candidate ties), so the candidates'
    # metrics are hand-made, in the evaluation's cache beside their answers: checkpoint-1 has the highest accuracy
    (out / "round_1").mkdir(parents=True)
    for n, accuracy in ((0, 50.0), (1, 70.0), (2, 90.0)):
        (out / "round_1" / f"eval_answers_{n}.metrics.json").write_text(json.dumps({"accuracy": accuracy}))
    assert rlhfv_main(["iterate", "--config", str(path)]) == 0
    # candidates: the final model and checkpoint-1; checkpoint-2 is the final model (its 90 is never read)
    selected = json.loads((out / "round_1" / "selected.json").read_text())
    assert selected["policy"] == str(out / "round_1" / "train" / "checkpoint-1") and selected["accuracy"] == 70.0
    assert selected["selected"] == "highest accuracy of 2 checkpoint(s): checkpoint-1"
    # the starting model went through the real POPE evaluator: 6 questions scored
    base = json.loads((out / "round_0" / "eval_answers.metrics.json").read_text())
    assert base["n"] == 6 and 0 <= base["accuracy"] <= 100
    table = (out / "rounds.md").read_text().splitlines()
    assert (
        table[0]
        == "| round | pairs | feedback_false_claim_rate | f1 | accuracy | precision | recall | yes_ratio | seconds |"
    )


def test_the_pope_heldout_builder_asks_pope_questions_on_images_pope_does_not_use(tmp_path):
    import subprocess
    import sys

    from rlhfv.eval import pope

    classes = ["dog", "cat", "car", "cup", "bus", "kite", "bed"]
    instances = {
        "categories": [{"id": i, "name": name} for i, name in enumerate(classes)],
        "images": [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in range(1, 5)],
        "annotations": [{"image_id": image, "category_id": c} for image, cs in
                        {1: [0, 1], 2: [0, 2, 3], 3: [4, 5, 6], 4: [1, 2, 3]}.items() for c in cs],
    }  # fmt: skip
    (tmp_path / "instances.json").write_text(json.dumps(instances))
    (tmp_path / "pope").mkdir()
    (tmp_path / "pope" / "coco_pope_random.json").write_text(
        json.dumps({"question_id": 1, "image": "COCO_val2014_000000000003.jpg", "text": "?", "label": "yes"}) + "\n"
    )
    script = REPO / "recipes" / "llava-1.5-7b" / "rlaif_v" / "make_pope_heldout.py"
    out = tmp_path / "heldout.json"
    subprocess.run([sys.executable, str(script), "--pope-dir", str(tmp_path / "pope"), "--instances",
                    str(tmp_path / "instances.json"), "--output_dir", str(out), "--images", "2", "--per-image", "2"],
                   check=True, capture_output=True)  # fmt: skip
    rows = pope.read_questions(out)  # reads as a POPE question file
    truth = {1: {"dog", "cat"}, 2: {"dog", "car", "cup"}, 3: {"bus", "kite", "bed"}, 4: {"cat", "car", "cup"}}
    # image 3 is POPE's, image 1 has too few classes: the two images are 2 and 4, 2 yes + 2 no each
    assert {row["image"] for row in rows} == {"COCO_val2014_000000000002.jpg", "COCO_val2014_000000000004.jpg"}
    assert len(rows) == 8 and sum(row["label"] == "yes" for row in rows) == 4
    for row in rows:
        name = row["question"].removeprefix("Is there a ").removesuffix(" in the image?")
        assert (name in truth[int(row["image"][-8:-4])]) == (row["label"] == "yes") and name in classes


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
