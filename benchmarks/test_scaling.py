"""Scaling of the compiled refiner and of the solver: time per frame against C, J, K and the batch size, and memory per frame.

One axis moves at a time from the default workload (``synth.make_scenes``: C = 4 cameras, J = 17
joints, K = 4 components, stage-1 start, 100 Keras-form Adam steps, no bone term, B = 256 frames,
one core thread):

* group ``"scaling: refiner vs cameras"``: C = 2 .. 8;
* group ``"scaling: refiner vs joints"``: J = 17, 34, 68: the scene's joints repeated 1, 2 or 4
  times (mixtures and monocular guesses side by side), a workload of that many joints; the refiner's
  cost does not depend on what the joints are;
* group ``"scaling: refiner vs components"``: K = 1, 2, 4, 6, 8 (``make_scenes(num_components=K)``);
* group ``"scaling: refiner vs batch"``: B = 1, 16, 256, 4096 frames per call, on 1 and 2 threads;
* group ``"scaling: solve_arrays memory"``: ``metapose_geom.solve_arrays`` on B = 1024 frames
  (C = 4, the default method "ir"), with the peak of the Python allocator (``tracemalloc``: numpy's
  arrays, the results and the temporaries) divided by B in ``extra_info``, beside the bytes of
  the evidence per frame.

Every configuration is first checked against the batched numpy refiner
(``benchmarks/refiner_numpy.py``) on its first frames (x and objective within 1e-6), and the
2-thread batches must equal the 1-thread ones bit for bit, before anything is timed. The heatmap
side of the scaling (size 32 to 128 and K) is in ``test_heatmaps.py``'s sweep group.
``python benchmarks/scaling.py`` turns both JSON files into the tables and the plot of
``benchmarks/README.md``.
"""

from __future__ import annotations

import functools
import tracemalloc
from typing import Any

import numpy as np
import pytest

mg = pytest.importorskip("metapose_geom", reason="the compiled core is not installed", exc_type=ImportError)
import refiner_numpy  # noqa: E402
from metapose_geom import _core, synth  # noqa: E402
from metapose_geom.skeletons import H36M_17  # noqa: E402

SEED = 20240601
FRAMES = 256
STEPS = 100
ADAM = {"learning_rate": 1e-2, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7}
CAMERAS = (2, 3, 4, 5, 6, 7, 8)
JOINT_REPEATS = (1, 2, 4)
COMPONENTS = (1, 2, 4, 6, 8)
BATCHES = (1, 16, 256, 4096)
MEMORY_FRAMES = 1024
CHECK_FRAMES = 8
TOLERANCE = 1e-6  # x and objective against numpy, absolute


@functools.lru_cache(maxsize=None)
def scenes(num_cameras: int, num_components: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(mixtures (B, C, 17, K, 4), mono3d (B, C, 17, 3)) of ``count`` synthetic frames (cached)."""
    views = [s.views() for s in synth.make_scenes(count, num_cameras, seed=SEED, num_components=num_components)]
    return np.stack([v.mixtures for v in views]), np.stack([v.mono3d for v in views])


def workload(num_cameras: int = 4, repeats: int = 1, num_components: int = 4, frames: int = FRAMES) -> dict[str, Any]:
    """The refiner's inputs for one configuration: frames beyond the cached 256 repeat them."""
    mixtures, mono3d = scenes(num_cameras, num_components, min(frames, FRAMES))
    take = np.arange(frames) % mixtures.shape[0]
    mixtures = np.concatenate([mixtures[take]] * repeats, axis=2)  # J = 17 * repeats
    mono3d = np.concatenate([mono3d[take]] * repeats, axis=2)
    bones = np.array(H36M_17.bones, dtype=np.int64)
    return {"mixtures": np.ascontiguousarray(mixtures), "x0": _core.stage1(np.ascontiguousarray(mono3d)),
            "bones": bones, "reference": np.ones((frames, len(bones)))}


def refine(data: dict[str, Any], frames: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    x, objective, _, _ = _core.refine(data["mixtures"][frames], data["x0"][frames], data["bones"],
                                      data["reference"][frames], 0.0, STEPS, ADAM["learning_rate"], ADAM["beta1"],
                                      ADAM["beta2"], ADAM["epsilon"], 0)
    return x, objective


def check_against_numpy(name: str, data: dict[str, Any]) -> None:
    check = slice(0, CHECK_FRAMES)
    expected = refine(data, check)
    actual = refiner_numpy.refine(data["mixtures"][check], data["x0"][check], STEPS, **ADAM)
    for label, a, e in zip(("x", "objective"), actual, expected):
        np.testing.assert_allclose(a, e, rtol=0, atol=TOLERANCE, err_msg=f"{name} {label}: numpy vs core")


def record(benchmark, group: str, data: dict[str, Any], **more: Any) -> None:
    B, C, J, K = data["mixtures"].shape[:4]
    benchmark.group = group
    benchmark.extra_info.update(kind="scaling", implementation=f"core, {mg.get_num_threads()} thread(s)", frames=B,
                                cameras=C, joints=J, components=K, steps=STEPS, core_threads=mg.get_num_threads(),
                                **more)


@pytest.mark.parametrize("num_cameras", CAMERAS, ids=[f"C{c}" for c in CAMERAS])
def test_refiner_cameras(benchmark, num_cameras: int) -> None:
    data = workload(num_cameras=num_cameras)
    check_against_numpy(f"C={num_cameras}", data)
    record(benchmark, "scaling: refiner vs cameras", data)
    benchmark(refine, data)


@pytest.mark.parametrize("repeats", JOINT_REPEATS, ids=[f"J{17 * r}" for r in JOINT_REPEATS])
def test_refiner_joints(benchmark, repeats: int) -> None:
    data = workload(repeats=repeats)
    check_against_numpy(f"J={17 * repeats}", data)
    record(benchmark, "scaling: refiner vs joints", data)
    benchmark(refine, data)


@pytest.mark.parametrize("num_components", COMPONENTS, ids=[f"K{k}" for k in COMPONENTS])
def test_refiner_components(benchmark, num_components: int) -> None:
    data = workload(num_components=num_components)
    check_against_numpy(f"K={num_components}", data)
    record(benchmark, "scaling: refiner vs components", data)
    benchmark(refine, data)


@pytest.mark.parametrize("threads", [1, 2], ids=["1thread", "2threads"])
@pytest.mark.parametrize("frames", BATCHES, ids=[f"B{b}" for b in BATCHES])
def test_refiner_batch(benchmark, frames: int, threads: int) -> None:
    data = workload(frames=frames)
    check_against_numpy(f"B={frames}", data)
    one = refine(data)
    mg.set_num_threads(threads)  # the autouse single_thread fixture restores one thread afterwards
    np.testing.assert_array_equal(refine(data)[0], one[0], err_msg=f"B={frames}: {threads} threads vs 1")
    record(benchmark, "scaling: refiner vs batch", data)
    benchmark(refine, data)


def test_solve_arrays_memory(benchmark) -> None:
    mixtures, mono3d = scenes(4, 4, FRAMES)
    take = np.arange(MEMORY_FRAMES) % FRAMES
    mixtures, mono3d = np.ascontiguousarray(mixtures[take]), np.ascontiguousarray(mono3d[take])
    evidence = mixtures.nbytes + mono3d.nbytes

    def solve() -> Any:
        return mg.solve_arrays(mixtures, mono3d, progress=False)

    solve()  # imports and caches outside the measurement
    tracemalloc.start()
    try:
        result = solve()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(result.x[:FRAMES], solve().x[:FRAMES])
    check = slice(0, CHECK_FRAMES)
    data = {"mixtures": mixtures, "x0": _core.stage1(mono3d), "bones": np.array(H36M_17.bones, dtype=np.int64),
            "reference": np.ones((MEMORY_FRAMES, len(H36M_17.bones)))}
    np.testing.assert_array_equal(result.x[check], refine(data, check)[0])  # solve_arrays runs the same refine

    record(benchmark, "scaling: solve_arrays memory", data, api="solve_arrays",
           peak_bytes_per_frame=peak / MEMORY_FRAMES, evidence_bytes_per_frame=evidence / MEMORY_FRAMES)
    benchmark(solve)
