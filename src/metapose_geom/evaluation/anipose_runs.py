"""The AniPose rows: one task per batch of consecutive frames that share their cameras, run in this
process or in a pool of spawned single-threaded processes, results kept in an :class:`AniPoseCache`.

AniPose gets the mixture means in pixels (:func:`metapose_geom.anipose.mixture_mean_pixels`) and
adjusts the cameras on the points of a batch (at most ``anipose_batch`` frames); in the synthetic
files every frame has its own cameras, so every batch is one frame, as in the original study's
script. The seed drives the perturbed start and aniposelib's point resampling, so the poses are
deterministic; the time of a batch is the batch's time over its frames, warm-up excluded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..geometry import PerspectiveCameras
from .cache import AniPoseCache
from .data import EvaluationData
from .methods import MethodSpec

F64 = NDArray[np.float64]

__all__ = [
    "ANIPOSE_ROTATION_DEGREES",
    "ANIPOSE_TRANSLATION_FRACTION",
    "AniPoseTask",
    "anipose_pool",
    "anipose_tasks",
    "run_anipose_task",
    "run_anipose_tasks",
]

#: AniPose's perturbed start (see :func:`metapose_geom.anipose.perturb_cameras`)
ANIPOSE_ROTATION_DEGREES = 15.0
ANIPOSE_TRANSLATION_FRACTION = 0.25


@dataclass(frozen=True)
class AniPoseTask:
    """One AniPose batch: frames ``first:first + n`` sharing the cameras ``start``."""

    first: int
    points: F64  #: (n, k, J, 2) px
    start: PerspectiveCameras
    adjust_intrinsics: bool
    seed: int


_WARM = False  # has this process run aniposelib once (JIT compilation of its kernels)?


def run_anipose_task(task: AniPoseTask) -> tuple[int, F64, float]:
    """-> (first frame, pose (n, J, 3) in camera 0, seconds). The first call in a process is run
    twice and the first run, which compiles aniposelib's numba and jax kernels, is not timed. A
    batch aniposelib fails on (:class:`~metapose_geom.anipose.AniPoseError`) gives NaN poses,
    which the table counts as failures, and the time until the failure."""
    from ..anipose import AniPoseError, anipose_solve

    global _WARM
    for _ in range(1 if _WARM else 2):
        try:
            result = anipose_solve(task.points, task.start, adjust_intrinsics=task.adjust_intrinsics, seed=task.seed)
            pose, seconds = result.pose3d, result.seconds
        except AniPoseError as error:
            pose, seconds = np.full(task.points.shape[:1] + task.points.shape[2:3] + (3,), np.nan), error.seconds
        _WARM = True
    return task.first, pose, seconds


def _same_cameras(data: EvaluationData, a: int, b: int) -> bool:
    return all(np.array_equal(data[name][a], data[name][b]) for name in ("cam_rot", "cam_pose3d", "cam_intr", "cam_kd"))


def anipose_tasks(data: EvaluationData, spec: MethodSpec, frames: int, subset: tuple[int, ...], seed: int,
                  batch: int, adjust_intrinsics: bool) -> list[AniPoseTask]:
    """The tasks of method ``spec`` on the first ``frames`` frames seen by ``subset``: batches of at
    most ``batch`` consecutive frames sharing their cameras, each started from its ground-truth
    cameras (perturbed, seeded by ``seed``, the first frame and the subset, for ``start="random"``)."""
    from ..anipose import mixture_mean_pixels, perturb_cameras

    index = list(subset)
    points = mixture_mean_pixels(data["heatmaps"][:frames, index], data["bboxes"][:frames, index])
    tasks, first = [], 0
    while first < frames:
        stop = first + 1
        while stop < frames and stop - first < batch and _same_cameras(data, first, stop):
            stop += 1
        start = data.cameras(first, subset)
        key = [seed, first, *subset]
        if spec.start == "random":
            subject = data["pose3d"][first:stop].mean(axis=(0, 1))
            start = perturb_cameras(start, subject, np.random.default_rng(key), ANIPOSE_ROTATION_DEGREES,
                                    ANIPOSE_TRANSLATION_FRACTION)
        aniposelib_seed = int(np.random.SeedSequence(key).generate_state(1)[0])
        tasks.append(AniPoseTask(first, points[first:stop], start, adjust_intrinsics, aniposelib_seed))
        first = stop
    return tasks


_SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables (inherited by the processes started inside), then restore them."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def anipose_pool(workers: int) -> Iterator[Any]:
    """``workers`` spawned single-threaded processes (kept for the whole run, so each compiles
    aniposelib's kernels once), or None for ``workers == 1`` (run in this process)."""
    if workers <= 1:
        yield None
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with _environment(_SINGLE_THREAD_ENV), ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        yield pool


def run_anipose_tasks(tasks: list[AniPoseTask], frames_total: int, joints: int, pool, bar,
                      cache: AniPoseCache | None = None) -> tuple[F64, F64]:
    """Run the tasks (on ``pool`` when given; those in ``cache`` are taken from it, the others are
    added to it as they finish) -> pose (n, J, 3), seconds per frame (n,)."""
    pose = np.full((frames_total, joints, 3), np.nan)
    seconds = np.zeros(frames_total)

    def store(first: int, batch_pose: F64, batch_seconds: float) -> None:
        count = batch_pose.shape[0]
        pose[first:first + count] = batch_pose
        seconds[first:first + count] = batch_seconds / count
        bar.update(count)

    todo, keys = [], []
    for task in tasks:
        key = None if cache is None else cache.key(task)
        found = None if key is None else cache.get(key, task)
        if found is None:
            todo.append(task)
            keys.append(key)
        else:
            store(task.first, *found)
    results = map(run_anipose_task, todo) if pool is None else pool.map(run_anipose_task, todo, chunksize=2)
    for task, key, (first, batch_pose, batch_seconds) in zip(todo, keys, results):
        if cache is not None:
            cache.put(key, batch_pose, batch_seconds)
        store(first, batch_pose, batch_seconds)
    return pose, seconds
