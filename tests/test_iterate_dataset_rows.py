"""A round whose feedback yields no pair saves a dataset of 0 rows; `rlhfv iterate` must read that as "no pairs"
(the round keeps its policy) rather than crash in `load_from_disk`."""

from datasets import Dataset

from rlhfv.iterate import dataset_rows


def test_a_saved_dataset_of_zero_rows_counts_as_no_pairs(tmp_path):
    empty = Dataset.from_dict({"prompt": [], "chosen": [], "rejected": []})
    empty.save_to_disk(str(tmp_path / "empty"))
    assert dataset_rows(tmp_path / "empty") == 0
    two = Dataset.from_dict({"prompt": ["a", "b"], "chosen": ["c", "d"], "rejected": ["e", "f"]})
    two.save_to_disk(str(tmp_path / "two"))
    assert dataset_rows(tmp_path / "two") == 2
