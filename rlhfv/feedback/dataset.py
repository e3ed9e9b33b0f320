"""Pairs -> the dense preference dataset of docs/data_format.md, which `rlhfv train` reads as it is.

Images are stored as bytes (not paths), so the dataset folder can move without its images. Every row is checked
against the row contract (`data_tools.contract`) before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from data_tools.contract import check_row


def pair_row(pair: dict, source: str) -> dict:
    """One dataset row from a pair record of pairs.jsonl (see pipeline.py for its fields)."""
    row = {
        "id": pair["pair_id"],
        "source": source,
        "prompt": [{"role": "user", "content": pair["question"]}],
        "chosen": [{"role": "assistant", "content": pair["chosen"]}],
        "rejected": [{"role": "assistant", "content": pair["rejected"]}],
        "chosen_spans": pair["chosen_spans"],
        "rejected_spans": pair["rejected_spans"],
    }
    # the dataset's one row contract (docs/data_format.md), as `rlhfv train` will check it
    check_row(row, f"pair {pair['pair_id']}")
    return row


def write_dataset(pairs: list[dict], out: str | Path, source: str):
    """Save the pairs as a `datasets` folder at `out` (written to a temporary folder, then renamed)."""
    import shutil

    from datasets import Dataset

    from data_tools.convert import dataset_features

    with_images = any(p.get("image_path") for p in pairs)
    if with_images and not all(p.get("image_path") for p in pairs):
        raise ValueError("some pairs have an image and some do not: one dataset holds one kind")
    rows = []
    for pair in pairs:
        row = pair_row(pair, source)
        if with_images:
            path = Path(pair["image_path"])
            row["images"] = [{"bytes": path.read_bytes(), "path": path.name}]
        rows.append(row)
    features = dataset_features(with_images)
    dataset = (
        Dataset.from_list(rows, features=features)
        if rows
        else Dataset.from_dict({name: [] for name in features}, features=features)
    )
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    dataset.save_to_disk(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return dataset
