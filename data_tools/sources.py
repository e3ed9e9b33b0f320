"""The public datasets and benchmarks the recipes use: where each lives, at which pinned revision, and what
`rlhfv data get <name>` writes for it.

Each revision is a Hub commit hash, so a download today and in a year read the same bytes. To move to a newer
revision, change it here and rerun the tests (tests/test_data_get.py) against a few real rows.

Two benchmarks have no official copy on the Hub: Object HalBench (the question file ships with RLHF-V's GitHub
repository, the truth is COCO's 2014 annotations) and AMBER (GitHub repository + images on Google Drive). Their
entries have no `hub` part: `rlhfv data get` reads them from a local folder (`--from`) and says where to get it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class HubPart:
    """One Hub repository (or part of one) that a source downloads."""

    repo_id: str
    revision: str  # a commit hash: never a branch name
    allow_patterns: tuple[str, ...]
    repo_type: str = "dataset"


@dataclass(frozen=True)
class Source:
    name: str
    title: str
    out: str  # default output folder, relative to the repository root
    hub: tuple[HubPart, ...] = ()
    where: str = ""  # where to get it by hand (printed when a local copy is needed)
    writes: tuple[str, ...] = field(default_factory=tuple)  # what the output folder holds, for `rlhfv data list`
    used_by: str = ""


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source(
            name="rlhf-v",
            title="RLHF-V-Dataset (5,733 segment-level corrections)",
            out="data/rlhf_v",
            hub=(HubPart("openbmb/RLHF-V-Dataset", "1d8e9804b59e9da64ad7b1e17d505869ab9b2ad3", ("*.parquet",)),),
            writes=("dense/ (converted dense dataset, `dataset_name` of the Dense DPO recipes)", "summary.json"),
            used_by="recipes/*/dense_dpo",
        ),
        Source(
            name="rlaif-v",
            title="RLAIF-V-Dataset (AI-feedback preference pairs)",
            out="data/rlaif_v",
            hub=(
                HubPart(
                    "openbmb/RLAIF-V-Dataset",
                    "586aff0ea91b485a73fe99f65570f054c10c79d9",
                    ("RLAIF-V-Dataset_*.parquet",),
                ),
            ),
            writes=(
                "prompts.jsonl (one {id, image, question} per instruction: `feedback.prompts` of the RLAIF-V recipes)",
                "images/ (the instructions' images as files)",
                "dense/ (the pairs converted, for `rlhfv train` with plain or Dense DPO)",
                "summary.json",
            ),
            used_by="recipes/*/rlaif_v",
        ),
        Source(
            name="llava-rlhf-preference",
            title="LLaVA-RLHF's human preferences (10k) and COCO captions as facts",
            out="data/llava-rlhf",
            hub=(
                HubPart(
                    "zhiqings/LLaVA-Human-Preference-10K",
                    "e60c9e520dde0c331f1b833ec991789ed238554c",
                    ("llava_7b_v1_preference.json",),
                ),
                HubPart(
                    "zhiqings/LLaVA-RLHF-Data", "a918ae67d9f0143afbc9fc621332dcaf20f28c89", ("image_to_caption.json",)
                ),
            ),
            where="images: COCO train2017 (http://images.cocodataset.org/zips/train2017.zip) into data/coco/train2017",
            writes=(
                "preference_train.json (the preferences less the held-out rows)",
                "preference_heldout500.json (500 rows held out, seed 0)",
                "image_to_caption.json",
                "summary.json",
            ),
            used_by="recipes/llava-1.5-7b/reward_model",
        ),
        Source(
            name="llava-rlhf-rl",
            title="LLaVA-RLHF's RL prompts (llava_ppo50k-aokvqa12k-vqa10k) with captions as facts",
            out="data/llava-rlhf",
            hub=(
                HubPart(
                    "zhiqings/LLaVA-RLHF-Data",
                    "a918ae67d9f0143afbc9fc621332dcaf20f28c89",
                    ("llava_ppo50k-aokvqa12k-vqa10k.json", "image_to_caption.json"),
                ),
            ),
            where="images: COCO train2017 (http://images.cocodataset.org/zips/train2017.zip) into data/coco/train2017",
            writes=("rl_prompts.jsonl ({id, image, question, facts, yes_no_truth, mc_answer})", "summary.json"),
            used_by="recipes/llava-1.5-7b/rl",
        ),
        Source(
            name="mmhal",
            title="MMHal-Bench (96 questions, judged 0-6)",
            out="data/mmhal",
            hub=(
                HubPart(
                    "Shengcao1006/MMHal-Bench",
                    "f5f49a938f45ed99e235b8519ba28f76832a2add",
                    ("response_template.json", "test_data.zip"),
                ),
            ),
            writes=("response_template.json", "images/ (file names as in image_src)", "summary.json"),
            used_by="rlhfv eval mmhal",
        ),
        Source(
            name="pope",
            title="POPE (COCO val2014, random/popular/adversarial, 3 x 3,000 yes/no questions)",
            out="data/pope",
            hub=(HubPart("lmms-lab/POPE", "4db1276663dfa5eb8ad16a52d24c31a09e470896", ("data/*.parquet",)),),
            writes=(
                "coco_pope_{random,popular,adversarial}.json (POPE's own layout)",
                "val2014/ (the COCO val2014 images the questions use)",
                "summary.json",
            ),
            used_by="rlhfv eval pope",
        ),
        Source(
            name="object-halbench",
            title="Object HalBench (300 COCO val2014 images, detailed descriptions, CHAIR)",
            out="data/object_halbench",
            where=(
                "a folder holding the question file (a JSONL of {image_id, question, image?}, e.g. RLHF-V's "
                "obj_halbench_300_with_image.jsonl) and COCO's instances_val2014.json and captions_val2014.json "
                "(http://images.cocodataset.org/annotations/annotations_trainval2014.zip)"
            ),
            writes=("questions.jsonl", "instances_val2014.json", "captions_val2014.json", "summary.json"),
            used_by="rlhfv eval object-halbench",
        ),
        Source(
            name="amber",
            title="AMBER (1,004 generative + 14,216 discriminative items)",
            out="data/amber",
            where=(
                "a clone of https://github.com/junyangwang0410/AMBER (its data/ folder) with the images from the "
                "link in its README unpacked into image/ beside data/"
            ),
            writes=(
                "query_all.json and the per-task query files",
                "annotations.json, relation.json, safe_words.txt, metrics.txt",
                "image/ (AMBER_<n>.jpg)",
                "summary.json",
            ),
            used_by="rlhfv eval amber",
        ),
    )
}


def suggest(name: str) -> str:
    """' (did you mean X?)' for a near miss, else ''."""
    import difflib

    close = difflib.get_close_matches(name, SOURCES, n=1, cutoff=0.5)
    return f" (did you mean {close[0]}?)" if close else ""
