"""Benchmarks of the iterative refiner (IR): the compiled core against batched numpy and torch.

The workload is design.md's target: B = 256 synthetic frames (``synth.make_scenes``, 4 cameras,
17 joints, K = 4 mixture components, noisy evidence), started from stage 1
(``_core.stage1``), 100 Keras-form Adam steps (lr 1e-2, betas 0.9 / 0.999, eps 1e-7), no bone
term. One benchmark call refines the whole batch; ``report.py`` divides by B to give ms per frame.

Implementations, all timed in one session (group ``"refiner C=4 B=256"``):

* ``core, 1 thread`` / ``core, 2 threads``: ``metapose_geom._core.refine``, frames spread over
  ``metapose_geom.set_num_threads(n)`` threads;
* ``numpy``: ``benchmarks/refiner_numpy.py``, analytic gradients, vectorised over the batch
  (numpy's BLAS held to one thread by ``conftest.py``);
* ``torch, 1 thread``: ``benchmarks/refiner_torch.py``, float64 autograd through
  ``metapose_geom.nn.objective`` (``torch.set_num_threads(1)``);
* ``solve_batch, 1 thread`` (context, not a baseline): the public ``metapose_geom.solve_batch``
  on the same frames, i.e. stage 1 + the same core refine + building the per-frame solutions.

Before anything is timed, each test checks the implementation it times against the core on one
thread on the very inputs about to be timed: final x and objective within 1e-6 (absolute), and
the core on 2 threads bit-identical to 1 thread. A second family (group
``"refiner cameras, core 1 thread"``) sweeps the core over C = 2, 4, 8 cameras at one thread,
each size checked against numpy on its first 32 frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

mg = pytest.importorskip("metapose_geom", reason="the compiled core is not installed", exc_type=ImportError)
import refiner_numpy  # noqa: E402
from metapose_geom import _core, synth  # noqa: E402
from metapose_geom.skeletons import H36M_17  # noqa: E402

SEED = 20240601
FRAMES = 256
CAMERAS = 4
JOINTS = 17
COMPONENTS = 4
STEPS = 100
ADAM = {"learning_rate": 1e-2, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7}
SWEEP_CAMERAS = (2, 4, 8)
SWEEP_CHECK_FRAMES = 32
#: final x and objective of every implementation vs the core on one thread (absolute)
TOLERANCE = 1e-6

MAIN_GROUP = f"refiner C={CAMERAS} B={FRAMES}"
SWEEP_GROUP = "refiner cameras, core 1 thread"


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class RefinerBatch:
    """B frames of one camera count, ready for every implementation."""

    views: list  # metapose_geom.Views per frame (for solve_batch)
    mixtures: np.ndarray  # (B, C, J, K, 4) box units
    x0: np.ndarray  # (B, P) stage 1
    bones: np.ndarray  # (nB, 2) int64; unused at bone_weight 0 but required by the binding
    bone_reference: np.ndarray  # (B, nB)

    @property
    def num_cameras(self) -> int:
        return int(self.mixtures.shape[1])


def make_batch(num_cameras: int) -> RefinerBatch:
    scenes = synth.make_scenes(FRAMES, num_cameras=num_cameras, seed=SEED)
    views = [scene.views() for scene in scenes]
    mixtures = np.stack([v.mixtures for v in views])
    mono3d = np.stack([v.mono3d for v in views])
    assert mixtures.shape == (FRAMES, num_cameras, JOINTS, COMPONENTS, 4), mixtures.shape
    x0 = _core.stage1(mono3d)
    bones = np.array(H36M_17.bones, dtype=np.int64)
    return RefinerBatch(views, mixtures, x0, bones, np.ones((FRAMES, len(bones))))


def core_refine(batch: RefinerBatch, frames: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """The compiled refiner on ``batch`` (with the current core thread count) -> x (B, P), objective (B,)."""
    x, objective, _, _ = _core.refine(
        batch.mixtures[frames], batch.x0[frames], batch.bones, batch.bone_reference[frames], 0.0, STEPS,
        ADAM["learning_rate"], ADAM["beta1"], ADAM["beta2"], ADAM["epsilon"], 0,
    )  # fmt: skip
    return x, objective


@pytest.fixture(scope="session")
def refiner_batches() -> Callable[[int], RefinerBatch]:
    """num_cameras -> its RefinerBatch, built once per session."""
    cache: dict[int, RefinerBatch] = {}

    def get(num_cameras: int) -> RefinerBatch:
        if num_cameras not in cache:
            cache[num_cameras] = make_batch(num_cameras)
        return cache[num_cameras]

    return get


@pytest.fixture(scope="session")
def core_reference(refiner_batches) -> tuple[np.ndarray, np.ndarray]:
    """The core's result on one thread for the main batch: what every implementation must give."""
    previous = mg.get_num_threads()
    mg.set_num_threads(1)
    try:
        return core_refine(refiner_batches(CAMERAS))
    finally:
        mg.set_num_threads(previous)


@pytest.fixture
def torch_single_thread() -> Iterator[Any]:
    """torch on one intra-op thread for the test, the previous count restored afterwards."""
    torch = pytest.importorskip("torch", reason="torch is needed for the torch baseline")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield torch
    finally:
        torch.set_num_threads(previous)


def assert_matches_core(name: str, actual: tuple[np.ndarray, np.ndarray], expected: tuple[np.ndarray, np.ndarray]) -> None:
    for label, a, e in zip(("x", "objective"), actual, expected):
        assert a.shape == e.shape, f"{name} {label}: shape {a.shape} vs core {e.shape}"
        np.testing.assert_allclose(a, e, rtol=0, atol=TOLERANCE, err_msg=f"{name} {label} vs core (1 thread)")


def _extra(batch: RefinerBatch, implementation: str, **more: Any) -> dict[str, Any]:
    extra = dict(
        kind="refiner",
        implementation=implementation,
        frames=FRAMES,
        cameras=batch.num_cameras,
        joints=JOINTS,
        components=COMPONENTS,
        steps=STEPS,
        core_threads=mg.get_num_threads(),
    )
    extra.update(more)
    return extra


# --------------------------------------------------------------------------- benchmarks


@pytest.mark.parametrize("threads", [1, 2], ids=["1thread", "2threads"])
def test_refiner_core(benchmark, refiner_batches, core_reference, threads: int) -> None:
    batch = refiner_batches(CAMERAS)
    mg.set_num_threads(threads)  # the autouse single_thread fixture restores the count afterwards
    assert mg.get_num_threads() == threads
    x, objective = core_refine(batch)
    if threads > 1:  # every frame runs alone on its thread: same arithmetic, same bits
        np.testing.assert_array_equal(x, core_reference[0], err_msg=f"core on {threads} threads vs 1 thread")
    assert_matches_core(f"core, {threads} threads", (x, objective), core_reference)

    benchmark.group = MAIN_GROUP
    benchmark.extra_info.update(_extra(batch, f"core, {threads} thread{'s' if threads > 1 else ''}"))
    benchmark(core_refine, batch)


def test_refiner_numpy(benchmark, refiner_batches, core_reference) -> None:
    batch = refiner_batches(CAMERAS)
    assert_matches_core("numpy", refiner_numpy.refine(batch.mixtures, batch.x0, STEPS, **ADAM), core_reference)

    benchmark.group = MAIN_GROUP
    benchmark.extra_info.update(_extra(batch, "numpy", source="benchmarks/refiner_numpy.py"))
    benchmark(refiner_numpy.refine, batch.mixtures, batch.x0, STEPS, **ADAM)


def test_refiner_torch(benchmark, refiner_batches, core_reference, torch_single_thread) -> None:
    import refiner_torch

    torch = torch_single_thread
    batch = refiner_batches(CAMERAS)
    assert_matches_core("torch", refiner_torch.refine(batch.mixtures, batch.x0, STEPS, **ADAM), core_reference)

    benchmark.group = MAIN_GROUP
    benchmark.extra_info.update(
        _extra(
            batch, "torch, 1 thread", source="benchmarks/refiner_torch.py", torch_version=torch.__version__,
            torch_threads=torch.get_num_threads(),
        )
    )  # fmt: skip
    benchmark(refiner_torch.refine, batch.mixtures, batch.x0, STEPS, **ADAM)


def test_refiner_solve_batch(benchmark, refiner_batches, core_reference) -> None:
    """Context row: the public API on the same frames (stage 1 + core refine + per-frame solutions)."""
    batch = refiner_batches(CAMERAS)

    def solve() -> list:
        return mg.solve_batch(batch.views, method="ir", progress=False)

    solutions = solve()
    x = np.stack([s.x for s in solutions])
    objective = np.array([s.objective for s in solutions])
    assert_matches_core("solve_batch", (x, objective), core_reference)

    benchmark.group = MAIN_GROUP
    benchmark.extra_info.update(_extra(batch, "solve_batch, 1 thread", context=True))
    benchmark(solve)


@pytest.mark.parametrize("num_cameras", SWEEP_CAMERAS, ids=[f"C{c}" for c in SWEEP_CAMERAS])
def test_refiner_cameras(benchmark, refiner_batches, num_cameras: int) -> None:
    batch = refiner_batches(num_cameras)
    check = slice(0, SWEEP_CHECK_FRAMES)
    expected = core_refine(batch, check)
    assert_matches_core(
        f"numpy C={num_cameras}", refiner_numpy.refine(batch.mixtures[check], batch.x0[check], STEPS, **ADAM), expected
    )

    benchmark.group = SWEEP_GROUP
    benchmark.extra_info.update(_extra(batch, "core, 1 thread", kind="refiner_cameras"))
    benchmark(core_refine, batch)
