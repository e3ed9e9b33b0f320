"""The per-token reference cache: round trip, keys, and refusal of entries that do not fit."""

import json

import pytest
import torch

from rlhfv.collators import scatter_ref_logps
from rlhfv.ref_cache import REF_COLUMNS, RefLogpsCache, default_cache_dir


KEY = {
    "format": 1,
    "split": "train",
    "data": "abc",
    "reference_model": "f" * 64,
    "max_length": 128,
    "truncation_mode": "keep_start",
    "processor": "p",
    "chat_template": "t",
    "precision": "fp32",
}


def test_round_trip_and_key_separation(tmp_path):
    cache = RefLogpsCache(str(tmp_path))
    assert cache.load(KEY, 2) is None
    chosen, rejected = [[-1.5, -0.25], [-3.0]], [[-2.0], [-0.5, -0.75, -1.0]]
    path = cache.save(KEY, chosen, rejected)
    table = cache.load(KEY, 2)
    assert table.column_names == list(REF_COLUMNS)
    assert table["ref_chosen_token_logps"] == chosen and table["ref_rejected_token_logps"] == rejected
    # Any change of what the values depend on is another entry, never the same one
    for field, value in (("reference_model", "0" * 64), ("max_length", 64), ("data", "abd"), ("processor", "q")):
        other = {**KEY, field: value}
        assert cache.entry_path(other) != path
        assert cache.load(other, 2) is None
    assert len(list(tmp_path.iterdir())) == 1


def test_mismatched_entries_are_refused(tmp_path):
    cache = RefLogpsCache(str(tmp_path))
    path = cache.save(KEY, [[-1.0]], [[-2.0]])
    with pytest.raises(ValueError, match="holds 1 rows.*dataset has 3"):
        cache.load(KEY, 3)
    meta_path = f"{path}/meta.json"
    meta = json.load(open(meta_path))
    meta["key"]["truncation_mode"] = "keep_end"
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(ValueError, match="truncation_mode: cached 'keep_end', now 'keep_start'"):
        cache.load(KEY, 1)
    open(meta_path, "w").write("{not json")
    with pytest.raises(ValueError, match="incomplete or corrupt"):
        cache.load(KEY, 1)


def test_default_folder_is_in_the_datasets_cache(monkeypatch, tmp_path):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    assert default_cache_dir() == str(tmp_path / "hf" / "rlhfv_ref_logps")
    assert RefLogpsCache().root == str(tmp_path / "hf" / "rlhfv_ref_logps")


def test_scatter_places_values_on_completion_positions_and_checks_counts():
    # Rows [chosen, rejected] of one pair; the rejected row's completion starts at position 0 (no log-prob there)
    completion_mask = torch.tensor([[0, 0, 1, 1, 0], [1, 1, 1, 0, 0]])
    example = {"id": "p", "ref_chosen_token_logps": [-1.0, -2.0], "ref_rejected_token_logps": [-3.0, -4.0]}
    out = scatter_ref_logps([example], completion_mask)
    expected = torch.tensor([[0, 0, -1.0, -2.0, 0], [0, -3.0, -4.0, 0, 0]])
    assert torch.equal(out, expected)
    stale = {**example, "ref_rejected_token_logps": [-3.0]}
    with pytest.raises(ValueError, match="row id='p'.*rejected hold 1 tokens but the batch has 2"):
        scatter_ref_logps([stale], completion_mask)
    assert scatter_ref_logps([{"id": "p"}], completion_mask) is None


def _png(path, color):
    from PIL import Image

    Image.new("RGB", (4, 4), color).save(path)


def test_content_digest_sees_new_pixels_under_the_same_file_name(tmp_path):
    from datasets import Dataset, Features, Image, List, Value, load_from_disk

    from rlhfv.ref_cache import dataset_content_digest

    features = Features({"id": Value("string"), "images": List(Image())})
    image = tmp_path / "cat.png"
    _png(image, "red")
    by_path = Dataset.from_dict({"id": ["a"], "images": [[str(image)]]}, features=features)
    by_path.save_to_disk(str(tmp_path / "red"))
    red_path_digest = dataset_content_digest(by_path)
    red_saved = load_from_disk(str(tmp_path / "red"))
    red_saved_digest = dataset_content_digest(red_saved)
    assert dataset_content_digest(load_from_disk(str(tmp_path / "red"))) == red_saved_digest  # stable

    _png(image, "blue")  # same name, new pixels
    assert dataset_content_digest(by_path) != red_path_digest  # an image kept as a path is read again
    blue = Dataset.from_dict({"id": ["a"], "images": [[str(image)]]}, features=features)
    blue.save_to_disk(str(tmp_path / "blue"))
    blue_saved = load_from_disk(str(tmp_path / "blue"))
    blue_saved._fingerprint = red_saved._fingerprint  # what a stale fingerprint would have reused
    assert dataset_content_digest(blue_saved) != red_saved_digest
    # so the cache entry computed for the red pixels is not found for the blue ones
    cache = RefLogpsCache(str(tmp_path / "cache"))
    cache.save({**KEY, "data": red_saved_digest}, [[-1.0]], [[-2.0]])
    assert cache.load({**KEY, "data": red_saved_digest}, 1) is not None
    assert cache.load({**KEY, "data": dataset_content_digest(blue_saved)}, 1) is None
    # the order the trainer sees is part of the content
    two = Dataset.from_dict({"id": ["a", "b"], "images": [[], []]}, features=features)
    assert dataset_content_digest(two) != dataset_content_digest(two.select([1, 0]))
