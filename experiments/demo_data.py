"""Build the demo's bundle (`recipes/demo/prior/`) from the language-prior proof's first seed.

    python -m experiments.demo_data                      # = --config recipes/proof/prior/config_proof.yaml
                                                               #   --work outputs/proof --out recipes/demo/prior

Writes into `--out`:
- `sft/`: the proof's seed-0 SFT model (tiny LLaVA) and its processor: the demo's starting point, a model that
  names an anchor's usual companion when it is absent;
- `corrections.jsonl` + `images/`: its sampled answers on the preference images and their annotator corrections
  (corrections layout, image paths relative to `--out`): the demo's training data;
- `heldout/`: held-out prompts and ground truth of the same world (a split of its own) for the before/after
  evaluation (`experiments.demo_eval.CompanionEvalCallback`).

The SFT model, pairs and images are those of `make proof`'s seed 0 (reused from `--work` when it already ran;
trained otherwise, several minutes on a CPU).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)


def build(config_path: str, work: str, out: str, heldout_items: int = 100) -> Path:
    import torch

    from experiments.prior_proof import PriorProofConfig, prepare_seed
    from experiments.synthetic.prior_writers import write_prior_prompts

    config = PriorProofConfig.from_yaml(config_path, {"seeds": [0], "out": work})
    torch.set_num_threads(config.threads)
    seed_dir = prepare_seed(config, 0)
    out_dir = Path(out)
    (out_dir / "sft").mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (seed_dir / "sft" / name).is_file():
            shutil.copy2(seed_dir / "sft" / name, out_dir / "sft" / name)
    images = out_dir / "images"
    if images.exists():
        shutil.rmtree(images)
    images.mkdir()
    rows = []
    for line in (seed_dir / "feedback" / "corrections.jsonl").read_text().splitlines():
        row = json.loads(line)
        source = Path(row["image"])
        shutil.copy2(source, images / source.name)
        rows.append({**row, "id": row["id"].replace("#", "-"), "image": f"images/{source.name}"})
    (out_dir / "corrections.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_prior_prompts(
        out_dir / "heldout", n=heldout_items, seed=0, world=config.world(), canvas=config.canvas, split="demo"
    )
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.demo_data", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="recipes/proof/prior/config_proof.yaml", help="the proof's settings")
    parser.add_argument("--work", default="outputs/proof", help="the proof's output folder (seed 0 is reused)")
    parser.add_argument("--out", default="recipes/demo/prior", help="where the bundle goes")
    parser.add_argument("--heldout-items", type=int, default=100, help="held-out images for before/after")
    args = parser.parse_args(argv)
    out = build(args.config, args.work, args.out, args.heldout_items)
    print(f"wrote the demo bundle to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
