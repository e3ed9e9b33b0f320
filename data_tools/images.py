"""Images of a row: find them (embedded bytes, data URI or a path under the image root) and check PIL opens them."""

from __future__ import annotations

import base64
import binascii
import io
import os
from typing import Any

from data_tools.errors import BAD_VALUE, IMAGE_MISSING, IMAGE_OUTSIDE_ROOT, IMAGE_UNREADABLE, RowError
from data_tools.formats import check_text


def _verify(data: bytes | str, label: str, shown: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
            image.verify()  # the file's structure (and PNG checksums)
        # verify() misses a file cut short, which would only fail when training loads it: decode it all. A JPEG is
        # decoded at 1/8 scale, which still reads every byte of its entropy-coded data, several times faster.
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
            image.draft(image.mode, (1, 1))
            image.load()
    except FileNotFoundError:
        raise RowError(IMAGE_MISSING, label, f"image file not found: {shown}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise RowError(IMAGE_UNREADABLE, label, f"PIL cannot read the image {shown}: {error}") from None


def is_inside(path, roots) -> bool:
    """True when `path` (symbolic links followed) is one of `roots` or lies under one (--strict-paths)."""
    real = os.path.realpath(path)
    for root in roots:
        top = os.path.realpath(root)
        if real == top or real.startswith(top.rstrip(os.sep) + os.sep):
            return True
    return False


def resolve_image(value: Any, label: str, image_root: str, strict_paths: bool = False) -> dict[str, Any]:
    """The image as `datasets.Image` storage ({"bytes", "path"}), after checking that PIL can decode it.

    Embedded bytes stay bytes; a file stays a path (absolute), which `save_to_disk` embeds when it writes.
    A path may leave `image_root` (`../x.jpg`, `/abs/x.jpg`) unless `strict_paths` is set, for pipelines whose
    rows come from people who should not read files outside the image folder.
    """
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            data, path = value["bytes"], value.get("path")
        elif value.get("path"):
            data, path = None, value["path"]
        else:
            raise RowError(IMAGE_MISSING, label, "the image has neither bytes nor a path")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data, path = value, None
    elif isinstance(value, str):
        data, path = None, value
    else:
        raise RowError(
            BAD_VALUE, label, f"expected image bytes, a {{bytes, path}} dict or a path, got {type(value).__name__}"
        )
    if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
        raise RowError(BAD_VALUE, f"{label}.bytes", f"expected bytes, got {type(data).__name__}")
    if data is None and not isinstance(path, str):
        raise RowError(BAD_VALUE, label, f"expected the image path to be a string, got {type(path).__name__}")
    if data is None:
        check_text(path, label)  # a path with bytes that are not UTF-8 cannot be stored
    if data is None and path.startswith("data:"):
        # data:image/png;base64,....
        try:
            data = base64.b64decode(path.split(",", 1)[1], validate=True)
        except (IndexError, binascii.Error):
            raise RowError(IMAGE_UNREADABLE, label, "the data URI does not hold base64 data") from None
        path = None
    if data is not None:
        data = bytes(data)
        _verify(data, label, f"(embedded, {len(data)} bytes)")
        return {"bytes": data, "path": path}
    full_path = os.path.abspath(os.path.join(image_root, os.path.expanduser(path)))
    if strict_paths and not is_inside(full_path, [image_root]):
        root = os.path.realpath(image_root)
        raise RowError(
            IMAGE_OUTSIDE_ROOT, label, f"image path {path!r} leads outside the image root {root} (--strict-paths)"
        )
    if not os.path.isfile(full_path):
        raise RowError(IMAGE_MISSING, label, f"image file not found: {full_path}")
    _verify(full_path, label, full_path)
    return {"bytes": None, "path": full_path}


def image_file(value: Any, image_root: str) -> str | None:
    """The absolute path of the file an image value refers to, or None when the value carries its own bytes (or is
    malformed: `resolve_image` reports that). Paths resolve exactly as `resolve_image` resolves them."""
    if isinstance(value, dict):
        path = value.get("path") if value.get("bytes") is None else None
    else:
        path = value if isinstance(value, str) else None
    if not isinstance(path, str) or not path or path.startswith("data:"):
        return None
    return os.path.abspath(os.path.join(image_root, os.path.expanduser(path)))
