"""Benchmarks of MetaPose's refiner against the classical baseline, aniposelib, on the same frames.

Both sides go through the public API, so both include their Python around the work:
``metapose_geom.solve`` / ``solve_batch`` with ``method="ir"`` (stage 1, then 100 Adam steps of the
compiled refiner, one thread) and with ``method="anipose"`` (aniposelib's ``bundle_adjust_iter``
with its defaults, then ``triangulate``; needs the ``anipose`` extra, skipped without it).

* group ``"one frame, C=4"``: a single synthetic frame (``synth.make_scene``), AniPose started from
  the ground-truth cameras, as in the evaluation's ``anipose-gt`` row;
* group ``"fixed rig, 100 frames, C=4"``: 100 frames of one rig (``synth.make_scenes(...,
  cameras=rig)``), AniPose adjusting that rig once on all frames' points (its usual use; the start
  is the rig with each camera turned 3 degrees and moved 5% of its distance), IR solving every
  frame alone.

Everything runs on one thread: the core (``conftest.py``), numpy's BLAS, and aniposelib's numba and
jax kernels (``NUMBA_NUM_THREADS``, ``XLA_FLAGS``, set here before they are imported).

Before timing, each test checks its method on the very inputs about to be timed: finite poses
within a PMPJPE bound of the truth. ``report.py`` gives ms per frame and the ratio to IR.
"""

from __future__ import annotations

import os

# aniposelib's numba and jax kernels on one thread too, as the refiner (set before they are imported)
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

mg = pytest.importorskip("metapose_geom", reason="the compiled core is not installed", exc_type=ImportError)
from metapose_geom import synth  # noqa: E402
from metapose_geom.anipose import perturb_cameras, scene_cameras  # noqa: E402

SEED = 20240611
CAMERAS = 4
RIG_FRAMES = 100
ONE_GROUP = f"one frame, C={CAMERAS}"
RIG_GROUP = f"fixed rig, {RIG_FRAMES} frames, C={CAMERAS}"
#: mean PMPJPE (mm) each method must reach on the timed inputs before it is timed
BOUND_MM = {"ir": 60.0, "anipose": 120.0}


@pytest.fixture(scope="module")
def one_frame() -> synth.Scene:
    return synth.make_scene(SEED, num_cameras=CAMERAS)


@pytest.fixture(scope="module")
def rig_frames() -> tuple[list[synth.Scene], mg.PerspectiveCameras]:
    rng = np.random.default_rng(SEED)
    rig = synth.sample_cameras(rng, synth.sample_pose(rng), CAMERAS)
    scenes = synth.make_scenes(RIG_FRAMES, seed=SEED, cameras=rig)
    start = perturb_cameras(rig, np.mean([s.pose3d.mean(axis=0) for s in scenes], axis=0),
                            np.random.default_rng(SEED), 3.0, 0.05)
    return scenes, start


def _needs_aniposelib() -> None:
    pytest.importorskip("aniposelib", reason="the anipose extra is not installed")


def _extra(benchmark, method: str, frames: int, **more) -> None:
    benchmark.extra_info.update(kind="baseline", implementation=method, frames=frames, cameras=CAMERAS, **more)


def _check(solutions, scenes, method: str) -> None:
    errors = [mg.metrics.pmpjpe(s.pose3d, scene.pose3d) for s, scene in zip(solutions, scenes)]
    assert np.isfinite(errors).all(), method
    assert np.mean(errors) < BOUND_MM[method], f"{method}: mean PMPJPE {np.mean(errors):.1f} mm"


@pytest.mark.parametrize("method", ["ir", "anipose"])
def test_one_frame(benchmark, one_frame, method: str) -> None:
    views = one_frame.views()
    kwargs = {}
    if method == "anipose":
        _needs_aniposelib()
        kwargs["cameras"] = scene_cameras(one_frame)
    _check([mg.solve(views, method=method, **kwargs)], [one_frame], method)  # also the untimed first call

    benchmark.group = ONE_GROUP
    _extra(benchmark, method, 1, start="ground-truth cameras" if method == "anipose" else "stage 1")
    benchmark(mg.solve, views, method=method, **kwargs)


@pytest.mark.parametrize("method", ["ir", "anipose"])
def test_fixed_rig(benchmark, rig_frames, method: str) -> None:
    scenes, start = rig_frames
    frames = [scene.views() for scene in scenes]
    kwargs = {"progress": False}
    if method == "anipose":
        _needs_aniposelib()
        kwargs["cameras"] = start
    _check(mg.solve_batch(frames, method=method, **kwargs), scenes, method)

    benchmark.group = RIG_GROUP
    _extra(benchmark, method, RIG_FRAMES, start="perturbed rig, adjusted once" if method == "anipose" else "stage 1")
    benchmark.pedantic(mg.solve_batch, args=(frames,), kwargs={"method": method, **kwargs}, rounds=3,
                       warmup_rounds=0)
