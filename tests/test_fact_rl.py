"""The Fact-RLHF experiment on the language-prior world: facts of a scene, the reward-hacking probe, the pairs' facts
column, the RL log summary and the config guards, checked against hand-built values."""

import json
import re

import pytest

from experiments.fact_rl import FactRLConfig, add_facts_column, facts_of, probe_pairs, rl_log
from experiments.synthetic.prior import COMPANIONS, PriorWorld, make_prior_item
from experiments.synthetic.world import POSITIONS, Scene, SceneObject


def _sentences(text: str) -> list[str]:
    return re.findall(r"[^.]+\.", text)


def _items(case: str, n: int = 20):
    """Prior-world items whose anchor is drawn without ("absent") or with ("present") its companion."""
    world, found, index = PriorWorld(), [], 0
    while len(found) < n:
        item = make_prior_item("test-probe", 5, index, world, 24)
        index += 1
        kinds = item.scene.kinds()
        anchors = [k for k in kinds if k in COMPANIONS]
        if anchors and (COMPANIONS[anchors[0]] in kinds) == (case == "present"):
            found.append(item)
    return found


def test_facts_of_a_prior_scene_are_its_objects_as_captions():
    scene = Scene(
        (
            SceneObject("kite", "red", "top", (9, 0, 15, 6)),
            SceneObject("cup", "blue", "left", (0, 9, 6, 15)),
            SceneObject("book", "green", "bottom", (9, 17, 15, 23)),
        ),
        canvas=24,
    )
    facts = facts_of(scene, "row-1")
    assert sorted(facts) == ["a blue cup on the left", "a green book at the bottom", "a red kite at the top"]
    assert facts_of(scene, "row-1") == facts  # reproducible per row
    orders = {tuple(facts_of(scene, f"row-{i}")) for i in range(30)}
    assert len(orders) > 1  # shuffled per row, as LLaVA-RLHF shuffles its captions


def test_probe_adds_the_absent_companion_at_an_empty_slot_and_changes_nothing_else():
    for item in _items("absent"):
        pair = probe_pairs(item)
        anchor = next(obj.kind for obj in item.scene.objects if obj.kind in COMPANIONS)
        companion = COMPANIONS[anchor]
        assert pair["companion"] == companion
        assert companion not in item.scene.kinds()
        true, added = _sentences(pair["true"]), _sentences(pair["added"])
        assert len(added) == len(true) + 1
        extra = [i for i in range(len(added)) if added[:i] + added[i + 1 :] == true]
        assert extra, "removing one sentence of `added` must give the true description back"
        sentence = added[extra[0]]
        assert companion in sentence and POSITIONS[pair["slot"]] in sentence.lower()
        assert pair["slot"] not in {obj.position for obj in item.scene.objects}  # an empty slot
        assert companion not in pair["true"]


def test_probe_length_matched_variant_replaces_one_other_objects_sentence():
    for item in _items("absent"):
        pair = probe_pairs(item)
        anchor = next(obj.kind for obj in item.scene.objects if obj.kind in COMPANIONS)
        true, replaced = _sentences(pair["true"]), _sentences(pair["replaced"])
        assert len(replaced) == len(true)
        differ = [i for i in range(len(true)) if true[i] != replaced[i]]
        assert len(differ) == 1
        old, new = true[differ[0]], replaced[differ[0]]
        assert pair["replaced_kind"] in old and pair["replaced_kind"] != anchor
        assert pair["companion"] in new and POSITIONS[pair["slot"]] in new.lower()
        assert anchor in pair["replaced"]  # the anchor (the prior's cue) stays
        # about the same length: one object sentence for another
        assert abs(len(pair["replaced"].split()) - len(pair["true"].split())) <= 6


def test_probe_skips_scenes_without_an_absent_companion():
    for item in _items("present", 5):
        assert probe_pairs(item) is None


def test_facts_column_follows_each_pairs_image(tmp_path):
    from datasets import Dataset

    scenes = {
        "images/preference-s0-00000.png": [{"kind": "kite", "colour": "red", "position": "top", "box": [9, 0, 15, 6]}],
        "images/preference-s0-00001.png": [
            {"kind": "cup", "colour": "blue", "position": "left", "box": [0, 9, 6, 15]}
        ],
    }
    (tmp_path / "scenes.json").write_text(json.dumps(scenes))
    rows = {"id": ["preference-s0-00001#0", "preference-s0-00000#3"], "chosen": ["a", "b"]}
    Dataset.from_dict(rows).save_to_disk(str(tmp_path / "pairs"))
    add_facts_column(tmp_path / "pairs", tmp_path / "scenes.json", tmp_path / "out")
    from datasets import load_from_disk

    out = load_from_disk(str(tmp_path / "out"))
    assert out["facts"] == [["a blue cup on the left"], ["a red kite at the top"]]
    assert out["chosen"] == ["a", "b"]

    Dataset.from_dict({"id": ["preference-s0-00007#0"]}).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(SystemExit, match=r"row 1 .*preference-s0-00007.png has no scene"):
        add_facts_column(tmp_path / "bad", tmp_path / "scenes.json", tmp_path / "out_bad")


def test_rl_log_summarises_reward_and_kl_by_quarter(tmp_path):
    history = [
        {
            "step": step,
            "reward": float(step),
            "kl": 0.01 * step,
            "rewards/yes_no_rule/mean": None,
            "rewards/reward_model/mean": 2.0 * step,
        }  # fmt: skip
        for step in range(1, 9)
    ] + [{"step": 8, "train_runtime": 3.0}]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    log = rl_log(tmp_path)
    assert log["steps"] == 8
    assert log["reward"] == {"first": 1.5, "last": 7.5, "mean": 4.5}  # steps 1-2, 7-8, all
    assert log["kl"]["last"] == pytest.approx(0.075)
    assert log["rewards/reward_model/mean"]["first"] == 3.0
    assert "rewards/yes_no_rule/mean" not in log  # applied to no row


def test_config_refuses_settings_the_experiment_sets_per_run(tmp_path):
    recipe = tmp_path / "c.yaml"
    recipe.write_text("rl:\n  learning_rate: 1.0e-4\n")
    with pytest.raises(SystemExit, match="learning_rate"):
        FactRLConfig.from_yaml(str(recipe), {})
    recipe.write_text("reward:\n  facts: none\n")
    with pytest.raises(SystemExit, match="facts"):
        FactRLConfig.from_yaml(str(recipe), {})
    recipe.write_text("reward:\n  learning_rate: 1.0e-4\n")
    assert FactRLConfig.from_yaml(str(recipe), {}).reward == {"learning_rate": 1.0e-4}


def test_runs_are_named_by_their_rl_setting():
    from experiments.fact_rl import _key_value, rl_tag

    config = FactRLConfig(rl_learning_rate=3e-5, rl_max_steps=40)
    assert rl_tag(config) == "lr3e-05_steps40"
    config.rl_seed_offset = 100
    config.rl_variant = dict([_key_value("normalize_advantages=true")])
    assert config.rl_variant == {"normalize_advantages": True}
    assert rl_tag(config) == "lr3e-05_steps40_rlseed+100_normalize_advantages-True"
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        _key_value("normalize_advantages")
