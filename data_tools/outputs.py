"""Outputs that never destroy data: staged beside their target, swapped in only when everything succeeded.

The one output module of every `rlhfv` command (convert, eval, feedback, iterate, reward, reward-pairs, rl): reports
go through `check_output` + `staged`/`write_text`, resumable run folders through `check_run_folder`, trainers'
output folders through `check_training_output`. The rules every writer of `rlhfv convert` follows:

- an output path may never be an input, lie inside a folder input, or hold an input (a referenced image included);
- an existing output is replaced only with `--overwrite`, and only when it is what the converter writes (a saved
  dataset, possibly from an interrupted save; an export file; an export image folder of `NNNNNNN-N.ext` files);
- everything is written under a temporary name in the target's own folder (so the final rename stays on one file
  system) and renamed into place at the end; a failed or interrupted run leaves the old output as it was.

`saved_dataset_problem` tells a complete `save_to_disk` folder from an interrupted one, for the training loader.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from data_tools.errors import CommandError


# File names `Dataset.save_to_disk` / `DatasetDict.save_to_disk` write
_SHARD = re.compile(r"data-(\d{5})-of-(\d{5})\.arrow")
_SAVED_FILES = ("state.json", "dataset_info.json", "dataset_dict.json")
# Image file names `data_tools.export.write_jsonl` writes
EXPORT_IMAGE_NAME = re.compile(r"\d{7}-\d+\.[A-Za-z0-9]+")


def looks_like_saved_dataset(path: str) -> bool:
    """True for a folder holding `save_to_disk` files: a complete save, or what an interrupted save left."""
    if not os.path.isdir(path):
        return False
    names = os.listdir(path)
    return any(name in _SAVED_FILES or _SHARD.fullmatch(name) for name in names)


def _split_problem(path: str) -> str | None:
    state_path = os.path.join(path, "state.json")
    if not os.path.isfile(state_path) or not os.path.isfile(os.path.join(path, "dataset_info.json")):
        shards = sorted(name for name in os.listdir(path) if _SHARD.fullmatch(name)) if os.path.isdir(path) else []
        found = f" ({len(shards)} shard file(s) but no state.json)" if shards else ""
        return f"{path} has no state.json or dataset_info.json{found}"
    try:
        with open(state_path, encoding="utf-8") as handle:
            files = [entry["filename"] for entry in json.load(handle)["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{state_path} is unreadable ({error})"
    missing = [name for name in files if not os.path.isfile(os.path.join(path, name))]
    totals = {int(match.group(2)) for match in map(_SHARD.fullmatch, files) if match}
    if missing:
        return f"{path} misses {len(missing)} of its {len(files)} shard file(s) ({', '.join(missing[:3])})"
    if totals and totals != {len(files)}:
        return f"{path} lists {len(files)} shard file(s) but their names say {sorted(totals)}"
    return None


def saved_dataset_problem(path: str) -> str | None:
    """Why the `save_to_disk` folder `path` is not a complete saved dataset, or None when it is."""
    dict_path = os.path.join(path, "dataset_dict.json")
    if os.path.isfile(dict_path):
        try:
            with open(dict_path, encoding="utf-8") as handle:
                splits = json.load(handle)["splits"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            return f"{dict_path} is unreadable ({error})"
        for split in splits:
            problem = _split_problem(os.path.join(path, split))
            if problem is not None:
                return f"split {split!r}: {problem}"
        return None
    return _split_problem(path)


def is_converter_dataset_folder(path: str, own_files: set[str] = frozenset()) -> bool:
    """True when every entry of `path` is something `save_to_disk` writes (a complete or an interrupted save), or
    one of `own_files`."""
    for name in os.listdir(path):
        if name in own_files:
            continue
        full = os.path.join(path, name)
        if os.path.isdir(full):
            if not looks_like_saved_dataset(full) or not is_converter_dataset_folder(full):
                return False
        elif not (name in _SAVED_FILES or _SHARD.fullmatch(name) or name.startswith("tmp")):
            return False
    return True


def is_export_image_folder(path: str) -> bool:
    return all(EXPORT_IMAGE_NAME.fullmatch(name) for name in os.listdir(path))


def _contains(folder: str, path: str) -> bool:
    """True when `path` is `folder` or lies inside it (both absolute and resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def resolved(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def check_not_inputs(
    targets: dict[str, str], inputs: Iterable[str], what: str = "input", inside_inputs: bool = True
) -> None:
    """Refuse any output (`{label: path}`) that is an input or holds one (or lies inside a folder input, unless
    `inside_inputs` is False: writing beside files in a folder does not touch them)."""
    protected = [resolved(path) for path in inputs]
    for label, target in targets.items():
        target_path = resolved(target)
        for path in protected:
            if _contains(target_path, path) or (inside_inputs and _contains(path, target_path)):
                raise CommandError(
                    f"{label} {target} would overwrite the {what} {path}; name another output path "
                    "(outputs never replace inputs)"
                )


def check_replaceable(label: str, target: str, kind: str, overwrite: bool, own_files: Iterable[str] = ()) -> None:
    """Refuse to write `target` when it exists and may not be replaced.

    kind: "dataset" (a `save_to_disk` folder), "images" (an export image folder) or "file". `own_files`: other file
    names the command writes into its dataset folder (a report beside the shards).
    """
    if not os.path.lexists(target):
        return
    if kind in ("dataset", "images"):
        if not os.path.isdir(target):
            raise CommandError(f"{label} {target} is a file; name a folder")
        if not os.listdir(target):
            return
    elif os.path.isdir(target):
        raise CommandError(f"{label} {target} is a folder; name a file")
    if not overwrite:
        raise CommandError(f"{label} {target} already exists; pass --overwrite to replace it")
    if kind == "dataset" and not is_converter_dataset_folder(target, set(own_files)):
        raise CommandError(
            f"{label} {target} is a non-empty folder that is not a saved dataset; refusing to replace it"
        )
    if kind == "images" and not is_export_image_folder(target):
        raise CommandError(f"{label} {target} holds files that the JSONL export did not write; refusing to replace it")


def check_writable_folder(label: str, target: str) -> None:
    """Fail before any work when the folder that will hold `target` cannot be created or written to."""
    import tempfile

    parent = os.path.dirname(os.path.abspath(target))
    try:
        os.makedirs(parent, exist_ok=True)
        # A real probe file, not os.access: that answers yes to root on a read-only mount
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as error:
        raise CommandError(f"{label} {target}: cannot write in the folder {parent} ({error.strerror})") from None


class StagedPath:
    """A temporary path beside `target`; `commit()` swaps it in, `discard()` removes it.

    The old target (if any) is renamed aside, the staged one renamed into place, then the old one deleted: at no
    moment is neither present, and a crash between the renames leaves both on disk under visible names.
    """

    def __init__(self, target: str):
        self.target = os.path.abspath(target)
        folder, name = os.path.split(self.target)
        self.path = os.path.join(folder, f".{name}.tmp-{os.getpid()}")
        self._old = os.path.join(folder, f".{name}.old-{os.getpid()}")

    def commit(self) -> None:
        if not os.path.lexists(self.path):
            return
        had_old = os.path.lexists(self.target)
        if had_old:
            os.rename(self.target, self._old)
        os.rename(self.path, self.target)
        if had_old:
            _remove(self._old)

    def discard(self) -> None:
        _remove(self.path)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def existing(paths: Iterable[str | os.PathLike | None]) -> list[str]:
    """The paths among `paths` that are on disk (a Hub id or a `tiny:` model name is no file to protect)."""
    return [str(path) for path in paths if path and os.path.lexists(str(path))]


def check_output(
    label: str,
    target: str,
    inputs: Iterable[str | os.PathLike | None] = (),
    kind: str = "file",
    overwrite: bool = False,
    own_files: Iterable[str] = (),
) -> None:
    """Every start-of-run check on one output of a command, before any work: it is not an input and holds none
    (writing beside inputs in their folder is fine), it may be replaced (`check_replaceable`), and its folder is
    writable. kind "file", "dataset" or "images" as in `check_replaceable`."""
    check_not_inputs({label: str(target)}, existing(inputs), inside_inputs=False)
    check_replaceable(label, str(target), kind, overwrite, own_files)
    check_writable_folder(label, str(target))


def check_file_target(label: str, target: str) -> None:
    """A file output (a resumable one included) must not be a folder."""
    if os.path.isdir(target):
        raise CommandError(f"{label} {target} is a folder; name a file")


@contextmanager
def staged(target: str | os.PathLike) -> Iterator[str]:
    """A temporary path beside `target` to write; swapped in when the block ends without an error, removed when
    it raises (the old `target`, if any, is then untouched)."""
    stage = StagedPath(str(target))
    os.makedirs(os.path.dirname(stage.target), exist_ok=True)
    stage.discard()
    try:
        yield stage.path
    except BaseException:
        stage.discard()
        raise
    stage.commit()


def write_text(target: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `target` through a staged file: a crash leaves the old file as it was."""
    with staged(target) as path, open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def check_run_folder(
    label: str, folder: str, inputs: Iterable[str | os.PathLike | None], is_own_entry, markers: Iterable[str]
) -> None:
    """A resumable run folder (`rlhfv feedback --out`): it holds no input, is not a file, and, when it exists and
    is not empty, holds only what the command writes (`is_own_entry(name)`) with at least one of `markers` (a run
    to resume); anything else is someone's folder, which the run would mix its files into."""
    check_not_inputs({label: str(folder)}, existing(inputs), inside_inputs=False)
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise CommandError(f"{label} {folder} is a file; name a folder (a new one, or a run to resume)")
    if os.path.isdir(folder):
        names = os.listdir(folder)
        foreign = sorted(name for name in names if not is_own_entry(name))
        # without a marker, a file of a name the command writes is the user's (a run not yet started has only
        # folders: images written from the prompts, the reply cache)
        unmarked = not set(markers) & set(names) and any(
            os.path.isfile(os.path.join(folder, name)) and not name.endswith(".tmp") for name in names
        )
        if foreign or unmarked:
            shown = f" (e.g. {foreign[0]})" if foreign else ""
            raise CommandError(
                f"{label} {folder} is a non-empty folder that is not a run of this command{shown}; name a new or "
                "empty folder, or the folder of the run to resume"
            )
    check_writable_folder(label, os.path.join(str(folder), "probe"))


def check_training_output(
    output_dir: str, inputs: Iterable[str | os.PathLike | None], label: str = "output_dir"
) -> None:
    """A trainer's `output_dir` (checkpoints, then the model): no input inside it, not a file. The trainer resumes
    from or adds to an existing one, as `rlhfv train` does."""
    check_not_inputs({label: output_dir}, existing(inputs), inside_inputs=False)
    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise CommandError(f"{label} {output_dir} is a file; name a folder")
