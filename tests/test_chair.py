"""CHAIR: synonym matching and the metrics, on hand-written answers whose numbers are worked out below by hand."""

import json

import pytest

from rlhfv.cli import main as rlhfv_main
from rlhfv.eval.chair import ObjectExtractor, load_ground_truth, score_answers
from rlhfv.eval.coco_synonyms import COCO_SYNONYMS
from rlhfv.eval.io import EvalInputError, read_rows


@pytest.fixture(scope="module")
def extractor():
    return ObjectExtractor()


def classes(extractor, text):
    return [m.cls for m in extractor.mentions(text)]


def test_table_covers_the_80_coco_classes():
    assert len(COCO_SYNONYMS) == 80
    for name in ["person", "hot dog", "cell phone", "traffic light", "teddy bear", "dining table", "hair drier"]:
        assert name in COCO_SYNONYMS


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A dog and two dogs.", ["dog", "dog"]),
        ("a hot dog, not a dog", ["hot dog", "dog"]),  # longest match first: "hot dog" is not a dog
        ("Hot-dogs and hotdogs", ["hot dog", "hot dog"]),  # hyphen, plural, one-word spelling
        ("a teddy bear beside a bear", ["teddy bear", "bear"]),
        ("The traffic lights turned red; a cell phone rang.", ["traffic light", "cell phone"]),
        ("people, a man, two women and children", ["person", "person", "person", "person"]),
        ("three knives, two mice and a computer mouse", ["knife", "mouse", "mouse"]),
        ("buses, benches, skis", ["bus", "bench", "skis"]),
        ("catalogue, doghouse, cartoon, scatter", []),  # word boundaries: no cat, dog or car inside other words
        ("The Dog's ball.", ["dog", "sports ball"]),
        ("a sofa and a couch", ["couch", "couch"]),
    ],
)
def test_synonym_matching(extractor, text, expected):
    assert classes(extractor, text) == expected


def test_user_synonym_table(tmp_path, extractor):
    table = tmp_path / "syn.json"
    table.write_text(json.dumps({"gizmo": ["widget", "doohickey"], "hot sauce": ["salsa"]}))
    own = ObjectExtractor(json.loads(table.read_text()))
    assert classes(own, "Two widgets, a hot sauce and salsa; a dog.") == ["gizmo", "hot sauce", "hot sauce"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a": ["thing"], "b": ["things"]}))  # "thing" pluralises into b's form
    assert rlhfv_main(["eval", "chair", "--answers", str(table), "--objects", str(table), "--synonyms", str(bad)]) == 1


# Ground truth and answers for the hand-computed case
TRUTH = {"img1.jpg": ["dog", "person"], "img2.jpg": ["hot dog", "cup"], "img3.jpg": ["teddy bear"], "4": ["car"]}
ANSWERS = [
    # mentions: man(person) dog dogs(dog) cat -> 4 mentions, 1 hallucinated (cat); recalled person, dog -> 2 of 2
    {"id": "1", "image": "some/dir/img1.jpg", "answer": "A man walks his dog. Two dogs and a cat play."},
    # mentions: hot dog, coffee cup(cup) -> 2 mentions, 0 hallucinated; recalled 2 of 2
    {"id": "2", "image": "img2.jpg", "answer": "A hot dog next to a coffee cup."},
    # mentions: teddy bear, chair, bears(bear) -> 3 mentions, 2 hallucinated (negation counts); recalled 1 of 1
    {"id": "3", "image": "img3.jpg", "answer": "A teddy bear sits on a chair; no bears around."},
    # no mention; recalled 0 of 1 (looked up by id "4")
    {"id": "4", "image": "elsewhere.jpg", "answer": "Nothing to see here."},
]


def test_chair_metrics_by_hand(tmp_path, extractor):
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps(TRUTH))
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(a) + "\n" for a in ANSWERS))
    report, details = score_answers(read_rows(answers), load_ground_truth(objects, extractor), extractor)
    assert report["responses"] == 4
    assert report["responses_mentioning_objects"] == 3  # answer 4 mentions nothing
    assert report["chair_s"] == pytest.approx(2 / 3)  # answers 1 and 3 hallucinate, of the 3 that mention objects
    assert report["chair_i"] == pytest.approx((1 + 0 + 2) / (4 + 2 + 3))
    assert report["recall"] == pytest.approx((2 + 2 + 1 + 0) / (2 + 2 + 1 + 1))
    assert report["mean_length_words"] == pytest.approx((11 + 8 + 10 + 4) / 4)
    assert report["per_class"]["dog"] == {
        "mentions": 2,
        "hallucinated_mentions": 0,
        "in_ground_truth": 1,
        "recalled": 1,
    }
    assert report["per_class"]["bear"]["hallucinated_mentions"] == 1
    assert report["per_class"]["car"] == {
        "mentions": 0,
        "hallucinated_mentions": 0,
        "in_ground_truth": 1,
        "recalled": 0,
    }
    assert [d["hallucinated"] for d in details] == [["cat"], [], ["bear", "chair"], []]

    # the same through the command line, report written to disk
    out = tmp_path / "report.json"
    assert (
        rlhfv_main(["eval", "chair", "--answers", str(answers), "--objects", str(objects), "--output_dir", str(out)])
        == 0
    )
    assert json.loads(out.read_text())["chair_i"] == pytest.approx(3 / 9)


def test_coco_instances_ground_truth(tmp_path, extractor):
    coco = {
        "images": [{"id": 139, "file_name": "COCO_val2014_000000000139.jpg"}, {"id": 5, "file_name": "b.jpg"}],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 62, "name": "chair"}],
        "annotations": [
            {"image_id": 139, "category_id": 1},
            {"image_id": 139, "category_id": 62},
            {"image_id": 139, "category_id": 62},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    truth = load_ground_truth(path, extractor)
    assert truth["139"] == truth["COCO_val2014_000000000139.jpg"] == {"person", "chair"}
    assert truth["b.jpg"] == set()  # an image with no annotation has no objects: every mention is hallucinated


def test_missing_ground_truth_names_the_row(tmp_path, extractor):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"id": "x", "image": "nowhere.jpg", "answer": "a dog"}) + "\n")
    with pytest.raises(EvalInputError, match=r"answers.jsonl:line 1: no ground truth"):
        score_answers(read_rows(answers), {"a.jpg": {"dog"}}, extractor)
    bad = tmp_path / "objects.json"
    bad.write_text(json.dumps({"a.jpg": ["dog", "unicorn"]}))
    with pytest.raises(EvalInputError, match="unicorn"):
        load_ground_truth(bad, extractor)
