"""Reports of an evaluation: Markdown tables, the CSV, the plots and the report folder.

:func:`markdown_table` is the one table writer: a table is a list of :class:`Column` (header, rule
and how a :class:`~metapose_geom.evaluation.scoring.Row` shows in it); :func:`format_markdown` is the
evaluation's table and the demo has its own columns. :func:`write_report` writes a run's folder.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .methods import METHODS
from .scoring import Evaluation, Row

__all__ = [
    "CSV_COLUMNS",
    "EVALUATION_COLUMNS",
    "Column",
    "format_markdown",
    "markdown_table",
    "plot_error_vs_cameras",
    "plot_per_joint_error",
    "pyplot",
    "save_figure",
    "skipped_frames_line",
    "write_csv",
    "write_report",
]


@dataclass(frozen=True)
class Column:
    """One column of a Markdown table: its header cell, its rule cell (``---:`` right-aligns) and
    the text of a row's cell (a row is whatever the table lists: a :class:`Row`, a record, ...)."""

    header: str
    rule: str
    cell: Callable[[Any], str]


def markdown_table(rows: Sequence[Any], columns: Sequence[Column]) -> str:
    """A Markdown table: the header line, the rule line, then one line per row."""
    lines = ["| " + " | ".join(column.header for column in columns) + " |",
             "|" + "|".join(column.rule for column in columns) + "|"]
    lines += ["| " + " | ".join(column.cell(row) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def _frames(row: Row) -> str:
    """frames, x subsets when > 1, and the failures when any."""
    frames = f"{row.frames}" if row.subsets == 1 else f"{row.frames} x {row.subsets}"
    return frames + (f" ({row.failures} failed)" if row.failures else "")


def _format_ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.0f}"


def _summary_cell(key: str, form: str) -> Callable[[Row], str]:
    return lambda row: format(row.summary()[key], form)


#: The evaluation table: one line per camera count and method (frames x subsets when > 1).
EVALUATION_COLUMNS = (
    Column("method", "---", lambda row: row.label),
    Column("cameras", "---:", lambda row: f"{row.cameras}"),
    Column("frames", "---:", _frames),
    Column("PMPJPE mm", "---:", _summary_cell("pmpjpe_mm", ".1f")),
    Column("PMPJPE median mm", "---:", _summary_cell("pmpjpe_median_mm", ".1f")),
    Column("NMPJPE mm", "---:", _summary_cell("nmpjpe_mm", ".1f")),
    Column("PCK@150 %", "---:", _summary_cell("pck150_percent", ".1f")),
    Column("ms / frame", "---:", lambda row: _format_ms(row.ms_per_frame)),
)


def format_markdown(result: Evaluation) -> str:
    """The Markdown table of a run (:data:`EVALUATION_COLUMNS`)."""
    return markdown_table(result.rows, EVALUATION_COLUMNS)


CSV_COLUMNS = ("method", "label", "cameras", "frames", "subsets", "failures", "pmpjpe_mm", "pmpjpe_median_mm",
               "nmpjpe_mm", "pck150_percent", "ms_per_frame")


def write_csv(result: Evaluation, path: str | os.PathLike) -> Path:
    """One CSV record per row (:data:`CSV_COLUMNS`), errors in mm, PCK in percent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in result.rows:
            record = row.summary()
            writer.writerow({name: (f"{value:.6g}" if isinstance(value, float) else value)
                             for name, value in record.items()})
    return path


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_error_vs_cameras(result: Evaluation, path: str | os.PathLike) -> Path:
    """PMPJPE, NMPJPE and PCK@150 against the camera count, one line per method."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(16, 5.8))
    panels = (("pmpjpe_mm", "PMPJPE (mm), mean"), ("nmpjpe_mm", "NMPJPE (mm), mean"),
              ("pck150_percent", "PCK@150 mm (%)"))
    counts = sorted({row.cameras for row in result.rows})
    for ax, (key, title) in zip(axes, panels):
        for method in result.methods():
            spec = METHODS[method]
            rows = sorted((row for row in result.rows if row.method == method), key=lambda row: row.cameras)
            ax.plot([row.cameras for row in rows], [row.summary()[key] for row in rows], spec.style, marker="o",
                    color=spec.color, lw=2, label=spec.label)
        ax.set(xlabel="cameras", title=title, xticks=counts)
        if key != "pck150_percent":
            _log_axis(ax)
            ax.set_ylabel("mm (log scale)")
        else:
            ax.set_ylabel("%")
        ax.grid(alpha=0.3, which="both")
    _legend_below(figure, axes[0])
    frames = ", ".join(sorted({f"{row.frames}" for row in result.rows}, key=int))
    figure.suptitle(f"Error against camera count: {Path(result.dataset).name}, {frames} frames per row")
    return save_figure(figure, plt, path)


def plot_per_joint_error(result: Evaluation, path: str | os.PathLike) -> Path:
    """Mean PMPJPE per joint, one panel per camera count, one line per method."""
    plt = pyplot()
    counts = sorted({row.cameras for row in result.rows})
    figure, axes = plt.subplots(1, len(counts), figsize=(6 * len(counts), 5.8), sharey=True, squeeze=False)
    joints = np.arange(len(result.joint_names))
    for ax, count in zip(axes[0], counts):
        for method in result.methods():
            spec = METHODS[method]
            row = result.row(method, count)
            ax.plot(joints, row.per_joint, spec.style, marker="o", ms=3, color=spec.color, lw=1.5, label=spec.label)
        ax.set_xticks(joints, result.joint_names, rotation=70, fontsize=8)
        ax.set_title(f"{count} cameras")
        _log_axis(ax)
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].set_ylabel("mean PMPJPE per joint (mm, log scale)")
    _legend_below(figure, axes[0, 0])
    figure.suptitle(f"Error per joint: {Path(result.dataset).name}")
    return save_figure(figure, plt, path)


def _log_axis(ax) -> None:
    """Log scale with plain-number tick labels (5, 10, 20, 50, ...)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))


def _legend_below(figure, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=9, frameon=False)
    rows = -(-len(labels) // 4)
    figure.tight_layout(rect=(0, 0.04 + 0.035 * rows, 1, 0.94))


def save_figure(figure, plt, path: str | os.PathLike) -> Path:
    """Save ``figure`` at 110 dpi (creating the folder) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def skipped_frames_line(result: Evaluation, listed: int = 10) -> str | None:
    """The frames a run left out (``skip_bad_frames``) in one line: how many, then the first
    ``listed`` with their reasons; None when none was."""
    skipped = result.skipped_frames
    if not skipped:
        return None
    evaluated = result.settings.get("frames", 0)
    items = [f"frame {number} ({reason})" for number, reason in list(skipped.items())[:listed]]
    more = f", and {len(skipped) - listed} more" if len(skipped) > listed else ""
    return (f"Left out of every row: skipped {len(skipped)} bad frame(s) of {evaluated + len(skipped)}: "
            + ", ".join(items) + more + ".")


def write_report(result: Evaluation, out: str | os.PathLike, command: str | None = None) -> str:
    """Write ``out/evaluation.md`` (the command, the settings and the table), ``out/evaluation.csv``,
    ``out/error_vs_cameras.png`` and ``out/per_joint_error.png``; returns the table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = format_markdown(result)
    settings = ", ".join(f"{name} {value}" for name, value in result.settings.items())
    lines = [f"# Evaluation of {Path(result.dataset).name}", ""]
    if command:
        lines += ["```bash", command, "```", ""]
    lines += [f"Settings: {settings}. Run time {result.seconds:.0f} s.", ""]
    skipped = skipped_frames_line(result)
    if skipped:
        lines += [skipped, ""]
    lines += [table, ""]
    cached = result.settings.get("anipose_batches_from_cache", 0)
    if cached:
        lines += [f"AniPose's ms / frame includes {cached} batch(es) taken from the cache, timed when they were "
                  "first solved; run with --no-cache (cache=None) to time every frame now.", ""]
    (out / "evaluation.md").write_text("\n".join(lines))
    write_csv(result, out / "evaluation.csv")
    plot_error_vs_cameras(result, out / "error_vs_cameras.png")
    plot_per_joint_error(result, out / "per_joint_error.png")
    return table
