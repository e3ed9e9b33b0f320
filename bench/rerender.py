"""Redraw the committed benchmark plots from their committed JSON (no benchmark is rerun):

python -m bench.rerender            # every bench/results/<name>.png whose <name>.json is there
python -m bench.rerender train_step
"""

from __future__ import annotations

import importlib
import json
import sys

from bench import common


PLOTTED = ("converter", "feedback", "loss_head", "ref_precompute", "tile_shapes", "train_step", "gpu")


def main(names: list[str]) -> int:
    for name in names or PLOTTED:
        path = common.RESULTS_DIR / f"{name}.json"
        if not path.is_file():
            continue
        payload = json.loads(path.read_text())
        if not payload.get("rows"):
            continue
        print(importlib.import_module(f"bench.{name}").plot(payload, name))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
