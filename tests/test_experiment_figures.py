"""The committed proof figures redraw from their committed JSON (`python -m experiments.rerender`)."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from experiments import rerender


ROOT = Path(__file__).resolve().parents[1]


def test_every_committed_docs_figure_has_a_redraw_entry():
    committed = {str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.png")}
    assert committed == set(rerender.FIGURES)


def test_figures_redraw_from_the_committed_json_with_their_data_date(tmp_path):
    for figure, (module, results) in rerender.FIGURES.items():
        path = ROOT / results
        payload = json.loads(path.read_text())
        date = rerender.data_date(payload, path)
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", date), date
        out = tmp_path / Path(figure).name
        importlib.import_module(module).plot(
            payload["summary"], out, images=payload["config"]["eval_items"], date=date
        )
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure


def test_a_stored_date_wins_over_the_commit_date(tmp_path):
    assert rerender.data_date({"date": "2026-01-31"}, tmp_path / "results.json") == "2026-01-31"
