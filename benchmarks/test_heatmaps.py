"""Benchmarks of heatmap -> mixture fitting: the numba kernel against its numpy reference.

The workload is one frame as a 2D network gives it: C = 4 views x J = 17 joints of 64 x 64
heatmaps (``synth.make_scene(..., heatmaps=True)``: blobs at the joints, blur, multiplicative and
background noise, occlusion and left/right confusion), fitted with K = 4 components and 5 EM
steps (the defaults of :func:`metapose_geom.heatmaps.fit_mixtures`). One benchmark call fits
one frame (68 heatmaps).

Implementations, timed in one session (group ``"heatmap fit C=4 J=17 64x64 K=4 steps=5"``):

* ``numba, 1 thread`` / ``numba, 2 threads``: ``heatmaps.fit_mixtures``, the heatmaps spread over
  ``metapose_geom.set_num_threads(n)`` threads of numba's pool;
* ``numpy``: ``heatmaps.fit_mixtures_numpy``, the reference the tests hold the kernel to,
  vectorised over the 68 heatmaps (numpy's BLAS held to one thread by ``conftest.py``);
* ``separable numpy``: ``_separable_numpy_em.fit_mixtures_separable``, the same EM using the
  separable grid (K * (H + W) exponentials, matrix products over all 68 heatmaps), checked against
  the reference (rtol 1e-9) on the frame it times, at K = 1, 2, 4, 8 and 32, 48 x 64 and 128 grids.

Before anything is timed, each test fits the very frame about to be timed and requires the
kernel and the reference to agree (rtol 1e-9); that call is also the kernel's first, so numba's
JIT (or its load from the on-disk cache) is never timed. A second family (group
``"heatmap fit sweep, numba 1 thread"``) sweeps the kernel over K = 1, 2, 4, 8 for one frame, over
heatmap sizes 32 to 128 pixels (one frame rendered at that size, K = 4) and over 16 frames at K = 4,
each checked against the reference on its first frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

mg = pytest.importorskip("metapose_geom", reason="the package is not installed", exc_type=ImportError)
pytest.importorskip("numba", reason="numba is needed for the heatmap kernels")
from _separable_numpy_em import fit_mixtures_separable  # noqa: E402
from metapose_geom import heatmaps, synth  # noqa: E402

SEED = 20240601
CAMERAS = 4
JOINTS = 17
SIZE = 64
COMPONENTS = 4
STEPS = 5
SWEEP_COMPONENTS = (1, 2, 4, 8)
SWEEP_SIZES = (32, 48, 64, 96, 128)
SWEEP_FRAMES = 16
TOLERANCE = 1e-9  # relative, with an absolute floor of TOLERANCE * max |reference|

MAIN_GROUP = f"heatmap fit C={CAMERAS} J={JOINTS} {SIZE}x{SIZE} K={COMPONENTS} steps={STEPS}"
SWEEP_GROUP = "heatmap fit sweep, numba 1 thread"


def make_frames(count: int) -> np.ndarray:
    """(count, C, J, 64, 64) heatmaps of synthetic frames, the generator's defaults."""
    scenes = synth.make_scenes(count, CAMERAS, seed=SEED, heatmaps=True, heatmap_size=SIZE)
    return np.stack([scene.heatmaps for scene in scenes])


@pytest.fixture(scope="session")
def frames() -> np.ndarray:
    return make_frames(SWEEP_FRAMES)


def assert_matches_reference(name: str, frame: np.ndarray, components: int) -> None:
    got = heatmaps.fit_mixtures(frame, components, STEPS)
    want = heatmaps.fit_mixtures_numpy(frame, components, STEPS)
    np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE * np.abs(want).max(),
                               err_msg=f"{name}: numba vs numpy reference")


def _extra(implementation: str, frames: int = 1, components: int = COMPONENTS, **more: Any) -> dict[str, Any]:
    extra = dict(kind="heatmap_fit", implementation=implementation, frames=frames, cameras=CAMERAS, joints=JOINTS,
                 heatmap_size=SIZE, components=components, steps=STEPS, core_threads=mg.get_num_threads())
    extra.update(more)
    return extra


# --------------------------------------------------------------------------- benchmarks


@pytest.mark.parametrize("threads", [1, 2], ids=["1thread", "2threads"])
def test_fit_numba(benchmark, frames, threads: int) -> None:
    frame = frames[0]
    mg.set_num_threads(threads)  # the autouse single_thread fixture restores the count afterwards
    assert_matches_reference(f"numba, {threads} threads", frame, COMPONENTS)

    benchmark.group = MAIN_GROUP
    benchmark.extra_info.update(_extra(f"numba, {threads} thread{'s' if threads > 1 else ''}"))
    benchmark(heatmaps.fit_mixtures, frame, COMPONENTS, STEPS)


def test_fit_numpy(benchmark, frames) -> None:
    frame = frames[0]
    assert_matches_reference("numpy", frame, COMPONENTS)

    benchmark.group = MAIN_GROUP
    benchmark.extra_info.update(_extra("numpy", source="metapose_geom.heatmaps.fit_mixtures_numpy"))
    benchmark(heatmaps.fit_mixtures_numpy, frame, COMPONENTS, STEPS)


def test_fit_separable_numpy(benchmark, frames) -> None:
    frame = frames[0]
    for components in SWEEP_COMPONENTS:
        want = heatmaps.fit_mixtures_numpy(frame, components, STEPS)
        np.testing.assert_allclose(fit_mixtures_separable(frame, components, STEPS), want, rtol=TOLERANCE,
                                   atol=TOLERANCE * np.abs(want).max(), err_msg=f"separable numpy, K={components}")
    for shape in ((32, 32), (48, 64), (128, 128)):
        grid = np.kron(frame[:1], np.ones((2, 2)))[..., :shape[0], :shape[1]]  # 128 x 128, cut to the shape
        want = heatmaps.fit_mixtures_numpy(grid, COMPONENTS, STEPS)
        np.testing.assert_allclose(fit_mixtures_separable(grid, COMPONENTS, STEPS), want, rtol=TOLERANCE,
                                   atol=TOLERANCE * np.abs(want).max(), err_msg=f"separable numpy, {shape}")

    benchmark.group = MAIN_GROUP
    benchmark.extra_info.update(_extra("separable numpy", source="benchmarks/_separable_numpy_em.py"))
    benchmark(fit_mixtures_separable, frame, COMPONENTS, STEPS)


@pytest.mark.parametrize("components", SWEEP_COMPONENTS, ids=[f"K{k}" for k in SWEEP_COMPONENTS])
def test_fit_sweep_components(benchmark, frames, components: int) -> None:
    frame = frames[0]
    assert_matches_reference(f"K={components}", frame, components)

    benchmark.group = SWEEP_GROUP
    benchmark.extra_info.update(_extra("numba, 1 thread", components=components, sweep="components"))
    benchmark(heatmaps.fit_mixtures, frame, components, STEPS)


@pytest.mark.parametrize("size", SWEEP_SIZES, ids=[f"{s}px" for s in SWEEP_SIZES])
def test_fit_sweep_sizes(benchmark, size: int) -> None:
    scenes = synth.make_scenes(1, CAMERAS, seed=SEED, heatmaps=True, heatmap_size=size)
    frame = scenes[0].heatmaps
    got = heatmaps.fit_mixtures(frame, COMPONENTS, STEPS)
    want = heatmaps.fit_mixtures_numpy(frame, COMPONENTS, STEPS)
    np.testing.assert_allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE * np.abs(want).max(),
                               err_msg=f"{size}x{size}: numba vs numpy reference")

    benchmark.group = SWEEP_GROUP
    extra = _extra("numba, 1 thread", sweep="size")
    extra["heatmap_size"] = size
    benchmark.extra_info.update(extra)
    benchmark(heatmaps.fit_mixtures, frame, COMPONENTS, STEPS)


def test_fit_sweep_frames(benchmark, frames) -> None:
    assert_matches_reference(f"{SWEEP_FRAMES} frames", frames[0], COMPONENTS)

    benchmark.group = SWEEP_GROUP
    benchmark.extra_info.update(_extra("numba, 1 thread", frames=SWEEP_FRAMES, sweep="frames"))
    benchmark(heatmaps.fit_mixtures, frames, COMPONENTS, STEPS)
