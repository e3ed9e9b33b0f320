"""`rlhfv convert` never destroys data: outputs never replace inputs, `--overwrite` swaps in only a finished
conversion, and the training loader refuses a folder an interrupted save left behind."""

import hashlib
import io
import json
import os
from types import SimpleNamespace

import pytest
from PIL import Image

from data_tools.errors import CommandError
from rlhfv.cli import main


def png_bytes(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def rows(count, image=None, start=0):
    return [
        {
            "id": f"r{index}",
            **({"image": image} if image else {}),
            "question": "What colour is the car?",
            "response": f"The car number {index} is red.",
            "corrected": f"The car number {index} is blue.",
        }
        for index in range(start, start + count)
    ]


def tree_digest(folder) -> dict:
    """Every file under `folder` with the md5 of its bytes."""
    return {
        os.path.relpath(os.path.join(root, name), folder): hashlib.md5(
            open(os.path.join(root, name), "rb").read()
        ).hexdigest()
        for root, _, names in os.walk(folder)
        for name in names
    }


def convert(*args) -> int:
    return main(["convert", *map(str, args), "--no-progress"])


def test_jsonl_export_onto_its_own_input_is_refused_and_nothing_is_touched(tmp_path, capsys):
    # rlhfv convert mydata.jsonl -o mydata --to jsonl, with the images in mydata_images/
    (tmp_path / "mydata_images").mkdir()
    (tmp_path / "mydata_images" / "0000000-0.png").write_bytes(png_bytes("red"))
    write_rows(tmp_path / "mydata.jsonl", rows(3, image="mydata_images/0000000-0.png"))
    before = tree_digest(tmp_path)
    assert convert(tmp_path / "mydata.jsonl", "-o", tmp_path / "mydata", "--to", "jsonl") == 1
    assert "would overwrite the input" in capsys.readouterr().err
    assert tree_digest(tmp_path) == before
    # not even with --overwrite
    assert convert(tmp_path / "mydata.jsonl", "-o", tmp_path / "mydata", "--to", "jsonl", "--overwrite") == 1
    assert tree_digest(tmp_path) == before


def test_parquet_export_onto_its_own_input_is_refused(tmp_path, capsys):
    source = write_rows(tmp_path / "raw.jsonl", rows(2))
    assert convert(source, "-o", tmp_path / "first", "--to", "parquet") == 0
    before = tree_digest(tmp_path)
    assert convert(tmp_path / "first.parquet", "-o", tmp_path / "first", "--to", "parquet", "--overwrite") == 1
    assert "would overwrite the input" in capsys.readouterr().err
    assert tree_digest(tmp_path) == before


def test_rejects_file_onto_the_input_is_refused(tmp_path, capsys):
    # rlhfv convert raw.jsonl -o out --on-error skip --rejects raw.jsonl
    raw = write_rows(tmp_path / "raw.jsonl", rows(3))
    before = raw.read_bytes()
    assert convert(raw, "-o", tmp_path / "out", "--on-error", "skip", "--rejects", raw) == 1
    assert "--rejects" in capsys.readouterr().err
    assert raw.read_bytes() == before
    assert not (tmp_path / "out").exists()


def test_api_refuses_rejects_path_onto_an_input(tmp_path):
    from data_tools.convert import convert as convert_api

    raw = write_rows(tmp_path / "raw.jsonl", rows(2))
    before = raw.read_bytes()
    with pytest.raises(CommandError, match="would overwrite the input"):
        convert_api([str(raw)], on_error="skip", rejects_path=str(raw), progress=False)
    assert raw.read_bytes() == before


def test_export_image_folder_holding_input_images_is_never_replaced(tmp_path, capsys):
    # other.jsonl reads its images from out_images/, whose names look like an export: --overwrite must not delete it
    (tmp_path / "out_images").mkdir()
    (tmp_path / "out_images" / "0000000-0.png").write_bytes(png_bytes("blue"))
    other = write_rows(tmp_path / "other.jsonl", rows(2, image="out_images/0000000-0.png"))
    before = tree_digest(tmp_path)
    assert convert(other, "-o", tmp_path / "out", "--to", "jsonl", "--overwrite") == 1
    assert "image folder of the input rows" in capsys.readouterr().err
    assert tree_digest(tmp_path) == before


def test_existing_exports_need_overwrite_and_are_then_replaced(tmp_path, capsys):
    raw = write_rows(tmp_path / "raw.jsonl", rows(2))
    assert convert(raw, "-o", tmp_path / "out", "--to", "jsonl") == 0
    assert convert(raw, "-o", tmp_path / "out2", "--to", "jsonl") == 0
    (tmp_path / "out2").rename(tmp_path / "elsewhere")  # only the export is left in the way
    assert convert(raw, "-o", tmp_path / "out2", "--to", "jsonl") == 1
    assert "out2.jsonl already exists; pass --overwrite" in capsys.readouterr().err
    write_rows(raw, rows(3))
    assert convert(raw, "-o", tmp_path / "out2", "--to", "jsonl", "--overwrite") == 0
    assert len((tmp_path / "out2.jsonl").read_text().splitlines()) == 3


def test_failed_overwrite_keeps_the_old_dataset(tmp_path, capsys):
    from datasets import load_from_disk

    raw = write_rows(tmp_path / "raw.jsonl", rows(3))
    output = tmp_path / "dense"
    assert convert(raw, "-o", output) == 0
    before = tree_digest(output)
    broken = write_rows(tmp_path / "broken.jsonl", rows(2) + [{"id": "bad", "question": "Q", "response": "x"}])
    assert convert(broken, "-o", output, "--overwrite") == 1
    assert "field 'corrected'" in capsys.readouterr().err
    assert tree_digest(output) == before
    assert load_from_disk(str(output))["id"] == ["r0", "r1", "r2"]
    # no temporary folder is left beside it
    assert sorted(os.listdir(tmp_path)) == ["broken.jsonl", "dense", "raw.jsonl"]


def test_interrupted_overwrite_keeps_the_old_dataset(tmp_path, monkeypatch):
    """Ctrl-C while the new dataset is being saved: the old one stays, the half-written one is removed."""
    from datasets import Dataset, load_from_disk

    raw = write_rows(tmp_path / "raw.jsonl", rows(3))
    output = tmp_path / "dense"
    assert convert(raw, "-o", output) == 0
    before = tree_digest(output)
    save = Dataset.save_to_disk

    def interrupted_save(self, path, **kwargs):
        save(self.select([0]), path)
        os.remove(os.path.join(path, "state.json"))
        raise KeyboardInterrupt

    monkeypatch.setattr(Dataset, "save_to_disk", interrupted_save)
    write_rows(raw, rows(5))
    assert convert(raw, "-o", output, "--overwrite") == 130
    assert tree_digest(output) == before
    assert len(load_from_disk(str(output))) == 3
    assert sorted(os.listdir(tmp_path)) == ["dense", "raw.jsonl"]


def test_successful_overwrite_replaces_the_dataset(tmp_path):
    from datasets import load_from_disk

    raw = write_rows(tmp_path / "raw.jsonl", rows(3))
    output = tmp_path / "dense"
    assert convert(raw, "-o", output) == 0
    write_rows(raw, rows(2, start=10))
    assert convert(raw, "-o", output, "--overwrite") == 0
    assert load_from_disk(str(output))["id"] == ["r10", "r11"]
    assert sorted(os.listdir(tmp_path)) == ["dense", "raw.jsonl"]


def interrupted_save_folder(folder):
    """What SIGINT during a 2-shard `save_to_disk` leaves: the first shard and no state.json."""
    from datasets import Dataset

    Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": "Q"}]] * 4,
            "chosen": [[{"role": "assistant", "content": "A b."}]] * 4,
            "rejected": [[{"role": "assistant", "content": "A c."}]] * 4,
            "chosen_spans": [[[2, 3]]] * 4,
            "rejected_spans": [[[2, 3]]] * 4,
        }
    ).save_to_disk(str(folder), num_shards=2)
    for name in ("state.json", "dataset_info.json", "data-00001-of-00002.arrow"):
        os.remove(folder / name)


def load_args(name):
    script_args = SimpleNamespace(
        dataset_name=str(name),
        dataset_config=None,
        dataset_streaming=False,
        dataset_format=None,
        dataset_train_split="train",
        dataset_test_split="test",
        dataset_test_size=None,
    )
    training_args = SimpleNamespace(segment_source="spans", eval_strategy="no", seed=0)
    return script_args, training_args


def test_training_loader_refuses_an_interrupted_save(tmp_path):
    from rlhfv.data import load_preference_data

    folder = tmp_path / "dense"
    interrupted_save_folder(folder)
    with pytest.raises(CommandError, match="not a complete saved dataset.*no state.json.*--overwrite"):
        load_preference_data(*load_args(folder))


def test_training_loader_refuses_a_save_missing_a_listed_shard(tmp_path):
    from datasets import Dataset

    from rlhfv.data import load_preference_data

    folder = tmp_path / "dense"
    interrupted_save_folder(folder)
    Dataset.from_dict({"a": [1, 2]}).save_to_disk(str(tmp_path / "full"), num_shards=2)
    os.remove(tmp_path / "full" / "data-00001-of-00002.arrow")
    with pytest.raises(CommandError, match="misses 1 of its 2 shard"):
        load_preference_data(*load_args(tmp_path / "full"))


def test_training_loader_refuses_an_incomplete_dataset_dict(tmp_path):
    from datasets import Dataset, DatasetDict

    from rlhfv.data import load_preference_data

    folder = tmp_path / "dense"
    DatasetDict(train=Dataset.from_dict({"a": [1]}), test=Dataset.from_dict({"a": [2]})).save_to_disk(str(folder))
    os.remove(folder / "test" / "state.json")
    with pytest.raises(CommandError, match="split 'test'"):
        load_preference_data(*load_args(folder))


def test_overwrite_cleans_up_an_interrupted_save(tmp_path):
    from datasets import load_from_disk

    folder = tmp_path / "dense"
    interrupted_save_folder(folder)
    raw = write_rows(tmp_path / "raw.jsonl", rows(2))
    assert convert(raw, "-o", folder) == 1  # still needs --overwrite
    assert convert(raw, "-o", folder, "--overwrite") == 0
    assert load_from_disk(str(folder))["id"] == ["r0", "r1"]


def test_unwritable_output_fails_before_converting(tmp_path, capsys):
    raw = write_rows(tmp_path / "raw.jsonl", rows(2))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    # /proc refuses new files even to root, for whom a chmod-ed folder is still writable
    target = locked / "out" if os.geteuid() != 0 else "/proc/rlhfv-convert-test/out"
    try:
        assert convert(raw, "-o", target) == 1
    finally:
        locked.chmod(0o755)
    out, err = capsys.readouterr()
    assert "cannot" in err and "rows read" not in out
    # an export next to a writable output is checked the same way
    assert convert(raw, "-o", tmp_path / "ok", "--on-error", "skip", "--rejects", "/proc/rlhfv-test.jsonl") == 1
    assert "--rejects /proc/rlhfv-test.jsonl: cannot write" in capsys.readouterr().err
    assert not (tmp_path / "ok").exists()


# ----------------------------------------------------------------------------- the row contract at preparation
def dense_rows(**changes):
    """Valid dense rows; `changes` maps a row index to the fields to replace in it."""
    from datasets import Dataset

    base = []
    for index in range(4):
        rejected, chosen = f"Car {index} is red.", f"Car {index} is blue."
        base.append(
            {
                "id": f"p{index}",
                "prompt": [{"role": "user", "content": "Colour?"}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "chosen_spans": [[chosen.index("blue"), chosen.index("blue") + 4]],
                "rejected_spans": [[rejected.index("red"), rejected.index("red") + 3]],
            }
        )
    for index, fields in changes.items():
        base[int(index)].update(fields)
    return Dataset.from_list(base)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"chosen": [{"role": "assistant", "content": "  "}], "chosen_spans": []}, "row id='p1': chosen is empty"),
        (
            {"chosen": [{"role": "assistant", "content": "Car 1 is red."}], "chosen_spans": [[9, 12]]},
            "row id='p1': chosen and rejected are identical",
        ),
        (
            {"rejected_spans": [[10, 12]]},
            r"row id='p1': rejected_spans\[0\] = \[10, 12\) \('ed'\) starts or ends inside",
        ),
        ({"chosen_spans": [[9, 40]]}, r"row id='p1': chosen_spans\[0\] = \[9, 40\) lies outside"),
    ],
)
def test_training_data_breaking_the_contract_is_refused_with_row_ids(tmp_path, fields, message):
    from rlhfv.data import load_preference_data

    dense_rows(**{"1": fields}).save_to_disk(str(tmp_path / "dense"))
    with pytest.raises(CommandError, match=f"in 1 of 4 rows: {message}"):
        load_preference_data(*load_args(tmp_path / "dense"))


def test_valid_training_data_passes_and_many_bad_rows_are_counted(tmp_path):
    from rlhfv.data import load_preference_data

    dense_rows().save_to_disk(str(tmp_path / "good"))
    train, _ = load_preference_data(*load_args(tmp_path / "good"))
    assert len(train) == 4
    empty = {"chosen": [{"role": "assistant", "content": ""}], "chosen_spans": []}
    dense_rows(**{str(k): empty for k in range(4)}).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(CommandError, match="in 4 of 4 rows: .*p0.*p1.*p2.*p3"):
        load_preference_data(*load_args(tmp_path / "bad"))
