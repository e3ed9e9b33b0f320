"""`rlhfv data`: get the public datasets and benchmarks the recipes use, ready for them.

    rlhfv data list
    rlhfv data get rlhf-v                      # downloads the pinned revision from the Hub, converts, summarises
    rlhfv data get mmhal --from ~/MMHal-Bench  # a local copy instead (no network)

Downloads go through `huggingface_hub.snapshot_download` at the revision pinned in `data_tools.sources` (into the
Hub cache; HF_HOME moves it). The output folder receives exactly what the recipes and `rlhfv eval` read, plus a
`summary.json` with the source, its revision and what was written or left out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from data_tools.settings import add_settings_arguments, check_range, output_field, read_settings


@dataclass
class DataListSettings:
    """`rlhfv data list`: no settings; the dataclass keeps every command on the one settings parser."""


@dataclass
class DataGetSettings:
    """`rlhfv data get NAME`: download (or read a local copy of) one source and prepare it."""

    name: str = field(default="", metadata={"positional": True, "metavar": "NAME", "help": "The source's name."})
    from_dir: str | None = field(
        default=None,
        metadata={
            "flag": "from",
            "metavar": "FOLDER",
            "help": "Read a local copy of the source's files (any layout below FOLDER) instead of downloading.",
        },
    )
    out: str | None = output_field("Output folder (default: the recipes' folder, e.g. data/rlhf_v).")
    revision: str | None = field(
        default=None, metadata={"help": "A Hub revision other than the pinned one (a commit hash)."}
    )
    images: str = field(
        default="data/coco/train2017",
        metadata={"help": "LLaVA-RLHF: the COCO train2017 image folder to check the rows' images against."},
    )
    heldout: int = field(
        default=500,
        metadata={"help": "llava-rlhf-preference: rows held out for evaluation (LLaVA-RLHF held out 500)."},
    )
    seed: int = field(default=0, metadata={"help": "llava-rlhf-preference: seed of the held-out draw."})
    max_prompts: int | None = field(
        default=None,
        metadata={
            "help": "rlaif-v: keep the first N distinct instructions in prompts.jsonl (RLAIF-V used about 4k per "
            "round; default: all)."
        },
    )
    prompts_only: bool = field(default=False, metadata={"help": "rlaif-v: write prompts.jsonl only (no dense/)."})

    def __post_init__(self):
        check_range("heldout", self.heldout, minimum=0)
        check_range("max_prompts", self.max_prompts, minimum=1, optional=True)


def register(subparsers) -> None:
    from data_tools.sources import SOURCES

    parser = subparsers.add_parser(
        "data",
        help="download (or read a local copy of) a public dataset or benchmark and write what the recipes read",
        description="Get the public datasets and benchmarks the recipes use, at pinned revisions, converted and "
        "laid out as the recipes and `rlhfv eval` expect. `rlhfv data list` names them.",
    )
    steps = parser.add_subparsers(dest="data_command", metavar="STEP")
    steps.required = True
    listing = steps.add_parser("list", help="the datasets and benchmarks, their sources and what they write")
    add_settings_arguments(listing, DataListSettings)
    listing.set_defaults(func=lambda arguments: run_list(read_settings(arguments, DataListSettings)[0]))
    get = steps.add_parser(
        "get", help="download or copy one of them and prepare it", epilog=f"NAME: one of {', '.join(SOURCES)}"
    )
    add_settings_arguments(get, DataGetSettings)
    get.set_defaults(func=lambda arguments: run_get(read_settings(arguments, DataGetSettings)[0]))


PREPARERS = {
    "rlhf-v": "data_tools.data_get:prepare_rlhf_v",
    "rlaif-v": "data_tools.data_get:prepare_rlaif_v",
    "llava-rlhf-preference": "data_tools.data_get:prepare_llava_rlhf_preference",
    "llava-rlhf-rl": "data_tools.data_get:prepare_llava_rlhf_rl",
    "mmhal": "data_tools.data_get_bench:prepare_mmhal",
    "pope": "data_tools.data_get_bench:prepare_pope",
    "object-halbench": "data_tools.data_get_bench:prepare_object_halbench",
    "amber": "data_tools.data_get_bench:prepare_amber",
}

# What to run next, per source (printed after the summary)
NEXT = {
    "rlhf-v": "make train RECIPE=recipes/llava-1.5-7b/dense_dpo/config_lora.yaml  (dataset_name: {out}/dense)",
    "rlaif-v": "rlhfv iterate --config recipes/llava-1.5-7b/rlaif_v/iterate_lora.yaml  (feedback.prompts: "
    "{out}/prompts.jsonl)",
    "llava-rlhf-preference": "make train COMMAND=reward RECIPE=recipes/llava-1.5-7b/reward_model/config_lora.yaml",
    "llava-rlhf-rl": "make train COMMAND=rl RECIPE=recipes/llava-1.5-7b/rl/config_lora.yaml",
    "mmhal": "rlhfv eval mmhal generate --model MODEL --template {out}/response_template.json --images "
    "{out}/images --output_dir outputs/eval/mmhal_responses.json",
    "pope": "rlhfv eval pope generate --model MODEL --pope-dir {out} --images {out}/val2014 --output_dir outputs/eval/pope",
    "object-halbench": "rlhfv eval object-halbench generate --model MODEL --questions {out}/questions.jsonl "
    "--images COCO_VAL2014_FOLDER --output_dir outputs/eval/objhal.jsonl",
    "amber": "rlhfv eval amber generate --model MODEL --queries {out}/query_all.json --images {out}/image "
    "--output_dir outputs/eval/amber.jsonl",
}


def run_list(args) -> int:
    from data_tools.sources import SOURCES

    for source in SOURCES.values():
        print(f"{source.name}: {source.title}")
        for part in source.hub:
            print(f"  from: hf://datasets/{part.repo_id}@{part.revision[:12]} ({', '.join(part.allow_patterns)})")
        if not source.hub:
            print(f"  from: a local copy (--from): {source.where}")
        elif source.where:
            print(f"  also: {source.where}")
        print(f"  writes: {source.out}/ " + "; ".join(source.writes))
        print(f"  used by: {source.used_by}")
    return 0


def download(source, revision: str | None) -> list[Path]:
    """Each Hub part of the source in the local Hub cache, at its pinned revision."""
    from huggingface_hub import snapshot_download

    from data_tools.errors import CommandError

    roots = []
    for part in source.hub:
        pinned = revision or part.revision
        print(f"downloading hf://datasets/{part.repo_id}@{pinned[:12]} ({', '.join(part.allow_patterns)})")
        try:
            path = snapshot_download(
                part.repo_id, repo_type=part.repo_type, revision=pinned, allow_patterns=list(part.allow_patterns)
            )
        except Exception as error:  # offline, unknown revision, gated repository, network: one line with the fix
            offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
            raise CommandError(
                f"could not download {part.repo_id}@{pinned[:12]}{offline}: {type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}. Run it online, or download the files yourself "
                f"and pass --from FOLDER"
            ) from None
        roots.append(Path(path))
    return roots


def run_get(args) -> int:
    import importlib

    from data_tools.errors import CommandError
    from data_tools.sources import SOURCES, suggest

    source = SOURCES.get(args.name)
    if source is None:
        raise CommandError(f"unknown dataset {args.name!r}{suggest(args.name)}; choose from: {', '.join(SOURCES)}")
    if args.from_dir is not None:
        if not Path(args.from_dir).is_dir():
            raise CommandError(f"--from {args.from_dir}: no such folder")
        roots = [Path(args.from_dir)]
    elif not source.hub:
        raise CommandError(f"{source.name} is not on the Hub: pass --from FOLDER, {source.where}")
    else:
        roots = download(source, args.revision)
    out = Path(args.out or source.out)
    out.mkdir(parents=True, exist_ok=True)
    module_name, function_name = PREPARERS[source.name].split(":")
    prepare = getattr(importlib.import_module(module_name), function_name)
    if args.from_dir:
        where = "local copy: " + str(roots[0])
    else:
        where = [{"repo": f"datasets/{p.repo_id}", "revision": args.revision or p.revision} for p in source.hub]
    summary = {"name": source.name, "title": source.title, "source": where, **prepare(roots, out, args)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(format_summary(summary))
    print(f"summary: {out / 'summary.json'}")
    print("next: " + NEXT[source.name].format(out=out))
    return 0


def format_summary(summary: dict, indent: str = "") -> str:
    """The summary as indented `key: value` lines."""
    lines = []
    for key, value in summary.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(format_summary(value, indent + "  ") if value else f"{indent}  (none)")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(
                f"{indent}{key}: " + "; ".join(", ".join(f"{k} {v}" for k, v in item.items()) for item in value)
            )
        else:
            lines.append(f"{indent}{key}: {value}")
    return "\n".join(lines)
