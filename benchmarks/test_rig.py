"""Benchmarks of the static-rig refiner (``metapose_geom.rig.refine_static_rig``) beside the same
work done by the per-frame iterative refiner (``_core.refine``), in one session.

Workload: a fixed rig of C = 4 cameras (``synth.sample_cameras`` once) filming F = 100 and 1000
synthetic frames (``synth.make_scene(..., cameras=rig)``: 17 joints, K = 4, noisy evidence), 200
Keras-form Adam steps (lr 1e-2, betas 0.9 / 0.999, eps 1e-7), every view used, weights 1. Each
frame's start is its stage 1 (``_core.stage1`` of its monocular guesses, camera 0 the
reference); the rig shares the rotations of frame 0's start, and the per-frame refiner starts from
every frame's own. Both evaluate the objective of F frames of 4 views 200 times (the rig also
sums the rotations' gradient over frames), so the ratio rig / IR is the cost of sharing the
rotations.

Implementations per group ``"rig C=4 F=<frames> steps=200"`` (``report.py`` shows ms per frame and the
ratio to ``ir``):

* ``ir``: ``_core.refine`` of the F frames, 1 thread (4 frames in vector lanes, as the rig);
* ``rig, 1 thread``: ``refine_static_rig``, the public call (argument checks included);
* ``rig, 2 threads`` (F = 1000 only): the same on 2 threads (the frames of each step split).

Before timing, each test checks what it times: the rig's total is finite and below its start's,
the rig on 2 threads gives the bits of 1 thread, and one frame alone through the rig gives the
per-frame refiner's bits (the objectives are the same function there).

Command (about 45 s; correctness only: ``--benchmark-disable``, about 10 s)::

    python -m pytest benchmarks/test_rig.py --benchmark-only --benchmark-warmup=on \\
        --benchmark-json=benchmarks/results/rig.json -q
    python benchmarks/report.py benchmarks/results/rig.json
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

mg = pytest.importorskip("metapose_geom", reason="the compiled core is not installed", exc_type=ImportError)
from metapose_geom import _core, layout, synth  # noqa: E402
from metapose_geom.rig import refine_static_rig, static_rig_objective  # noqa: E402
from metapose_geom.solver import RefineOptions  # noqa: E402

SEED = 20240621
CAMERAS = 4
JOINTS = 17
COMPONENTS = 4
STEPS = 200
FRAME_COUNTS = (100, 1000)
OPTIONS = RefineOptions(steps=STEPS)  # lr 1e-2, betas 0.9 / 0.999, eps 1e-7
NO_BONES = np.zeros((1, 2), dtype=np.int64)


@dataclass(frozen=True)
class RigBatch:
    """F frames of one fixed rig, with the starts of both refiners."""

    mixtures: np.ndarray  # (F, C, J, K, 4) box units
    x0: np.ndarray  # (F, P) each frame's stage 1 (per-frame refiner)
    used: np.ndarray  # (F, C) all True
    rot6d: np.ndarray  # (C, 6) frame 0's stage-1 rotations (the rig's)
    poses: np.ndarray  # (F, J, 3)
    scale_raw: np.ndarray  # (F, C)
    shifts: np.ndarray  # (F, C, 3)

    @property
    def frames(self) -> int:
        return int(self.mixtures.shape[0])

    def rig_arguments(self) -> tuple[np.ndarray, ...]:
        return self.mixtures, self.used, self.rot6d, self.poses, self.scale_raw, self.shifts


def make_batch(frames: int) -> RigBatch:
    rng = np.random.default_rng(SEED)
    rig = synth.sample_cameras(rng, synth.sample_pose(rng), CAMERAS)
    scenes = [synth.make_scene(np.random.default_rng([SEED, i]), cameras=rig) for i in range(frames)]
    mixtures = np.stack([scene.views().mixtures for scene in scenes])
    assert mixtures.shape == (frames, CAMERAS, JOINTS, COMPONENTS, 4), mixtures.shape
    x0 = _core.stage1(np.stack([scene.views().mono3d for scene in scenes]))
    pose, rot6d, scale_raw, shift = layout.unpack(x0, CAMERAS, JOINTS)
    return RigBatch(mixtures, x0, np.ones((frames, CAMERAS), bool), rot6d[0].copy(), pose.copy(), scale_raw.copy(),
                    shift.copy())


@pytest.fixture(scope="session")
def rig_batches() -> Callable[[int], RigBatch]:
    """frames -> its RigBatch: the first frames of one batch of max(FRAME_COUNTS), built once per session."""
    full = make_batch(max(FRAME_COUNTS))

    def get(frames: int) -> RigBatch:
        return RigBatch(full.mixtures[:frames], full.x0[:frames], full.used[:frames], full.rot6d,
                        full.poses[:frames], full.scale_raw[:frames], full.shifts[:frames])

    return get


def per_frame_refine(batch: RigBatch) -> np.ndarray:
    x, _, _, _ = _core.refine(batch.mixtures, batch.x0, NO_BONES, np.ones((batch.frames, 1)), 0.0, STEPS,
                              OPTIONS.learning_rate, OPTIONS.beta1, OPTIONS.beta2, OPTIONS.epsilon, 0)
    return x


def rig_refine(batch: RigBatch):
    return refine_static_rig(*batch.rig_arguments(), options=OPTIONS)


def _extra(batch: RigBatch, implementation: str) -> dict:
    return dict(kind="rig", implementation=implementation, frames=batch.frames, cameras=CAMERAS, joints=JOINTS,
                components=COMPONENTS, steps=STEPS, core_threads=mg.get_num_threads())


def _group(frames: int) -> str:
    return f"rig C={CAMERAS} F={frames} steps={STEPS}"


@pytest.mark.parametrize("frames", FRAME_COUNTS, ids=[f"F{f}" for f in FRAME_COUNTS])
def test_rig_ir(benchmark, rig_batches, frames: int) -> None:
    batch = rig_batches(frames)
    # One frame alone: the rig is the per-frame refiner's problem, and gives its bits.
    one = RigBatch(batch.mixtures[:1], batch.x0[:1], batch.used[:1], batch.rot6d, batch.poses[:1],
                   batch.scale_raw[:1], batch.shifts[:1])  # frame 0's rotations: its own stage 1
    expected = layout.unpack(per_frame_refine(one)[0], CAMERAS, JOINTS)
    result = rig_refine(one)
    np.testing.assert_array_equal(result.rot6d, expected.rot6d)
    np.testing.assert_array_equal(result.poses[0], expected.pose)
    assert np.isfinite(per_frame_refine(batch)).all()

    benchmark.group = _group(frames)
    benchmark.extra_info.update(_extra(batch, "ir"))
    benchmark(per_frame_refine, batch)


RIG_CASES = [(frames, 1) for frames in FRAME_COUNTS] + [(max(FRAME_COUNTS), 2)]  # 2 threads: the largest only


@pytest.mark.parametrize(("frames", "threads"), RIG_CASES, ids=[f"F{f}-{t}thread" for f, t in RIG_CASES])
def test_rig_static(benchmark, rig_batches, frames: int, threads: int) -> None:
    batch = rig_batches(frames)
    start, _, _ = static_rig_objective(batch.mixtures, batch.used, np.ones(frames), batch.rot6d, batch.poses,
                                       batch.scale_raw, batch.shifts)
    result = rig_refine(batch)
    assert np.isfinite(result.total) and result.total < start, (result.total, start)
    mg.set_num_threads(threads)  # the autouse single_thread fixture restores the count afterwards
    if threads > 1:  # the frames' shares are summed in frame order: the same bits on any thread count
        np.testing.assert_array_equal(rig_refine(batch).rot6d, result.rot6d)

    benchmark.group = _group(frames)
    benchmark.extra_info.update(_extra(batch, f"rig, {threads} thread{'s' if threads > 1 else ''}"))
    benchmark(rig_refine, batch)
