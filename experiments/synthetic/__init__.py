"""A synthetic world with known truth: images of simple objects, questions, true descriptions, hallucinated answers
and their corrections.

    python -m experiments.synthetic corrections --n 64 --seed 0 --out DIR   # preference data (corrections layout)
    python -m experiments.synthetic sft --n 512 --seed 0 --out DIR          # SFT conversations with true descriptions
    python -m experiments.synthetic prompts --n 100 --seed 0 --out DIR      # held-out eval prompts + ground truth

`--world prior` gives the language-prior world (`prior.py`): anchors with usual companions, SFT captions that name
an absent companion at `--prior-rate`, corrections that delete that claim.
"""

from experiments.synthetic.annotator import Correction, correct, find_claims
from experiments.synthetic.describe import QUESTIONS, describe
from experiments.synthetic.hallucinate import Hallucination, hallucinate, hallucinated_answer
from experiments.synthetic.world import COLOURS, KINDS, POSITIONS, Scene, SceneObject, draw_scene, sample_scene
from experiments.synthetic.writers import load_scenes, make_item, write_corrections, write_prompts, write_sft


__all__ = [
    "COLOURS",
    "KINDS",
    "POSITIONS",
    "QUESTIONS",
    "Correction",
    "Hallucination",
    "Scene",
    "SceneObject",
    "correct",
    "describe",
    "draw_scene",
    "find_claims",
    "hallucinate",
    "hallucinated_answer",
    "load_scenes",
    "make_item",
    "sample_scene",
    "write_corrections",
    "write_prompts",
    "write_sft",
]
