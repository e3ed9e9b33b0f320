"""The cache key of a conversion: a digest of everything the converted dataset depends on.

Used by `rlhfv train` to reuse a conversion of raw data (docs/training.md).
"""

from __future__ import annotations

import hashlib
import json
import os

from data_tools.segments import DEFAULT_CHANGES


# Bump when the output of the same inputs and options changes (it is part of the cache fingerprint).
CONVERTER_VERSION = 2


def fingerprint(
    inputs: list[str],
    format: str = "auto",
    image_root: str | None = None,
    on_error: str = "fail",
    changes: str = DEFAULT_CHANGES,
    strict_paths: bool = False,
) -> str:
    """A stable hex digest of everything the converted dataset depends on, for caching.

    Covers the converter version, the options that shape the output, the input names, the inputs' bytes (every
    file of a `datasets` folder) and the bytes of every image file the rows refer to by path: the same file names
    with new pixels give a new fingerprint. `num_proc` and `rejects_path` do not change the dataset and are left out.
    Reading every referenced image costs about as much I/O as converting once (the diff is not run).
    """
    digest = hashlib.sha256()
    options = {
        "converter": CONVERTER_VERSION,
        "inputs": list(inputs),
        "format": format,
        "image_root": os.path.abspath(image_root) if image_root is not None else None,
        "on_error": on_error,
        "changes": changes,
        "strict_paths": strict_paths,
    }
    digest.update(json.dumps(options, sort_keys=True).encode())
    for path in inputs:
        if os.path.isdir(path):
            files = sorted(
                os.path.relpath(os.path.join(folder, name), path)
                for folder, _, names in os.walk(path)
                for name in names
            )
        else:
            files = [""]
        for relative in files:
            digest.update(f"\0{path}\0{relative}\0".encode())
            _update_with_file(digest, os.path.join(path, relative) if relative else path)
    for image_path in sorted(referenced_image_files(inputs, format, image_root)):
        digest.update(f"\0image\0{image_path}\0".encode())
        if os.path.isfile(image_path):
            _update_with_file(digest, image_path)
        else:
            digest.update(b"\0missing\0")
    return digest.hexdigest()


def _update_with_file(digest, path: str) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def referenced_image_files(inputs: list[str], format: str = "auto", image_root: str | None = None) -> set[str]:
    """Absolute paths of the image files that the rows of `inputs` refer to (rows that cannot be parsed are left
    out: the conversion rejects them, so their images do not shape the output)."""
    from data_tools.errors import ConversionError
    from data_tools.readers import open_inputs

    files: set[str] = set()
    try:
        sources = open_inputs(list(inputs))
    except ConversionError:
        return files  # the conversion will stop on the same input
    for source in sources:
        try:
            files |= _source_image_files(source, format, image_root)
        except ConversionError:
            continue  # an unreadable input: the conversion stops on it with the full message
    return files


def _source_image_files(source, format: str, image_root: str | None) -> set[str]:
    from data_tools.errors import RowError
    from data_tools.formats import FORMATS, detect_format
    from data_tools.images import image_file
    from data_tools.readers import decode_text

    files: set[str] = set()
    if format == "auto":
        detected = detect_format(source.columns())
        if detected is None:
            return files
        name = detected[0]
    else:
        name = format
    root = source.folder if image_root is None else image_root
    for chunk in source.chunks(512):
        for _, payload in chunk:
            try:
                record = json.loads(decode_text(payload)) if isinstance(payload, bytes) else payload
                pair = FORMATS[name].parse(record) if isinstance(record, dict) else None
            except (json.JSONDecodeError, RowError):
                continue
            for _, value in pair.images if pair is not None else []:
                path = image_file(value, root)
                if path is not None:
                    files.add(path)
    return files
