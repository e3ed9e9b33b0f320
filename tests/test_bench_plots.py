"""The committed benchmark plots redraw from the committed JSON, each with the data's date in its footnote."""

import json
import shutil
from pathlib import Path

from bench import common, rerender


RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def test_every_committed_plot_redraws_from_its_json(tmp_path, monkeypatch):
    for name in rerender.PLOTTED:
        if (RESULTS / f"{name}.json").is_file():
            shutil.copy(RESULTS / f"{name}.json", tmp_path)
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    texts = []
    monkeypatch.setattr(common, "data_footer", lambda fig, payload, bars: texts.append((payload["date"], bars)))
    assert rerender.main([]) == 0
    committed = sorted(p.stem for p in RESULTS.glob("*.png"))
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == committed
    assert len(texts) == len(committed) and all(date and bars for date, bars in texts)
    # the training-step plot's whiskers come from the per-round step times kept in its JSON
    payload = json.loads((RESULTS / "train_step.json").read_text())
    from bench.train_step import _time_ratio_range

    low, high = _time_ratio_range(payload, "llama", "dense_dpo")
    assert (
        low
        < next(r["time_vs_trl"] for r in payload["rows"] if r["model"] == "llama" and r["contender"] == "dense_dpo")
        < high
    )
