"""The synthetic world: deterministic per seed, true descriptions are true, corrections touch only what was made up."""

import difflib
import hashlib
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.synthetic import (
    COLOURS,
    KINDS,
    POSITIONS,
    Scene,
    SceneObject,
    correct,
    describe,
    draw_scene,
    hallucinate,
    make_item,
    write_corrections,
    write_prompts,
    write_sft,
)
from experiments.synthetic.describe import join


REPO = Path(__file__).resolve().parents[1]


def _digest(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _words(text):
    """(word, start, end) for each word or punctuation mark, found independently of the package's own parser."""
    return [(m.group(0), m.start(), m.end()) for m in re.finditer(r"\w+|[^\w\s]", text)]


def _changed_ranges(a: str, b: str):
    """Character ranges of `a` whose words differ from `b` (a word-level diff, as the converter does)."""
    wa, wb = _words(a), _words(b)
    matcher = difflib.SequenceMatcher(None, [w for w, _, _ in wa], [w for w, _, _ in wb], autojunk=False)
    ranges = []
    for tag, i1, i2, _, _ in matcher.get_opcodes():
        if tag != "equal" and i2 > i1:
            ranges.append((wa[i1][1], wa[i2 - 1][2]))
    return ranges


def _claims_are_true(text: str, scene_objects: list[dict]) -> bool:
    """Every 'colour kind ... position' sentence of `text` matches an object of the scene (test's own parser)."""
    by_position = {o["position"]: o for o in scene_objects}
    phrases = {phrase: pos for pos, phrase in POSITIONS.items()}
    for sentence in re.split(r"(?<=\.)\s+", text):
        kind = next((k for k in sorted(KINDS, key=len, reverse=True) if f" {k}" in f" {sentence.lower()}"), None)
        if kind is None:
            continue
        colour = next(c for c in COLOURS if f"{c} {kind}" in sentence.lower())
        position = next(pos for phrase, pos in phrases.items() if phrase in sentence.lower())
        obj = by_position.get(position)
        if obj is None or obj["kind"] != kind or obj["colour"] != colour:
            return False
    return True


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    for kind, writer in [("corrections", write_corrections), ("sft", write_sft), ("prompts", write_prompts)]:
        write_one = tmp_path / f"{kind}-a"
        write_two = tmp_path / f"{kind}-b"
        other = tmp_path / f"{kind}-c"
        writer(write_one, n=12, seed=3)
        writer(write_two, n=12, seed=3)
        writer(other, n=12, seed=4)
        assert _digest(write_one) == _digest(write_two)
        a, c = (write_one / f"{kind}.jsonl").read_text(), (other / f"{kind}.jsonl").read_text()
        assert a != c
    # an item does not depend on how many come before it: the first 5 of 12 are the 5 of a 5-item set
    write_corrections(tmp_path / "five", n=5, seed=3)
    lines12 = (tmp_path / "corrections-a" / "corrections.jsonl").read_text().splitlines()
    lines5 = (tmp_path / "five" / "corrections.jsonl").read_text().splitlines()
    assert lines12[:5] == lines5


def test_splits_draw_different_images(tmp_path):
    sft = json.loads((Path(write_sft(tmp_path / "sft", n=20, seed=0)).parent / "scenes.json").read_text())
    ev = json.loads((Path(write_prompts(tmp_path / "ev", n=20, seed=0)).parent / "scenes.json").read_text())
    boxes = lambda scenes: {tuple(tuple(o["box"]) for o in objs) for objs in scenes.values()}  # noqa: E731
    assert not boxes(sft) & boxes(ev)


def test_corrections_touch_only_the_hallucinated_words(tmp_path):
    write_corrections(tmp_path, n=80, seed=1, rate=0.4)
    rows = [json.loads(line) for line in (tmp_path / "corrections.jsonl").read_text().splitlines()]
    records = {r["id"]: r["hallucinations"] for r in map(json.loads, (tmp_path / "hallucinations.jsonl").open())}
    scenes = json.loads((tmp_path / "scenes.json").read_text())
    seen_types = set()
    for row in rows:
        hallucinations = records[row["id"]]
        assert hallucinations, row["id"]
        assert row["corrected"] != row["response"]
        for h in hallucinations:
            seen_types.add(h["type"])
            assert row["response"][h["span"][0] : h["span"][1]] == h["false"]
        # applying the record by hand (false words -> true words, invented sentences cut) gives the correction
        expected = row["response"]
        for h in sorted(hallucinations, key=lambda h: h["span"][0], reverse=True):
            s, e = h["span"]
            if h["type"] == "added":
                s, e = (s, e + 1) if e < len(expected) else (s - 1, e)
                expected = expected[:s] + expected[e:]
            else:
                expected = expected[:s] + h["true"] + expected[e:]
        assert row["corrected"] == expected, row["id"]
        if not any(h["type"] == "added" for h in hallucinations):
            # a word-level diff (what the converter computes) sees exactly the recorded words
            spans = [tuple(h["span"]) for h in hallucinations]
            assert _changed_ranges(row["response"], row["corrected"]) == sorted(spans), row["id"]
        # the correction is true to the image, and the response was not
        assert _claims_are_true(row["corrected"], scenes[row["image"]])
        assert not _claims_are_true(row["response"], scenes[row["image"]])
    assert seen_types == {"object", "colour", "added"}


def test_hallucination_rate_is_controlled():
    scene_rng = random.Random(0)
    counts = {0.0: 0, 1.0: 0}
    for i in range(30):
        scene = make_item("x", 0, i).scene
        sentences = describe(scene, scene_rng)
        for rate in counts:
            out, records = hallucinate(scene, sentences, random.Random(i), rate)
            counts[rate] += len(records)
            if rate == 0.0:
                assert join(out) == join(sentences) and records == []
            else:
                # every object sentence falsified, plus one invented sentence (there is always a free position)
                assert len(records) == len(scene.objects) + 1
    assert counts[0.0] == 0 and counts[1.0] > 30


def test_annotator_on_free_text():
    scene = Scene(
        (
            SceneObject("cup", "red", "top", (22, 2, 40, 20)),
            SceneObject("apple", "green", "left", (2, 22, 20, 40)),
        )
    )
    cases = [
        # wrong kind at an occupied position -> kind replaced, article fixed ("an apple" -> "a cup")
        ("There is an apple at the top.", "There is a cup at the top."),
        # wrong colour, plural kept
        ("Two blue cups are at the top.", "Two red cups are at the top."),
        # an object at an empty position that exists elsewhere -> position moved (and colour fixed)
        ("A red apple is on the right.", "A green apple is on the left."),
        # an object that does not exist -> sentence deleted, the rest untouched
        ("Hello there. A kite is in the center. There is a green apple on the left.",
         "Hello there. There is a green apple on the left."),
        # last sentence deleted, with the space before it
        ("There is a green apple on the left. A black clock is at the bottom.", "There is a green apple on the left."),
        # two kinds in one sentence, one absent -> deleted
        ("A cup and a kite are at the top. Nice.", "Nice."),
        # nothing about objects -> untouched
        ("The picture is a drawing on a white background.", "The picture is a drawing on a white background."),
        # capitalised position phrase and kind keep their case
        ("At the top there is a red Kite.", "At the top there is a red Cup."),
    ]  # fmt: skip
    for answer, expected in cases:
        assert correct(answer, scene).text == expected, answer


def test_drawing_puts_the_colour_inside_the_box_and_white_elsewhere():
    scene = Scene(
        (SceneObject("ball", "blue", "center", (22, 22, 41, 41)), SceneObject("book", "red", "left", (1, 22, 20, 41)))
    )
    image = draw_scene(scene)
    assert image.size == (64, 64)
    assert image.getpixel((31, 31)) == COLOURS["blue"]
    assert image.getpixel((5, 31)) == COLOURS["red"]
    for xy in [(0, 0), (63, 63), (50, 10), (31, 5), (31, 55)]:
        assert image.getpixel(xy) == (255, 255, 255)


def test_cli_writes_the_demo_layout(tmp_path):
    out = tmp_path / "demo"
    subprocess.run(
        [sys.executable, "-m", "experiments.synthetic", "corrections", "--n", "6", "--seed", "0", "--out", str(out)],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    rows = [json.loads(line) for line in (out / "corrections.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert all(set(r) == {"id", "image", "question", "response", "corrected"} for r in rows)
    assert all((out / r["image"]).is_file() for r in rows)
    objects = json.loads((out / "objects.json").read_text())
    assert set(objects) == {r["image"] for r in rows}
    coco = set(KINDS.values())
    assert all(objs and set(objs) <= coco for objs in objects.values())


def test_demo_data_is_what_its_readme_says(tmp_path):
    demo = REPO / "recipes" / "demo" / "data"
    if not (demo / "corrections.jsonl").exists():
        pytest.skip("no demo data in this checkout")
    command = re.search(r"python -m experiments\.synthetic (.*) --out", (demo / "README.md").read_text()).group(1)
    subprocess.run(
        [sys.executable, "-m", "experiments.synthetic", *command.split(), "--out", str(tmp_path)],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    expected = {k: v for k, v in _digest(demo).items() if k != "README.md"}
    assert _digest(tmp_path) == expected
