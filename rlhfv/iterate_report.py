"""`rlhfv iterate`'s per-round table (`rounds.md`) and plot (`rounds.png`), rewritten after each round."""

from __future__ import annotations

from pathlib import Path

from rlhfv.iterate_evaluation import SYNTHETIC_METRICS


# the columns of a run whose evaluation names no metrics (kind none): the synthetic world's
TABLE_METRICS = SYNTHETIC_METRICS


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown_table(rows: list[dict], metrics=TABLE_METRICS) -> str:
    columns = ["round", "pairs", "feedback_false_claim_rate", *metrics, "seconds"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def plot_caption(out: Path, evaluation: dict, seed: int) -> str:
    """What the plotted numbers rest on: the evaluation, how many held-out answers, one seed, the date."""
    import datetime

    answers = out / "round_0" / "eval_answers.jsonl"
    count = sum(1 for line in answers.open() if line.strip()) if answers.is_file() else None
    items = f"{count} held-out answers per model" if count else "held-out answers"
    return (
        f"Evaluation: {evaluation.get('kind', 'none')}, {items}; one run, seed {seed} (no error bars: a single "
        f"seed). Plotted {datetime.date.today().isoformat()}."
    )


def write_table(rows: list[dict], out: Path, metrics=TABLE_METRICS, caption: str = "") -> None:
    (out / "rounds.md").write_text(markdown_table(rows, metrics) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.2))
    rounds = [row["round"] for row in rows]
    for metric in (*metrics, "feedback_false_claim_rate"):
        values = [row.get(metric) for row in rows]
        # rates share one axis; counts and lengths (words, n) stay in the table
        if any(v is not None for v in values) and all(v is None or 0 <= v <= 1 for v in values):
            ax.plot(rounds, [v if v is not None else float("nan") for v in values], marker="o", label=metric)
    ax.set_xlabel("round (0 = the starting model)")
    ax.set_ylabel("rate (0-1)")
    ax.set_ylim(0, 1.02)  # the whole range: a change looks as large as it is
    ax.set_xticks(rounds)
    ax.set_title("Iterative feedback rounds")
    if ax.get_legend_handles_labels()[0]:
        # beside the axes, never over a point
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    if caption:
        fig.text(0.01, 0.01, caption, fontsize=7, color="dimgray", ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.08 if caption else 0, 1, 1))
    fig.savefig(out / "rounds.png", dpi=110)
    plt.close(fig)
