"""The conversion fingerprint covers every byte the converted dataset depends on, image files included."""

import json

from PIL import Image

from data_tools.fingerprint import fingerprint, referenced_image_files


def write_png(path, color):
    Image.new("RGB", (4, 4), color).save(path)


def test_fingerprint_changes_with_the_pixels_of_an_image_file_under_the_same_name(tmp_path):
    (tmp_path / "images").mkdir()
    write_png(tmp_path / "images" / "a.png", "red")
    write_png(tmp_path / "images" / "b.png", "red")
    rows = [
        {"id": "1", "image": "a.png", "question": "Q", "response": "A red car.", "corrected": "A blue car."},
        {"id": "2", "images": ["b.png"], "question": "Q", "response": "A red car.", "corrected": "A car."},
        {"id": "3", "question": "Q", "response": "x", "corrected": "x"},  # rejected later, no image
    ]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    root = str(tmp_path / "images")
    assert referenced_image_files([str(source)], image_root=root) == {
        str(tmp_path / "images" / "a.png"),
        str(tmp_path / "images" / "b.png"),
    }
    before = fingerprint([str(source)], image_root=root)
    write_png(tmp_path / "images" / "b.png", "red")  # rewritten, same bytes: same key (content, not mtime)
    assert fingerprint([str(source)], image_root=root) == before
    write_png(tmp_path / "images" / "b.png", "blue")
    after = fingerprint([str(source)], image_root=root)
    assert after != before
    (tmp_path / "images" / "b.png").unlink()
    assert fingerprint([str(source)], image_root=root) not in (before, after)
    # the option that changes which rows pass is part of the key
    write_png(tmp_path / "images" / "b.png", "blue")
    assert fingerprint([str(source)], image_root=root, strict_paths=True) != after


def test_training_conversion_cache_is_redone_when_an_image_changes(tmp_path):
    """`rlhfv train` on raw rows: new pixels under the same file name must not reuse the old conversion."""
    import io
    from contextlib import nullcontext
    from types import SimpleNamespace

    from PIL import Image as PILImage

    from rlhfv.data import converted_dataset

    write_png(tmp_path / "a.png", "red")
    source = tmp_path / "rows.jsonl"
    row = {"id": "1", "image": "a.png", "question": "Q", "response": "A red car.", "corrected": "A blue car."}
    source.write_text(json.dumps(row) + "\n")
    script_args = SimpleNamespace(
        dataset_name=str(source),
        dataset_format="auto",
        image_root=None,
        conversion_on_error="fail",
        conversion_changes=None,
        converted_dataset_dir=str(tmp_path / "cache"),
    )
    training_args = SimpleNamespace(main_process_first=lambda desc: nullcontext(), dataset_num_proc=None)

    def pixel(dataset):
        data = dataset.with_format("arrow")["images"].to_pylist()[0][0]["bytes"]
        return PILImage.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0))

    assert pixel(converted_dataset(script_args, training_args)) == (255, 0, 0)
    write_png(tmp_path / "a.png", "blue")
    assert pixel(converted_dataset(script_args, training_args)) == (0, 0, 255)
