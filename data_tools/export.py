"""Write a converted dataset as one Parquet file (images embedded) or as JSONL (images as files beside it)."""

from __future__ import annotations

import io
import json
import os


EXPORT_FORMATS = ("parquet", "jsonl")


def write_parquet(dataset, path: str) -> str:
    """One Parquet file with image bytes embedded; `datasets.load_dataset("parquet", ...)` restores the features."""
    import pyarrow.parquet as pq
    from datasets.table import embed_table_storage

    schema = dataset.features.arrow_schema
    with pq.ParquetWriter(path, schema=schema) as writer:
        for table in dataset.with_format("arrow").iter(batch_size=256):
            # `Dataset.to_parquet` would keep image paths as they are; embedding makes the file self-contained
            writer.write_table(embed_table_storage(table.replace_schema_metadata(schema.metadata)).cast(schema))
    return path


def _image_extension(data: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        kind = (image.format or "png").lower()
    return {"jpeg": "jpg"}.get(kind, kind)


def write_jsonl(dataset, path: str, image_dir: str | None = None, image_folder_name: str | None = None) -> str:
    """JSONL, one pair per line; images go to `<name>_images/` beside it and rows list their relative paths.

    Files keep the JSONL small and greppable, and `rlhfv convert --format pairs` or `rlhfv inspect` read it back.
    `image_dir` (default `<name>_images` beside `path`) must not exist yet: nothing is ever deleted here; rows name
    the images `<image_folder_name>/<file>` (default `<name>_images`), so a file written under a temporary name
    can point at the folder it will be renamed to.
    """
    stem = os.path.splitext(os.path.basename(path))[0]
    image_folder_name = image_folder_name or f"{stem}_images"
    image_dir = image_dir or os.path.join(os.path.dirname(os.path.abspath(path)), image_folder_name)
    has_images = "images" in dataset.column_names
    if has_images:
        os.makedirs(image_dir)
    with open(path, "w", encoding="utf-8") as handle:
        for index, row in enumerate(dataset.with_format("arrow").iter(batch_size=256)):
            for offset, record in enumerate(row.to_pylist()):
                if has_images:
                    names = []
                    for position, image in enumerate(record["images"]):
                        data = image["bytes"]
                        if data is None:
                            with open(image["path"], "rb") as source:
                                data = source.read()
                        name = f"{index * 256 + offset:07d}-{position}.{_image_extension(data)}"
                        with open(os.path.join(image_dir, name), "wb") as out:
                            out.write(data)
                        names.append(f"{image_folder_name}/{name}")
                    record["images"] = names
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
