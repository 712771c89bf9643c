"""Benchmarks of ``solve`` on one frame: the public call against the bare core calls it makes.

The frame is ``synth.make_scene(0).views()`` (C = 4 cameras, J = 17 joints, K = 4 components,
with monocular guesses and boxes), default options, the core on one thread (``conftest.py``).
Groups, each timed in one session:

* ``single frame ir``: ``solve ir`` is ``metapose_geom.solve(views)`` (stage 1, then 100 Adam
  steps); ``core ir`` is what it costs in the core alone, the separate calls on the frame's
  arrays: ``_core.stage1`` + ``_core.refiner_objective`` (the start's objective) + ``_core.refine``;
* ``single frame s1``: ``solve s1`` is ``metapose_geom.solve(views, "s1")``; ``core s1`` is
  ``_core.stage1`` + ``_core.refiner_objective``.

Overhead is solve's median minus core's median of the same group (``python
benchmarks/test_single_frame.py RESULTS.json`` prints it, in ms and as solve / core). Before
anything is timed, each test checks that ``solve`` gives the core's x and objective bit for bit.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

mg = pytest.importorskip("metapose_geom", reason="the compiled core is not installed", exc_type=ImportError)
from metapose_geom import _core, synth  # noqa: E402
from metapose_geom.skeletons import H36M_17  # noqa: E402

METHODS = ("s1", "ir")
ADAM = (100, 1e-2, 0.9, 0.999, 1e-7)  # steps, learning rate, beta1, beta2, epsilon: RefineOptions' defaults


@pytest.fixture(scope="module")
def frame() -> tuple:
    views = synth.make_scene(0).views()
    assert views.mixtures.shape == (4, 17, 4, 4) and views.mono3d is not None and views.boxes is not None
    bones = np.array(H36M_17.bones, dtype=np.int64)
    reference = H36M_17.bone_lengths(H36M_17.rest_pose())[None]
    return views, views.mixtures[None], views.mono3d[None], bones, reference


def core_calls(frame: tuple, method: str) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    """The core calls ``solve(views, method)`` needs, on the frame's arrays -> x (1, P), objective (1,)."""
    _, mixtures, mono3d, bones, reference = frame

    def run() -> tuple[np.ndarray, np.ndarray]:
        x0 = _core.stage1(mono3d)
        start, _ = _core.refiner_objective(mixtures, x0, bones, reference, 0.0)
        if method == "s1":
            return x0, start
        x, objective, _, _ = _core.refine(mixtures, x0, bones, reference, 0.0, *ADAM, 0)
        return x, objective

    return run


@pytest.mark.parametrize("method", METHODS)
def test_solve(benchmark, frame: tuple, method: str) -> None:
    views = frame[0]
    solution = mg.solve(views, method)
    x, objective = core_calls(frame, method)()
    assert np.array_equal(solution.x, x[0]) and solution.objective == objective[0]
    benchmark.group = f"single frame {method}"
    benchmark.name = f"solve {method}"
    benchmark.extra_info.update(kind="single frame", method=method, role="solve")
    benchmark(mg.solve, views, method)


@pytest.mark.parametrize("method", METHODS)
def test_core(benchmark, frame: tuple, method: str) -> None:
    benchmark.group = f"single frame {method}"
    benchmark.name = f"core {method}"
    benchmark.extra_info.update(kind="single frame", method=method, role="core")
    benchmark(core_calls(frame, method))


def overhead_table(data: dict) -> list[str]:
    """A pytest-benchmark JSON of this file -> Markdown rows: method, solve and core medians (ms),
    overhead (solve - core, ms) and solve / core."""
    medians: dict[tuple[str, str], float] = {}
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        medians[info["method"], info["role"]] = bench["stats"]["median"]
    rows = ["| method | solve ms | core ms | overhead ms | solve / core |", "|---|---:|---:|---:|---:|"]
    for method in METHODS:
        solve, core = medians[method, "solve"] * 1e3, medians[method, "core"] * 1e3
        rows.append(f"| {method} | {solve:.4f} | {core:.4f} | {solve - core:.4f} | {solve / core:.2f} |")
    return rows


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(path)
        print("\n".join(overhead_table(json.loads(Path(path).read_text()))))
