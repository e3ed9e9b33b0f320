"""`rlhfv eval report`: several models' benchmark results side by side, as one Markdown table and one plot.

Inputs are the `--output_dir` reports of `rlhfv eval mmhal judge`, `object-halbench score`, `amber score` and `pope score`,
each given as MODEL=PATH (a model may have one file per benchmark). Every report carries a `headline` of the numbers
papers print; the table has one row per model and one column per headline number.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlhfv.eval.io import EvalInputError


LOWER_IS_BETTER = {"CHAIR", "CHAIR_s", "CHAIR_i", "Hal", "hallucination", "Cog"}  # words of a column name
BALANCED = {"yes%"}  # POPE's yes-ratio: best near the share of "yes" labels (50%), neither high nor low


def parse_spec(spec: str) -> tuple[str, Path]:
    model, sep, path = spec.partition("=")
    if not sep or not model.strip() or not path.strip():
        raise EvalInputError(f"--result {spec!r}: expected MODEL=PATH, e.g. --result sft=results/sft_pope.json")
    return model.strip(), Path(path.strip())


def collect(specs: list[str]) -> tuple[list[str], list[str], dict[str, dict[str, float | None]]]:
    """(models in order, columns in order, {model: {column: value}}); a column given twice for a model is an error."""
    models, columns, table, sources = [], [], {}, {}
    for spec in specs:
        model, path = parse_spec(spec)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise EvalInputError(f"{path}: cannot read the result file ({error})") from None
        if not isinstance(data, dict) or not isinstance(data.get("headline"), dict):
            raise EvalInputError(
                f"{path}: not a benchmark report (no 'headline'); use the --out of a benchmark command"
            )
        if model not in table:
            models.append(model)
            table[model] = {}
        for column, value in data["headline"].items():
            if column in table[model]:
                raise EvalInputError(f"{path}: {model} already has {column!r} from {sources[(model, column)]}")
            sources[(model, column)] = path
            table[model][column] = value
            if column not in columns:
                columns.append(column)
    return models, columns, table


def direction(column: str) -> str:
    words = set(column.split())
    if words & BALANCED:
        return "≈50"
    return "↓" if words & LOWER_IS_BETTER else "↑"


def markdown(models: list[str], columns: list[str], table: dict) -> str:
    def cell(value):
        return "–" if value is None else f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"

    header = ["model", *[f"{c} {direction(c)}" for c in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in models:
        lines.append("| " + " | ".join([model, *[cell(table[model].get(c)) for c in columns]]) + " |")
    lines.append("")
    lines.append(
        "↓ lower is better, ↑ higher is better, ≈50 best near 50% (POPE's yes-ratio; its splits are half yes); rates "
        "in percent, MMHal score 0-6; – not measured."
    )
    return "\n".join(lines) + "\n"


def plot(models: list[str], columns: list[str], table: dict, path: str | Path) -> None:
    """One small bar chart per headline number, the models side by side."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EvalInputError("the plot needs matplotlib: pip install 'rlhfv[dev]' (or matplotlib)") from None
    n = len(columns)
    ncols = min(4, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, column in enumerate(columns):
        ax = axes[k // ncols][k % ncols]
        values = [table[m].get(column) for m in models]
        ax.bar(
            range(len(models)),
            [0 if v is None else v for v in values],
            color=[colors[i % len(colors)] for i in range(len(models))],
        )
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{column} {direction(column)}", fontsize=8)
        for i, v in enumerate(values):
            ax.text(i, 0 if v is None else v, "n/a" if v is None else f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    for k in range(n, nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
