"""Redraw the committed proof figures from their committed JSON (no experiment is rerun):

python -m experiments.rerender        # docs/proof/proof.png and docs/proof/glyph/proof.png

The date in a figure is the `date` stored in results.json by the run; for results committed before runs stored it,
the date of the commit that last changed the JSON's content (a move does not count).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
# figure -> (module whose plot() draws it, the run's results.json next to it)
FIGURES = {
    "docs/proof/proof.png": ("experiments.prior_proof", "docs/proof/results.json"),
    "docs/proof/glyph/proof.png": ("experiments.proof", "docs/proof/glyph/results.json"),
}


def data_date(payload: dict, path: Path) -> str:
    if payload.get("date"):
        return payload["date"]
    command = ["git", "log", "-1", "--follow", "--diff-filter=AM", "--format=%cs", "--", path.name]
    result = subprocess.run(command, cwd=path.parent, capture_output=True, text=True)
    date = result.stdout.strip()
    if result.returncode != 0 or not date:
        raise SystemExit(f'{path}: no `date` field and no git history to date it; add "date": "YYYY-MM-DD"')
    return date


def main(argv: list[str] | None = None) -> int:
    for figure, (module, results) in FIGURES.items():
        path = ROOT / results
        payload = json.loads(path.read_text())
        images = payload["config"]["eval_items"]
        importlib.import_module(module).plot(payload["summary"], ROOT / figure, images=images,
                                             date=data_date(payload, path))  # fmt: skip
        print(figure)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
