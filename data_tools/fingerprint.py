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
) -> str:
    """A stable hex digest of the inputs' content and the options that shape the output, for caching.

    Same files (byte for byte, under the same names) and same options give the same fingerprint on any machine.
    Image files referenced by path are not read (they are named by `image_root`, which is part of the digest);
    `num_proc` and `rejects_path` do not change the dataset and are left out.
    """
    digest = hashlib.sha256()
    options = {
        "converter": CONVERTER_VERSION,
        "inputs": list(inputs),
        "format": format,
        "image_root": os.path.abspath(image_root) if image_root is not None else None,
        "on_error": on_error,
        "changes": changes,
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
            full = os.path.join(path, relative) if relative else path
            digest.update(f"\0{path}\0{relative}\0".encode())
            with open(full, "rb") as handle:
                for block in iter(lambda handle=handle: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()
