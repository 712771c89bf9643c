"""Scaling tables and plot from ``benchmarks/results/scaling.json`` and ``heatmaps.json``.

Usage (after the two benchmark runs of ``benchmarks/README.md``, section "Scaling")::

    python benchmarks/scaling.py benchmarks/results/scaling.json benchmarks/results/heatmaps.json \
        --plot benchmarks/results/scaling.png

Prints Markdown tables, one per axis: the refiner's time per frame against the cameras C, the
joints J, the mixture components K and the batch size B (1 and 2 threads), the memory per frame of
``solve_arrays``, and the heatmap fit's time per frame against the heatmap size and K. Times are
the median of a whole call divided by its frames. The plot shows the same on log-log axes.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Bench = dict[str, Any]


def load(path: Path) -> list[Bench]:
    return json.loads(path.read_text())["benchmarks"]


def per_frame_ms(bench: Bench) -> float:
    return 1e3 * bench["stats"]["median"] / bench["extra_info"]["frames"]


def series(benchmarks: list[Bench], keep: Callable[[Bench], bool], axis: str) -> list[tuple[Any, float, Bench]]:
    """(axis value, ms per frame, benchmark) of the kept benchmarks, sorted by the axis value."""
    rows = [(b["extra_info"][axis], per_frame_ms(b), b) for b in benchmarks if keep(b)]
    return sorted(rows, key=lambda row: row[0])


def group(name: str) -> Callable[[Bench], bool]:
    return lambda bench: bench.get("group") == name


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def relative(rows: list[tuple[Any, float, Bench]]) -> list[str]:
    """Each time relative to the first row's."""
    return [f"{ms / rows[0][1]:.2f}x" for _, ms, _ in rows]


def refiner_tables(scaling: list[Bench]) -> tuple[str, dict[str, list[tuple[Any, float, Bench]]]]:
    out, curves = [], {}
    for axis, name, label in (("cameras", "scaling: refiner vs cameras", "C"),
                              ("joints", "scaling: refiner vs joints", "J"),
                              ("components", "scaling: refiner vs components", "K")):
        rows = series(scaling, group(name), axis)
        curves[label] = rows
        out.append(table(f"Refiner against {axis} (B = 256, 100 steps, 1 thread; the others at C = 4, J = 17, K = 4)",
                         [label, "ms per frame", "relative"],
                         [[str(v), f"{ms:.3f}", r] for (v, ms, _), r in zip(rows, relative(rows))]))
    batch = [b for b in scaling if b.get("group") == "scaling: refiner vs batch"]
    one = series(batch, lambda b: b["extra_info"]["core_threads"] == 1, "frames")
    two = {v: ms for v, ms, _ in series(batch, lambda b: b["extra_info"]["core_threads"] == 2, "frames")}
    curves["B (1 thread)"] = one
    curves["B (2 threads)"] = series(batch, lambda b: b["extra_info"]["core_threads"] == 2, "frames")
    out.append(table("Refiner against the batch size (C = 4, J = 17, K = 4, 100 steps)",
                     ["B", "ms per frame, 1 thread", "ms per frame, 2 threads", "speed-up"],
                     [[str(v), f"{ms:.3f}", f"{two[v]:.3f}" if v in two else "-",
                       f"{ms / two[v]:.2f}x" if v in two else "-"] for v, ms, _ in one]))
    memory = [b for b in scaling if b.get("group") == "scaling: solve_arrays memory"]
    if memory:
        info = memory[0]["extra_info"]
        out.append(table(f"Memory per frame of `solve_arrays` (B = {info['frames']}, C = 4, J = 17, K = 4, method ir)",
                         ["evidence (mixtures + mono3d)", "peak allocated during the call", "time per frame"],
                         [[f"{info['evidence_bytes_per_frame'] / 1024:.1f} KiB",
                           f"{info['peak_bytes_per_frame'] / 1024:.1f} KiB", f"{per_frame_ms(memory[0]):.3f} ms"]]))
    return "\n".join(out), curves


def heatmap_tables(heatmaps: list[Bench]) -> tuple[str, dict[str, list[tuple[Any, float, Bench]]]]:
    sweep = [b for b in heatmaps if b.get("group") == "heatmap fit sweep, numba 1 thread"]
    sizes = series(sweep, lambda b: b["extra_info"].get("sweep") == "size", "heatmap_size")
    components = series(sweep, lambda b: b["extra_info"].get("sweep") == "components", "components")
    out = [
        table("Heatmap fit against the heatmap size (one frame: 4 x 17 heatmaps, K = 4, 5 EM steps, 1 thread)",
              ["size (px)", "ms per frame", "us per heatmap", "ns per pixel and step", "heatmaps (float64) per frame"],
              [[f"{v} x {v}", f"{ms:.2f}", f"{1e3 * ms / 68:.1f}", f"{1e6 * ms / (68 * v * v * 5):.2f}",
                f"{68 * v * v * 8 / 2**20:.2f} MiB"] for v, ms, _ in sizes]),
        table("Heatmap fit against K (one frame of 64 x 64 heatmaps, 5 EM steps, 1 thread)",
              ["K", "ms per frame", "relative"],
              [[str(v), f"{ms:.2f}", r] for (v, ms, _), r in zip(components, relative(components))]),
    ]
    return "\n".join(out), {"heatmap size": sizes, "heatmap K": components}


def plot(curves: dict[str, list[tuple[Any, float, Bench]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("C", "cameras C"), ("J", "joints J"), ("K", "components K"), ("B", "batch size B"),
              ("heatmap size", "heatmap side (px)"), ("heatmap K", "components K")]
    fig, axes = plt.subplots(2, 3, figsize=(12, 7), constrained_layout=True)
    for ax, (key, xlabel) in zip(axes.ravel(), panels):
        keys = ["B (1 thread)", "B (2 threads)"] if key == "B" else [key]
        for name in keys:
            rows = curves.get(name, [])
            if rows:
                ax.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("ms per frame")
        ax.set_title(("heatmap fit" if key.startswith("heatmap") else "refiner") + f" vs {xlabel}")
        ax.grid(True, which="both", alpha=0.3)
        if key == "B":
            ax.legend()
    fig.suptitle("metapose-geom scaling (one core unless marked; medians of pytest-benchmark runs)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scaling", type=Path, help="JSON of benchmarks/test_scaling.py")
    parser.add_argument("heatmaps", type=Path, help="JSON of benchmarks/test_heatmaps.py")
    parser.add_argument("--plot", type=Path, help="write the plot (PNG) here")
    args = parser.parse_args(argv)
    refiner_text, curves = refiner_tables(load(args.scaling))
    heatmap_text, heatmap_curves = heatmap_tables(load(args.heatmaps))
    print(refiner_text)
    print(heatmap_text)
    if args.plot:
        plot({**curves, **heatmap_curves}, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
