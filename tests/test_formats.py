"""Each input layout, written by the test in its own on-disk form, converts into the dataset contract.

(Over 350 lines on purpose: the five layouts share the writers and the contract assertions defined here.)
"""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_tools.convert import convert
from data_tools.errors import ConversionError


def png_bytes(color="red", size=(6, 4)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def spanned(text, spans):
    return [text[start:end] for start, end in spans]


def answers(row):
    return row["chosen"][0]["content"], row["rejected"][0]["content"]


def image_bytes_of(dataset, index):
    """The stored bytes of a row's images, read from Arrow storage (no decoding)."""
    raw = dataset.with_format("arrow")[index : index + 1].column("images").to_pylist()[0]
    out = []
    for image in raw:
        if image["bytes"] is not None:
            out.append(image["bytes"])
        else:
            with open(image["path"], "rb") as handle:
                out.append(handle.read())
    return out


def test_corrections_jsonl_with_image_paths(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(png_bytes("red"))
    (tmp_path / "imgs" / "b.png").write_bytes(png_bytes("blue"))
    path = write_jsonl(
        tmp_path / "corr.jsonl",
        [
            {
                "id": "x1",
                "image": "imgs/a.png",
                "question": "<image>\nWhat is it?",
                "response": "A red car.",
                "corrected": "A blue car.",
            },
            {
                "id": "x2",
                "images": ["imgs/a.png", "imgs/b.png"],
                "question": "Compare.",
                "response": "Both are red.",
                "corrected": "One is red, one is blue.",
            },
        ],
    )
    lines = []
    result = convert([path], log=lines.append, progress=False)
    assert any("corrections" in line and "'response' and 'corrected'" in line for line in lines)
    dataset = result.dataset
    assert dataset.column_names == [
        "id",
        "source",
        "prompt",
        "chosen",
        "rejected",
        "images",
        "chosen_spans",
        "rejected_spans",
    ]
    first = dataset[0]
    assert first["id"] == "x1"
    assert first["source"] == f"corrections:{path}:1"
    assert first["prompt"] == [{"role": "user", "content": "What is it?"}]  # placeholder stripped
    chosen, rejected = answers(first)
    assert (chosen, rejected) == ("A blue car.", "A red car.")
    assert spanned(chosen, first["chosen_spans"]) == ["blue"]
    assert spanned(rejected, first["rejected_spans"]) == ["red"]
    assert image_bytes_of(dataset, 0) == [png_bytes("red")]
    assert image_bytes_of(dataset, 1) == [png_bytes("red"), png_bytes("blue")]
    assert dataset[1]["images"][1].getpixel((0, 0)) == (0, 0, 255)
    assert result.report.read == result.report.written == 2 and result.report.with_images == 2


def test_image_root_option(tmp_path):
    root = tmp_path / "pictures"
    root.mkdir()
    (root / "p.png").write_bytes(png_bytes("green"))
    data = tmp_path / "data"
    data.mkdir()
    path = write_jsonl(
        data / "c.jsonl", [{"image": "p.png", "question": "Q?", "response": "It is red.", "corrected": "It is green."}]
    )
    with pytest.raises(ConversionError, match="image file not found"):
        convert([path], progress=False)  # default root: the file's own folder
    result = convert([path], image_root=str(root), progress=False)
    assert image_bytes_of(result.dataset, 0) == [png_bytes("green")]
    assert result.dataset[0]["id"] == "c-1"  # no id in the input: <file stem>-<line>


def test_text_only_data_has_no_images_column(tmp_path):
    path = write_jsonl(
        tmp_path / "t.jsonl",
        [{"question": "Q?", "response": "Paris is in Spain.", "corrected": "Paris is in France."}],
    )
    dataset = convert([path], progress=False).dataset
    assert "images" not in dataset.column_names
    assert spanned(dataset[0]["rejected"][0]["content"], dataset[0]["rejected_spans"]) == ["Spain"]


def test_pairs_from_a_datasets_folder_in_trl_conversational_form(tmp_path):
    from datasets import Dataset, Features, List, Value
    from datasets import Image as ImageFeature

    message = {"role": Value("string"), "content": Value("string")}
    features = Features(
        {
            "prompt": List(message),
            "chosen": List(message),
            "rejected": List(message),
            "images": List(ImageFeature()),
        }
    )
    Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": "How many cats?"}]],
            "chosen": [[{"role": "assistant", "content": "Two cats."}]],
            "rejected": [[{"role": "assistant", "content": "Three cats."}]],
            "images": [[{"bytes": png_bytes("yellow"), "path": None}]],
        },
        features=features,
    ).save_to_disk(str(tmp_path / "pairs_ds"))
    lines = []
    result = convert([str(tmp_path / "pairs_ds")], log=lines.append, progress=False)
    assert "pairs" in lines[0]
    row = result.dataset[0]
    assert row["prompt"] == [{"role": "user", "content": "How many cats?"}]
    assert answers(row) == ("Two cats.", "Three cats.")
    assert spanned("Three cats.", row["rejected_spans"]) == ["Three"]
    assert image_bytes_of(result.dataset, 0) == [png_bytes("yellow")]
    assert row["source"] == f"pairs:{tmp_path / 'pairs_ds'}:0"


def test_pairs_json_with_prompt_and_data_uri(tmp_path):
    import base64

    uri = "data:image/png;base64," + base64.b64encode(png_bytes("white")).decode()
    rows = [{"id": 7, "image": uri, "prompt": "Colour?", "chosen": "White.", "rejected": "Black."}]
    (tmp_path / "p.json").write_text(json.dumps(rows), encoding="utf-8")
    result = convert([str(tmp_path / "p.json")], format="pairs", progress=False)
    assert result.dataset[0]["id"] == "7"
    assert result.dataset[0]["source"].endswith("p.json:0")  # 0-based index outside JSONL
    assert image_bytes_of(result.dataset, 0) == [png_bytes("white")]


def rlhf_v_table(rows):
    """RLHF-V-Dataset's parquet schema: image as {bytes, path}, text as a JSON string."""
    return pa.table(
        {
            "ds_name": [row["ds_name"] for row in rows],
            "image": pa.array(
                [row["image"] for row in rows], pa.struct([("bytes", pa.binary()), ("path", pa.string())])
            ),
            "text": [row["text"] for row in rows],
            "origin_dataset": ["VQAv2"] * len(rows),
            "origin_split": [json.dumps({"model": "m", "type": "question answering"})] * len(rows),
            "idx": [row["idx"] for row in rows],
            "image_path": [row["image_path"] for row in rows],
        }
    )


def test_rlhf_v_parquet_with_embedded_image_bytes(tmp_path):
    rows = [
        {
            "ds_name": "RLHF-V-Dataset",
            "image": {"bytes": png_bytes("red"), "path": "a.jpg"},
            "text": json.dumps(
                {"question": "What is he holding?", "chosen": "A kite.", "rejected": "A red umbrella."}
            ),
            "idx": 0,
            "image_path": "x/a.jpg",
        },
        {
            "ds_name": "RLHF-V-Dataset",
            "image": {"bytes": png_bytes("blue"), "path": None},
            "text": json.dumps(
                {"question": "Describe.", "chosen": "A calm lake.", "rejected": "A calm lake with two boats."}
            ),
            "idx": 1,
            "image_path": "x/b.jpg",
        },
    ]
    path = tmp_path / "RLHF-V-Dataset.parquet"
    pq.write_table(rlhf_v_table(rows), path)
    lines = []
    result = convert([str(path)], log=lines.append, progress=False)
    assert "rlhf-v" in lines[0] and "'text' column" in lines[0]
    first, second = result.dataset[0], result.dataset[1]
    assert first["id"] == "RLHF-V-Dataset-0"
    assert first["prompt"] == [{"role": "user", "content": "What is he holding?"}]
    assert answers(first) == ("A kite.", "A red umbrella.")
    assert spanned("A red umbrella.", first["rejected_spans"]) == ["red umbrella"]
    assert spanned("A calm lake with two boats.", second["rejected_spans"]) == ["with two boats"]
    assert second["chosen_spans"] == []
    assert image_bytes_of(result.dataset, 0) == [png_bytes("red")]
    assert image_bytes_of(result.dataset, 1) == [png_bytes("blue")]


def test_rlhf_v_bad_text_json_names_the_field(tmp_path):
    rows = [
        {
            "ds_name": "RLHF-V-Dataset",
            "image": {"bytes": png_bytes(), "path": None},
            "text": '{"question": "Q", "chosen": "A"',
            "idx": 0,
            "image_path": "a.jpg",
        },
        {
            "ds_name": "RLHF-V-Dataset",
            "image": {"bytes": png_bytes(), "path": None},
            "text": json.dumps({"question": "Q", "rejected": "B"}),
            "idx": 1,
            "image_path": "a.jpg",
        },
    ]
    path = tmp_path / "r.parquet"
    pq.write_table(rlhf_v_table(rows), path)
    result = convert([str(path)], on_error="skip", progress=False)
    assert [(r["row"], r["field"], r["reason"]) for r in result.report.rejects] == [
        (0, "text", "malformed_json"),
        (1, "text.chosen", "missing_field"),
    ]


def test_rlaif_v_parquet_written_by_datasets(tmp_path):
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    features = Features(
        {
            "ds_name": Value("string"),
            "image": ImageFeature(),
            "question": Value("string"),
            "chosen": Value("string"),
            "rejected": Value("string"),
            "origin_dataset": Value("string"),
            "origin_split": Value("string"),
            "idx": Value("string"),
            "image_path": Value("string"),
        }
    )
    Dataset.from_dict(
        {
            "ds_name": ["RLAIF-V-Dataset"] * 2,
            "image": [{"bytes": png_bytes("red"), "path": None}, {"bytes": png_bytes("green"), "path": None}],
            "question": ["Describe the scene.", "What colour is it?"],
            "chosen": ["Two people walk on a beach.", "It is green."],
            "rejected": ["Two people and a dog walk on a beach.", "It is green and red."],
            "origin_dataset": ["COCO"] * 2,
            "origin_split": ['{"type": "detailed description"}'] * 2,
            "idx": ["m_m_0", "m_m_1"],
            "image_path": ["a.jpg", "b.jpg"],
        },
        features=features,
    ).to_parquet(str(tmp_path / "RLAIF-V-Dataset_000.parquet"))
    lines = []
    result = convert([str(tmp_path / "RLAIF-V-Dataset_000.parquet")], log=lines.append, progress=False)
    assert "rlaif-v" in lines[0]
    first = result.dataset[0]
    assert first["id"] == "RLAIF-V-Dataset-m_m_0"
    assert spanned("Two people and a dog walk on a beach.", first["rejected_spans"]) == ["and a dog"]
    assert image_bytes_of(result.dataset, 1) == [png_bytes("green")]


def test_llava_rlhf_json_uses_the_preferred_output(tmp_path):
    (tmp_path / "coco.png").write_bytes(png_bytes("black"))
    rows = [
        {
            "id": "q1",
            "image": "coco.png",
            "conversations": [{"from": "human", "value": "<image>\nWhat is on the table?"}],
            "output_1": {"from": "llava", "value": "A laptop and a cup."},
            "output_2": {"from": "llava", "value": "A laptop, a cup and a cat."},
            "preference": 1,
            "hallucination": 1,
        },
        {
            "id": "q2",
            "image": "coco.png",
            "conversations": [
                {"from": "human", "value": "What is this?\n<image>"},
                {"from": "gpt", "value": "A kitchen."},
                {"from": "human", "value": "What is on the stove?"},
            ],
            "output_1": {"from": "llava", "value": "A pot and a pan."},
            "output_2": {"from": "llava", "value": "A pot."},
            "preference": 2,
            "hallucination": 0,
        },
    ]
    (tmp_path / "human_preference.json").write_text(json.dumps(rows), encoding="utf-8")
    lines = []
    result = convert([str(tmp_path / "human_preference.json")], log=lines.append, progress=False)
    assert "llava-rlhf" in lines[0]
    first, second = result.dataset[0], result.dataset[1]
    assert answers(first) == ("A laptop and a cup.", "A laptop, a cup and a cat.")
    assert first["prompt"] == [{"role": "user", "content": "What is on the table?"}]
    assert answers(second) == ("A pot.", "A pot and a pan.")
    assert second["prompt"] == [
        {"role": "user", "content": "What is this?"},
        {"role": "assistant", "content": "A kitchen."},
        {"role": "user", "content": "What is on the stove?"},
    ]
    assert spanned("A pot and a pan.", second["rejected_spans"]) == ["and a pan"]
    assert image_bytes_of(result.dataset, 0) == [png_bytes("black")]


def test_llava_rlhf_bad_preference(tmp_path):
    row = {
        "id": "q",
        "conversations": [{"from": "human", "value": "Q?"}],
        "output_1": {"from": "llava", "value": "A."},
        "output_2": {"from": "llava", "value": "B."},
        "preference": 3,
    }
    (tmp_path / "h.json").write_text(json.dumps([row]), encoding="utf-8")
    with pytest.raises(ConversionError) as error:
        convert([str(tmp_path / "h.json")], progress=False)
    assert "h.json, row 0, field 'preference'" in str(error.value) and "expected 1 or 2" in str(error.value)


def test_raw_image_bytes_column(tmp_path):
    table = pa.table(
        {
            "question": ["Q?"],
            "response": ["A red cube."],
            "corrected": ["A red ball."],
            "image": pa.array([png_bytes("purple")], pa.binary()),
        }
    )
    pq.write_table(table, tmp_path / "raw.parquet")
    result = convert([str(tmp_path / "raw.parquet")], progress=False)
    assert image_bytes_of(result.dataset, 0) == [png_bytes("purple")]


def test_undetectable_and_unknown_formats(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"instruction": "x", "output": "y"}])
    with pytest.raises(ConversionError) as error:
        convert([path], progress=False)
    message = str(error.value)
    assert "odd.jsonl" in message and "cannot detect the format" in message and "instruction, output" in message
    assert "--format" in message
    with pytest.raises(ConversionError, match="unknown format 'sharegpt'"):
        convert([path], format="sharegpt", progress=False)
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(ConversionError, match="unknown file type"):
        convert([str(tmp_path / "data.csv")], progress=False)


def test_each_input_gets_its_own_detected_format(tmp_path):
    corrections = write_jsonl(tmp_path / "a.jsonl", [{"question": "Q", "response": "A b.", "corrected": "A c."}])
    pairs = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "Q", "chosen": "X y.", "rejected": "X z."}])
    result = convert([corrections, pairs], progress=False)
    assert {path: name for path, (name, _) in result.report.formats.items()} == {
        corrections: "corrections",
        pairs: "pairs",
    }
    assert result.dataset["source"] == [f"corrections:{corrections}:1", f"pairs:{pairs}:1"]
