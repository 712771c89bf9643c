"""The demo job: S1, S1+IR and S1+S2 on a seeded synthetic test set, a table of errors and timings, a figure.

``metapose-geom demo`` runs :func:`run_demo`. The methods, the timing, the scoring and the table
writer are the evaluation's (:mod:`metapose_geom.evaluation`); the scenes come straight from
:func:`metapose_geom.synth.make_scenes` rather than from a dataset file, and the figure is the demo's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from . import synth
from .evaluation.methods import METHODS
from .evaluation.report import Column, markdown_table, pyplot, save_figure
from .evaluation.scoring import Row, score, solve_timed
from .geometry import get_num_threads, procrustes
from .solver import History, Solution, solve_batch

F64 = NDArray[np.float64]

__all__ = ["DEMO_COLUMNS", "make_figure", "run_demo"]

#: The demo's table (the same rows as the evaluation's, fewer columns).
DEMO_COLUMNS = (
    Column("method  ", "----------", lambda row: f"{row.label:<8}"),
    Column("PMPJPE mm", "----------:", lambda row: f"{row.summary()['pmpjpe_mm']:8.1f}"),
    Column("NMPJPE mm", "----------:", lambda row: f"{row.summary()['nmpjpe_mm']:8.1f}"),
    Column("PCK@150 %", "------------:", lambda row: f"{row.summary()['pck150_percent']:11.1f}"),
    Column("ms / frame", "------------:", lambda row: f"{row.ms_per_frame:11.3f}"),
)


def _solve_and_score(scenes: list[synth.Scene], method: str) -> tuple[Row, list[Solution]]:
    """Solve every scene's views with ``method`` (a name of the evaluation's method table) and score
    against its ground truth: PMPJPE against the world pose, NMPJPE and PCK in camera 0's frame,
    where the solver's pose lives (design.md, section 1)."""
    spec = METHODS[method]
    solutions, seconds = solve_timed([scene.views() for scene in scenes], spec.solver, progress=True)
    prediction = np.stack([solution.pose3d for solution in solutions])
    world = np.stack([scene.pose3d for scene in scenes])
    in_camera0 = np.stack([scene.pose3d_cam[0] for scene in scenes])
    row = score(spec.name, spec.label, scenes[0].num_cameras, len(scenes), 1, prediction, world, in_camera0,
                1e3 * seconds / len(scenes))
    return row, solutions


def _aligned(prediction: F64, truth: F64) -> tuple[F64, F64, float, F64]:
    """Procrustes of the prediction onto the truth: aligned pose, rotation, scale, translation."""
    similarity = procrustes(prediction, truth, scale="norm_ratio")
    aligned = similarity.scale * prediction @ similarity.rotation + similarity.translation
    return aligned, similarity.rotation, float(similarity.scale), similarity.translation


def _draw_skeleton(ax, pose: F64, bones, color: str, label: str, style: str = "-") -> None:
    # Plot with the world's y (up) as matplotlib's z.
    for index, (parent, child) in enumerate(bones):
        segment = pose[[parent, child]]
        ax.plot(segment[:, 0], segment[:, 2], segment[:, 1], style, color=color, lw=2,
                label=label if index == 0 else None)


def _draw_cameras(ax, scene: synth.Scene, solution: Solution, rotation: F64, radius: float) -> None:
    """Each camera as a dot on a sphere of ``radius`` around the subject, in the true camera's
    direction, with the true optical axis (black) and the recovered weak camera's viewing direction
    mapped into the world by the alignment (red) drawn from it. True camera distances (metres) do
    not fit a readable plot, and a weak camera has no distance."""
    centre = scene.pose3d.mean(axis=0)
    for c in range(scene.num_cameras):
        true_centre = -scene.rotation[c].T @ scene.translation[c]
        direction = (true_centre - centre) / np.linalg.norm(true_centre - centre)
        anchor = centre + radius * direction
        true_axis = scene.rotation[c][2]
        recovered_axis = solution.cameras.rotation[c][:, 2] @ rotation  # pose-frame depth axis -> world
        for axis, color in ((true_axis, "black"), (recovered_axis, "tab:red")):
            tip = anchor + 0.45 * radius * axis
            ax.plot([anchor[0], tip[0]], [anchor[2], tip[2]], [anchor[1], tip[1]], color=color, lw=1.5)
        ax.scatter([anchor[0]], [anchor[2]], [anchor[1]], color="black", s=14)
        ax.text(anchor[0], anchor[2], anchor[1], f" cam{c}", fontsize=7)


def make_figure(scenes: list[synth.Scene], rows: list[Row], solutions: list[list[Solution]],
                histories: list[History], path: Path, examples: int = 3) -> Path:
    """Ground truth against the estimates for a few frames with the cameras, and error summaries.

    ``rows`` and ``solutions`` are S1's and S1+IR's, in that order; a row's errors are per frame."""
    plt = pyplot()
    refined, refined_solutions = rows[-1], solutions[-1]
    order = np.argsort(refined.pmpjpe)
    picks = [order[len(order) // 10], order[len(order) // 2], order[(9 * len(order)) // 10]]
    figure = plt.figure(figsize=(16, 10))
    bones = scenes[0].skeleton.bones
    for panel, index in enumerate(picks[:examples]):
        ax = figure.add_subplot(2, 3, panel + 1, projection="3d")
        scene = scenes[index]
        _draw_skeleton(ax, scene.pose3d, bones, "tab:blue", "ground truth")
        for row, found, color, style in zip(rows, solutions, ("tab:gray", "tab:red"), ("--", "-")):
            aligned, rotation, _, _ = _aligned(found[index].pose3d, scene.pose3d)
            _draw_skeleton(ax, aligned, bones, color, f"{row.label} ({row.pmpjpe[index]:.0f} mm)", style)
        _, rotation, _, _ = _aligned(refined_solutions[index].pose3d, scene.pose3d)
        centre = scene.pose3d.mean(axis=0)
        radius = 1.4 * np.abs(scene.pose3d - centre).max()
        _draw_cameras(ax, scene, refined_solutions[index], rotation, radius)
        span = 1.5 * radius
        ax.set(xlim=(centre[0] - span, centre[0] + span), ylim=(centre[2] - span, centre[2] + span),
               zlim=(centre[1] - span, centre[1] + span), xlabel="x mm", ylabel="z mm", zlabel="y mm")
        rank = ["10th percentile", "median", "90th percentile"][panel]
        ax.set_title(f"frame {index}: the {rank} of S1+IR errors", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
        ax.view_init(elev=20, azim=-60)

    ax = figure.add_subplot(2, 3, 4)
    for row, color in zip(rows, ("tab:gray", "tab:red")):
        values = np.sort(row.pmpjpe)
        ax.plot(values, np.linspace(0, 1, len(values)), color=color, label=f"{row.label}: mean {values.mean():.1f} mm")
    ax.set(xlabel="PMPJPE per frame (mm)", ylabel="fraction of frames", title="Cumulative distribution of frame errors")
    ax.grid(alpha=0.3)
    ax.legend()

    ax = figure.add_subplot(2, 3, 5)
    joints = scenes[0].skeleton.joints
    width = 0.4
    for offset, (row, color) in enumerate(zip(rows, ("tab:gray", "tab:red"))):
        ax.bar(np.arange(len(joints)) + (offset - 0.5) * width, row.per_joint, width, color=color, label=row.label)
    ax.set_xticks(np.arange(len(joints)), joints, rotation=70, fontsize=7)
    ax.set(ylabel="mean PMPJPE (mm)", title="Error per joint")
    ax.legend()

    ax = figure.add_subplot(2, 3, 6)
    if histories:
        steps = histories[0].steps
        objective = np.stack([history.objective for history in histories])
        ax.plot(steps, objective.mean(axis=0), color="tab:red", label="mean over frames")
        ax.fill_between(steps, np.percentile(objective, 10, axis=0), np.percentile(objective, 90, axis=0),
                        color="tab:red", alpha=0.2, label="10th-90th percentile")
        ax.set(xlabel="Adam step", ylabel="objective (-mean log-likelihood)", title="Iterative refinement")
        ax.legend()
    figure.suptitle(
        f"metapose-geom demo: {len(scenes)} synthetic frames, {scenes[0].num_cameras} cameras\n"
        "blue: ground truth, red: S1+IR, grey: S1 (aligned by Procrustes); cameras drawn in their true directions "
        "with the true optical axis (black) and the recovered viewing direction (red)"
    )
    figure.tight_layout()
    return save_figure(figure, plt, path)


def run_demo(frames: int = 300, cameras: int = 4, seed: int = 0, out: str | Path = "metapose-demo") -> str:
    """Run the demo and return the Markdown table (also printed); writes ``out/demo.png`` and ``out/demo.md``."""
    out = Path(out)
    print(f"metapose-geom demo: {frames} synthetic frames, {cameras} cameras, seed {seed}, "
          f"{get_num_threads()} threads")
    scenes = synth.make_scenes(frames, num_cameras=cameras, seed=seed)
    rows, solutions = zip(*(_solve_and_score(scenes, method) for method in ("s1", "ir", "s2")))
    table = markdown_table(rows, DEMO_COLUMNS)
    traced = solve_batch([scene.views() for scene in scenes[:100]], "ir", {"history_every": 5}, progress=False)
    histories = [solution.history for solution in traced if solution.history is not None]
    # the figure follows the refiner (its objective's path): S1 and S1+IR
    figure = make_figure(scenes, list(rows[:2]), list(solutions[:2]), histories, out / "demo.png")
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.md").write_text(table + "\n")
    print(table)
    print(f"figure: {figure}")
    return table
