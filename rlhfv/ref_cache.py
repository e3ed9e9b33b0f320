"""Per-token reference log-probs on disk, fingerprinted, for `precompute_ref_log_probs=True`.

TRL caches one summed reference log-prob per answer, which fixes the token weights at precompute time. Dense DPO
caches one value per completion token instead, so `gamma`, `score_average` and `segment_source` can change between
runs without running the reference model again: the scores are summed at batch time with the batch's weights.

An entry is a folder `<root>/<split>-<digest>/` holding `meta.json` (the key) and `data/` (a `datasets` table with
`ref_chosen_token_logps` and `ref_rejected_token_logps`, one list of floats per row). The digest covers everything
the values depend on: the data (`dataset_content_digest`: the rows' bytes, including the pixels of every image,
embedded or read from its file), the reference model's weights (TRL's `hash_module`),
`max_length`, `truncation_mode`, the processor and chat template, and the precision. An entry whose stored key or
row count disagrees with what is asked for is refused with the reason; the collator also refuses a row whose cached
token count differs from the batch's. Nothing stale is used silently.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any


logger = logging.getLogger(__name__)

CACHE_FORMAT = 2  # 2: `data` is the content digest, not the dataset's fingerprint
REF_COLUMNS = ("ref_chosen_token_logps", "ref_rejected_token_logps")


def default_cache_dir() -> str:
    """`rlhfv_ref_logps` inside the Hugging Face datasets cache (honours `HF_DATASETS_CACHE`)."""
    from datasets import config

    return os.path.join(str(config.HF_DATASETS_CACHE), "rlhfv_ref_logps")


def dataset_content_digest(dataset) -> str:
    """A digest of the dataset's content: every column's Arrow data, row by row as the dataset presents them
    (selections and shuffles included), plus the bytes of every image stored as a path only.

    `Dataset._fingerprint` follows the history of transforms, not the content: the same saved folder rewritten with
    new pixels under the same file names can keep it, and reused reference log-probs would then be silently stale.
    Hashing costs one read of the dataset, once per precompute.
    """
    import hashlib

    import pyarrow as pa

    digest = hashlib.sha256()
    image_columns = [name for name, feature in dataset.features.items() if _holds_images(feature)]
    for table in dataset.with_format("arrow").iter(batch_size=1000):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        digest.update(sink.getvalue())
        for name in image_columns:
            for path in _image_paths_without_bytes(table.column(name).to_pylist()):
                digest.update(f"\0{path}\0".encode())
                with open(path, "rb") as handle:
                    for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                        digest.update(block)
    return digest.hexdigest()


def _holds_images(feature) -> bool:
    from datasets import Image, List, Sequence

    if isinstance(feature, Image):
        return True
    if isinstance(feature, (List, Sequence)):
        return _holds_images(feature.feature)
    return False


def _image_paths_without_bytes(values) -> list[str]:
    paths = []
    for value in values:
        if isinstance(value, list):
            paths += _image_paths_without_bytes(value)
        elif isinstance(value, dict) and value.get("bytes") is None and value.get("path"):
            paths.append(value["path"])
    return paths


def key_digest(key: dict[str, Any]) -> str:
    from datasets.fingerprint import Hasher

    return Hasher.hash(json.dumps(key, sort_keys=True, default=str))


class RefLogpsCache:
    """Folder of cached per-token reference log-probs; see the module docstring."""

    def __init__(self, root: str | None = None):
        self.root = os.path.abspath(os.path.expanduser(root or default_cache_dir()))

    def entry_path(self, key: dict[str, Any]) -> str:
        safe_name = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(key.get("split", "data")))
        return os.path.join(self.root, f"{safe_name}-{key_digest(key)}")

    def load(self, key: dict[str, Any], num_rows: int):
        """The cached table for `key`, or None when there is no entry. Raises on a mismatched entry."""
        from datasets import Dataset

        path = self.entry_path(key)
        if not os.path.exists(path):
            return None
        meta_path = os.path.join(path, "meta.json")
        try:
            with open(meta_path) as f:
                stored = json.load(f)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"Reference log-prob cache {path} is incomplete or corrupt ({error}). Delete the folder to recompute."
            ) from error
        expected = json.loads(json.dumps(key, default=str))
        differences = {
            name: (stored.get("key", {}).get(name), value)
            for name, value in expected.items()
            if stored.get("key", {}).get(name) != value
        }
        if differences:
            detail = "; ".join(f"{name}: cached {old!r}, now {new!r}" for name, (old, new) in differences.items())
            raise ValueError(
                f"Reference log-prob cache {path} was computed for other settings ({detail}). Refusing to reuse it: "
                "delete the folder or set `ref_cache_dir` to another folder."
            )
        table = Dataset.load_from_disk(os.path.join(path, "data"))
        if len(table) != num_rows or tuple(table.column_names) != REF_COLUMNS:
            raise ValueError(
                f"Reference log-prob cache {path} holds {len(table)} rows ({table.column_names}) but the dataset has "
                f"{num_rows}. Refusing to reuse it: delete the folder or set `ref_cache_dir` to another folder."
            )
        return table

    def save(self, key: dict[str, Any], chosen: list[list[float]], rejected: list[list[float]]) -> str:
        """Write an entry atomically (a temporary folder renamed into place); returns its path."""
        from datasets import Dataset, Features, List, Value

        path = self.entry_path(key)
        tmp = f"{path}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        features = Features({name: List(Value("float32")) for name in REF_COLUMNS})
        table = Dataset.from_dict({REF_COLUMNS[0]: chosen, REF_COLUMNS[1]: rejected}, features=features)
        table.save_to_disk(os.path.join(tmp, "data"))
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump({"format": CACHE_FORMAT, "key": key, "rows": len(table)}, f, indent=2, default=str)
        if os.path.exists(path):  # another process won the race with the same content
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, path)
        return path
