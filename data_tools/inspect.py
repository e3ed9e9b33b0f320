"""`rlhfv inspect`: show converted pairs with their changed segments marked, in the terminal or as one HTML page.

This is how to check that the weights land on the right words before spending GPU hours: rejected spans are red
(`[-...-]` without colour), chosen spans green (`{+...+}`).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from data_tools.settings import add_settings_arguments, check_range, read_settings


RED = "\x1b[1;31m"
GREEN = "\x1b[1;32m"
DIM = "\x1b[2m"
RESET = "\x1b[0m"


@dataclass
class InspectSettings:
    """The options of `rlhfv inspect` (read by the settings parser)."""

    dataset: str = field(
        default="",
        metadata={"positional": True, "metavar": "DATASET", "help": "save_to_disk folder, .parquet or .jsonl file"},
    )
    index: list[int] | None = field(default=None, metadata={"metavar": "I", "help": "row indices to show (0-based)"})
    rows: int = field(default=3, metadata={"metavar": "N", "help": "show the first N rows"})
    html: str | None = field(
        default=None, metadata={"metavar": "FILE", "help": "also write the shown rows to one self-contained HTML page"}
    )
    no_color: bool = field(
        default=False,
        metadata={
            "help": "no ANSI colours (also off when stdout is not a TTY or NO_COLOR is set; FORCE_COLOR=1 forces them)"
        },
    )
    no_stats: bool = field(default=False, metadata={"help": "skip the statistics over the whole dataset"})
    min_score_gap: int = field(
        default=1,
        metadata={
            "help": "on a feedback run folder: the run's min_score_gap, to say which answer pairs fell under it"
        },
    )

    def __post_init__(self):
        check_range("rows", self.rows, minimum=0)
        check_range("min_score_gap", self.min_score_gap, minimum=1)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="show converted pairs with their changed segments highlighted",
        description=(
            "Show pairs of a converted dataset (save_to_disk folder, .parquet or .jsonl) with the changed segments "
            "marked: red for the rejected answer's spans, green for the chosen answer's (without colour: [-...-] and "
            "{+...+}). Prints dataset statistics first; --html writes one self-contained page. On a feedback run "
            "folder (`rlhfv feedback` / `iterate`'s round_<k>/feedback): each sampled answer with its claims coloured "
            "by verdict and P(yes), the pairs made and why the others were not."
        ),
    )
    add_settings_arguments(parser, InspectSettings)
    parser.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------------------- loading
class PairTable:
    """Rows of a converted dataset as plain dicts, images as stored: {"bytes", "path"} or a path string."""

    def __init__(self, path: str):
        self.path = path
        self._folder = os.path.dirname(os.path.abspath(path))
        self._records: list[dict] | None = None
        self._table = None  # pyarrow table
        if os.path.isdir(path):
            from datasets import DatasetDict, load_from_disk

            dataset = load_from_disk(path)
            if isinstance(dataset, DatasetDict):
                splits = ", ".join(os.path.join(path, split) for split in dataset)
                raise ValueError(f"{path} holds several splits; inspect one of: {splits}")
            self._table = dataset.with_format("arrow")[:]
        elif path.endswith(".parquet"):
            import pyarrow.parquet as pq

            self._table = pq.read_table(path)
        elif path.endswith((".jsonl", ".json")):
            with open(path, encoding="utf-8") as handle:
                self._records = [json.loads(line) for line in handle if line.strip()]
        else:
            raise ValueError(f"{path}: expected a save_to_disk folder, a .parquet or a .jsonl file")
        missing = {"prompt", "chosen", "rejected", "chosen_spans", "rejected_spans"} - set(self.column_names)
        if missing:
            raise ValueError(f"{path} is not a converted dataset: missing columns {', '.join(sorted(missing))}")

    @property
    def column_names(self) -> list[str]:
        if self._table is not None:
            return self._table.column_names
        return list(self._records[0]) if self._records else []

    def __len__(self) -> int:
        return self._table.num_rows if self._table is not None else len(self._records)

    def row(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} is out of range: the dataset has {len(self)} rows")
        if self._table is not None:
            return self._table.slice(index, 1).to_pylist()[0]
        record = dict(self._records[index])
        record["images"] = [
            os.path.join(self._folder, image) if isinstance(image, str) else image
            for image in record.get("images", [])
        ]
        return record

    def text_columns(self):
        """(chosen text, chosen spans, rejected text, rejected spans, number of images) per row."""
        names = ["chosen", "chosen_spans", "rejected", "rejected_spans"]
        if self._table is not None:
            columns = {name: self._table.column(name).to_pylist() for name in names}
            if "images" in self._table.column_names:
                import pyarrow.compute as pc

                # count without turning every image's bytes into Python objects
                lengths = pc.list_value_length(self._table.column("images")).fill_null(0)
                columns["images"] = lengths.to_pylist()
            rows = len(self)
        else:
            columns = {name: [record[name] for record in self._records] for name in names}
            columns["images"] = [len(record.get("images") or []) for record in self._records]
            rows = len(self._records)
        images = columns.get("images", [0] * rows)
        for i in range(rows):
            yield (
                columns["chosen"][i][0]["content"],
                columns["chosen_spans"][i],
                columns["rejected"][i][0]["content"],
                columns["rejected_spans"][i],
                images[i],
            )


# ------------------------------------------------------------------------------------------------------------ stats
@dataclass
class Stats:
    pairs: int = 0
    with_images: int = 0
    without_spans: int = 0
    chosen_words: int = 0
    chosen_changed: int = 0
    rejected_words: int = 0
    rejected_changed: int = 0

    def lines(self) -> list[str]:
        def share(part: int, whole: int) -> str:
            return f"{100 * part / whole:.1f}%" if whole else "n/a"

        return [
            f"pairs: {self.pairs}",
            f"pairs with images: {self.with_images}",
            f"pairs without any span: {self.without_spans}",
            f"changed words, rejected answers: {self.rejected_changed} / {self.rejected_words} "
            f"({share(self.rejected_changed, self.rejected_words)})",
            f"changed words, chosen answers: {self.chosen_changed} / {self.chosen_words} "
            f"({share(self.chosen_changed, self.chosen_words)})",
        ]


def dataset_stats(table: PairTable) -> Stats:
    """Counts over the whole dataset; words are the diff's units (words and punctuation marks)."""
    from tqdm.auto import tqdm

    from data_tools.segments import unit_strings

    stats = Stats()
    for chosen, chosen_spans, rejected, rejected_spans, images in tqdm(
        table.text_columns(), total=len(table), desc="statistics", unit="pair", disable=None, leave=False
    ):
        stats.pairs += 1
        stats.with_images += images > 0
        stats.without_spans += not chosen_spans and not rejected_spans
        stats.chosen_words += len(unit_strings(chosen))
        stats.rejected_words += len(unit_strings(rejected))
        stats.chosen_changed += sum(len(unit_strings(chosen[start:end])) for start, end in chosen_spans)
        stats.rejected_changed += sum(len(unit_strings(rejected[start:end])) for start, end in rejected_spans)
    return stats


# -------------------------------------------------------------------------------------------------------- rendering
def mark(text: str, spans: list[list[int]], opening: str, closing: str, escape=lambda s: s) -> str:
    """`text` with each span wrapped in `opening`/`closing`; `escape` applies to the text pieces."""
    pieces, position = [], 0
    for start, end in spans:
        pieces += [escape(text[position:start]), opening, escape(text[start:end]), closing]
        position = end
    pieces.append(escape(text[position:]))
    return "".join(pieces)


def _image_bytes(image: Any) -> bytes | None:
    if isinstance(image, dict):
        if image.get("bytes") is not None:
            return image["bytes"]
        image = image.get("path")
    if isinstance(image, str) and os.path.isfile(image):
        with open(image, "rb") as handle:
            return handle.read()
    return None


def _describe_image(data: bytes | None) -> tuple[str, str]:
    """(short description, MIME type)."""
    if data is None:
        return "missing", "application/octet-stream"
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format or "image"
            return f"{image.width}x{image.height} {kind}", Image.MIME.get(kind, "image/png")
    except Exception as error:  # noqa: BLE001 - shown to the user, never fatal here
        return f"unreadable ({error})", "application/octet-stream"


def render_terminal(index: int, row: dict, color: bool) -> str:
    if color:
        red, green, dim, reset = RED, GREEN, DIM, RESET
    else:
        red, green, dim, reset = "[-", "{+", "", ""
    red_end = reset if color else "-]"
    green_end = reset if color else "+}"
    chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
    images = row.get("images") or []
    lines = [f"{dim}--- row {index}  id={row.get('id')}  source={row.get('source')}{reset}"]
    if images:
        lines.append("images:   " + ", ".join(_describe_image(_image_bytes(image))[0] for image in images))
    for message in row["prompt"]:
        lines.append(f"{message['role'] + ':':<9} {message['content']}")
    lines.append(f"rejected: {mark(rejected, row['rejected_spans'], red, red_end)}")
    lines.append(f"chosen:   {mark(chosen, row['chosen_spans'], green, green_end)}")
    lines.append(f"{dim}spans:    rejected {row['rejected_spans']}  chosen {row['chosen_spans']}{reset}")
    return "\n".join(lines)


HTML_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; line-height: 1.5; color: #222; }
section { border-top: 1px solid #ccc; padding: 1rem 0; }
.meta { color: #777; font-size: 0.85rem; }
img { max-width: 24rem; max-height: 18rem; display: block; margin: 0.5rem 0; border: 1px solid #ddd; }
.label { font-weight: 600; display: inline-block; width: 6rem; vertical-align: top; }
.answer { display: inline-block; width: calc(100% - 7rem); white-space: pre-wrap; }
del { background: #fdd; color: #a00; text-decoration: line-through; }
ins { background: #dfd; color: #060; text-decoration: none; font-weight: 600; }
pre { background: #f6f6f6; padding: 0.5rem; }
"""


def render_html(table: PairTable, indices: list[int], stats: Stats | None) -> str:
    escape = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>rlhfv inspect: {escape(table.path)}</title><style>{HTML_STYLE}</style></head><body>",
        f"<h1>{escape(table.path)}</h1>",
        "<p>Changed segments: <del>rejected</del> and <ins>chosen</ins>.</p>",
        f'<p class="meta">{escape(shown_note(indices, len(table)))}</p>',
    ]
    if stats is not None:
        parts.append("<pre>" + escape("\n".join(stats.lines())) + "</pre>")
    for index in indices:
        row = table.row(index)
        parts.append(
            f'<section><div class="meta">row {index} &middot; id {escape(str(row.get("id")))} &middot; '
            f"{escape(str(row.get('source')))}</div>"
        )
        for image in row.get("images") or []:
            data = _image_bytes(image)
            description, mime = _describe_image(data)
            if data is None:
                parts.append(f'<p class="meta">image missing: {escape(str(image))}</p>')
            else:
                encoded = base64.b64encode(data).decode("ascii")
                parts.append(f'<img src="data:{mime};base64,{encoded}" alt="{escape(description)}">')
        for message in row["prompt"]:
            parts.append(
                f'<div><span class="label">{escape(message["role"])}</span>'
                f'<span class="answer">{escape(message["content"])}</span></div>'
            )
        rejected = mark(row["rejected"][0]["content"], row["rejected_spans"], "<del>", "</del>", escape)
        chosen = mark(row["chosen"][0]["content"], row["chosen_spans"], "<ins>", "</ins>", escape)
        parts.append(f'<div><span class="label">rejected</span><span class="answer">{rejected}</span></div>')
        parts.append(f'<div><span class="label">chosen</span><span class="answer">{chosen}</span></div></section>')
    parts.append("</body></html>")
    return "\n".join(parts)


def shown_note(indices: list[int], total: int) -> str:
    """Which rows a page or a terminal listing shows, out of how many, and how to see others."""
    if len(indices) == total:
        return f"Showing all {total} pairs."
    return f"Showing {len(indices)} of {total} pairs (rows {', '.join(map(str, indices))}); --rows N or --index I ... shows others."


def use_color(no_color: bool) -> bool:
    """Colour on a terminal; --no-color or NO_COLOR turn it off, FORCE_COLOR turns it on anywhere (see no-color.org)."""
    if no_color or os.environ.get("NO_COLOR"):
        return False
    return bool(os.environ.get("FORCE_COLOR")) or sys.stdout.isatty()


def run(arguments: argparse.Namespace) -> int:
    from data_tools.errors import CommandError

    (args,) = read_settings(arguments, InspectSettings)
    if not os.path.exists(args.dataset):
        raise CommandError(f"{args.dataset}: no such file or folder")
    from data_tools import inspect_feedback

    if inspect_feedback.is_feedback_run(args.dataset):  # a `rlhfv feedback` run: answers, claims, labels, pairs
        return inspect_feedback.run(args, use_color(args.no_color))
    try:
        table = PairTable(args.dataset)
    except (ValueError, json.JSONDecodeError) as error:
        raise CommandError(str(error)) from None
    indices = args.index if args.index is not None else list(range(min(args.rows, len(table))))
    for index in indices:
        if not 0 <= index < len(table):
            raise CommandError(f"--index {index} is out of range: {args.dataset} has {len(table)} rows")
    color = use_color(args.no_color)
    stats = None if args.no_stats else dataset_stats(table)
    if stats is not None:
        print("\n".join(stats.lines()))
    for index in indices:
        print()
        print(render_terminal(index, table.row(index), color))
    print()
    print(shown_note(indices, len(table)))
    if args.html:
        with open(args.html, "w", encoding="utf-8") as handle:
            handle.write(render_html(table, indices, stats))
        print(f"\nwrote {args.html}")
    return 0
