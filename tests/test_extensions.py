"""Research code reached by import path (rlhfv.extensions): moved modules are named, the checkout's experiments/ is
found without the working folder on sys.path, and a missing module is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from data_tools.errors import CommandError


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "old, new",
    [
        ("rlhfv.experiments.demo_eval:CompanionEvalCallback", "experiments.demo_eval:CompanionEvalCallback"),
        ("data_tools.synthetic:load_scenes", "experiments.synthetic:load_scenes"),
        ("data_tools.synthetic.writers:write_sft", "experiments.synthetic.writers:write_sft"),
        ("rlhfv.reward.synthetic:main", "experiments.fact_rlhf_data:main"),
    ],
)
def test_a_moved_module_is_named_with_its_new_path(old, new):
    from rlhfv.extensions import import_object

    with pytest.raises(CommandError, match=f"{old} moved to {new}"):
        import_object(old)


def test_a_recipe_naming_the_old_demo_callback_is_told_the_new_one():
    from rlhfv.callbacks import import_callback

    with pytest.raises(CommandError) as error:
        import_callback("rlhfv.experiments.demo_eval:CompanionEvalCallback")
    assert str(error.value) == (
        "`callbacks`: rlhfv.experiments.demo_eval:CompanionEvalCallback moved to "
        "experiments.demo_eval:CompanionEvalCallback; name that in the recipe"
    )


def test_the_demo_recipe_names_the_callback_where_it_lives():
    import yaml

    from rlhfv.callbacks import import_callback

    recipe = yaml.safe_load((ROOT / "recipes" / "demo" / "config_demo.yaml").read_text())
    (spec,) = recipe["callbacks"]
    callback = import_callback(spec)
    assert type(callback).__name__ == "CompanionEvalCallback"
    assert callback.file_name == "companion_eval.json"


def test_a_missing_research_module_is_one_line():
    from rlhfv.extensions import import_object

    with pytest.raises(CommandError, match="no module experiments.no_such_thing in the research package"):
        import_object("experiments.no_such_thing:X")
    with pytest.raises(CommandError, match="is not `module:attr`"):
        import_object("experiments.proof")


def test_the_checkout_research_package_is_found_without_the_working_folder_on_sys_path(tmp_path):
    # as under the `rlhfv` console script of an editable install: rlhfv importable, the checkout not on sys.path
    site = tmp_path / "site"
    site.mkdir()
    for package in ("rlhfv", "data_tools"):
        (site / package).symlink_to(ROOT / package)
    code = (
        "import importlib.util, sys\n"
        f"assert {str(ROOT)!r} not in sys.path and importlib.util.find_spec('experiments') is None\n"
        "from rlhfv.extensions import import_object\n"
        "print(import_object('experiments.proof:ProofConfig').__module__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": f"{site}:{':'.join(p for p in sys.path if 'site-packages' in p)}"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "experiments.proof"


def test_held_out_callback_measures_before_and_after_and_reports_both(tmp_path, capsys):
    import json
    from types import SimpleNamespace

    from rlhfv.heldout_eval import HeldOutEvalCallback

    class Counting(HeldOutEvalCallback):
        reported_metrics = ("hits",)
        file_name = "counting_eval.json"

        def __init__(self):
            super().__init__()
            self.calls = 0

        def measure(self, model, processor):
            self.calls += 1
            return {"hits": model["hits"], "seen_processor": processor}

    callback = Counting()
    args, state = SimpleNamespace(output_dir=str(tmp_path / "run")), SimpleNamespace(is_world_process_zero=True)
    model = {"hits": 3}
    callback.on_train_begin(args, state, None, model=model, processing_class="p")
    callback.on_train_begin(args, state, None, model=model, processing_class="p")  # measured once
    model["hits"] = 7
    metrics = {"eval_loss": 0.5}
    callback.on_evaluate(args, state, None, metrics=metrics)
    assert metrics == {"eval_loss": 0.5, "eval_hits_before": 3}
    callback.on_train_end(args, state, None, model=model, processing_class="p")
    assert callback.calls == 2
    written = json.loads((tmp_path / "run" / "counting_eval.json").read_text())
    assert (written["before"]["hits"], written["after"]["hits"]) == (3, 7)
    # the table is kept for `rlhfv train` to print last (after the evaluation and the saving), not printed here
    assert "hits" in callback.final_report and "hits" not in capsys.readouterr().out
    metrics = {"loss": 0.1}
    callback.on_evaluate(args, state, None, metrics=metrics)
    assert metrics == {"loss": 0.1, "hits_before": 3, "hits_after": 7}
