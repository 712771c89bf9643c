"""Evaluation tables: S1, S1+IR, the IR oracles and the AniPose baseline on a dataset file.

``metapose-geom evaluate DATASET.h5`` runs :func:`run_evaluation`. For each camera count k (2, 3
and 4 by default) the frames are seen by a subset of k of the file's cameras: the first k
(``subsets="first"``, the default) or every k-subset, with the errors averaged over all of them
(``subsets="all"``). Each method in :data:`METHODS` solves every frame of every subset:

=================  ==========================================================================
method             what it is
=================  ==========================================================================
s1                 stage 1 alone: Procrustes of the monocular guesses
ir                 stage 1, then the iterative refiner (100 Adam steps)
ir-gt-init         IR oracle: stage 1 from perfect monocular guesses (the weak-camera image of
                   the 3D truth, ``Scene.gt_mono3d``), noisy mixtures
ir-gt-mixtures     IR oracle: ground-truth mixtures (``synth.gt_mixtures``) at the exact 2D
                   projections, noisy monocular guesses
ir-weak-labels     IR oracle: ground-truth mixtures at the weak-perspective re-projection of the
                   3D truth (``pose2d_repr``): the evidence a weak-perspective world would give
anipose-gt         aniposelib bundle adjustment + triangulation, from the ground-truth cameras
anipose-random     the same from the ground-truth cameras with perturbed extrinsics (each
                   camera turned 15 degrees about a random axis, its centre moved by 25% of its
                   distance to the subject; seeded)
=================  ==========================================================================

The oracles rebuild each frame's :class:`~metapose_geom.synth.Scene` from the file's ground-truth
fields and call :meth:`~metapose_geom.synth.Scene.ablated_views`, so they need a file with ground
truth (``metapose-geom make-dataset`` writes it). AniPose gets the mixture means in pixels
(:func:`metapose_geom.baselines.mixture_mean_pixels`) and adjusts the cameras on the points of a
batch of consecutive frames that share their cameras (at most ``anipose_batch`` frames); in the
synthetic files every frame has its own cameras, so every batch is one frame, as in the original
study's script.

Metrics (:mod:`metapose_geom.metrics`): PMPJPE against the world pose in mm (similarity alignment
with the norm-ratio scale), NMPJPE and PCK@150 mm against the pose in the subset's first camera's
frame (the frame every method returns its pose in). ms / frame is single-core time per frame
(the solver runs on ``threads`` threads, 1 by default; AniPose runs one frame batch per process
and its time is the batch's time over its frames), warm-up (JIT compilation) excluded.

The error columns are deterministic for a given seed (the seed drives AniPose's perturbed start
and aniposelib's point resampling; S1, IR and the oracles draw nothing); the time column is not.

AniPose is the slow part (seconds per frame), so its results can be kept as they come in
(``cache``; :func:`run_evaluation` keeps them in ``OUT/anipose-cache.bin``): a run that is
interrupted, or a later run with more frames, solves only what is not there yet. A result is
found by a hash of everything it depends on (the points, the start cameras, the switches, the
seed and aniposelib's version), so a changed dataset or setting is solved afresh, and a record cut
short by a kill is dropped. A frame taken from the cache keeps the time it was measured with.

Example::

    from metapose_geom.evaluate import evaluate, format_markdown
    result = evaluate("data/synthetic_test_4cam.h5", cameras=(2, 3, 4), frames=100,
                      methods=("s1", "ir", "ir-gt-init"))
    print(format_markdown(result))
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import os
import struct
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from . import metrics
from .geometry import PerspectiveCameras, get_num_threads, set_num_threads
from .skeletons import Skeleton
from .solver import solve_batch
from .synth import Scene
from .views import Views

F64 = NDArray[np.float64]

__all__ = [
    "ANIPOSE_CACHE_NAME",
    "DEFAULT_METHODS",
    "AniPoseCache",
    "METHODS",
    "PCK_THRESHOLD_MM",
    "Evaluation",
    "MethodSpec",
    "Row",
    "camera_subsets",
    "evaluate",
    "format_markdown",
    "plot_error_vs_cameras",
    "plot_per_joint_error",
    "run_evaluation",
    "write_csv",
]

PCK_THRESHOLD_MM = 150.0


@dataclass(frozen=True)
class MethodSpec:
    """One evaluated method: a solver run on (possibly ablated) views, or AniPose from a start."""

    name: str
    label: str
    kind: Literal["solver", "anipose"]
    solver: Literal["s1", "ir"] = "ir"
    #: :meth:`Scene.ablated_views` switches (empty: the file's own evidence)
    ablation: tuple[tuple[str, bool], ...] = ()
    #: AniPose's start: the ground-truth cameras, or those with perturbed extrinsics
    start: Literal["gt", "random"] = "gt"
    color: str = "black"
    style: str = "-"


_SPECS = (
    MethodSpec("s1", "S1", "solver", solver="s1", color="tab:gray"),
    MethodSpec("ir", "S1+IR", "solver", color="tab:red"),
    MethodSpec("ir-gt-init", "IR oracle: GT init", "solver", ablation=(("gt_init", True),),
               color="tab:blue", style="--"),
    MethodSpec("ir-gt-mixtures", "IR oracle: GT mixtures", "solver", ablation=(("gt_mixtures", True),),
               color="tab:purple", style="--"),
    MethodSpec("ir-weak-labels", "IR oracle: GT mixtures at weak labels", "solver",
               ablation=(("gt_mixtures", True), ("weak_labels", True)), color="tab:cyan", style="--"),
    MethodSpec("anipose-gt", "AniPose, GT start", "anipose", start="gt", color="tab:green", style=":"),
    MethodSpec("anipose-random", "AniPose, perturbed start", "anipose", start="random", color="tab:orange",
               style=":"),
)
#: Every method :func:`evaluate` knows, by name (the one place a method name maps to code).
METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}
DEFAULT_METHODS: tuple[str, ...] = tuple(METHODS)

#: The file in the output folder of :func:`run_evaluation` that keeps AniPose's results.
ANIPOSE_CACHE_NAME = "anipose-cache.bin"
#: AniPose's perturbed start (see :func:`metapose_geom.baselines.perturb_cameras`)
ANIPOSE_ROTATION_DEGREES = 15.0
ANIPOSE_TRANSLATION_FRACTION = 0.25

_GROUND_TRUTH = ("pose3d", "cam_rot", "cam_pose3d")
_NEEDS = {"solver": _GROUND_TRUTH, "oracle": _GROUND_TRUTH + ("cam_intr", "cam_kd", "pose2d_gt"),
          "anipose": _GROUND_TRUTH + ("cam_intr", "cam_kd")}


@dataclass(frozen=True)
class Row:
    """One method at one camera count: per-evaluation errors (frames x subsets, M = evaluated).

    Frames whose prediction is not finite count as failures and are left out of the errors.
    """

    method: str
    label: str
    cameras: int
    frames: int
    subsets: int
    pmpjpe: F64  #: (M,) mm
    nmpjpe: F64  #: (M,) mm
    pck: F64  #: (M,) fraction of joints within PCK_THRESHOLD_MM
    per_joint: F64  #: (J,) mean PMPJPE per joint, mm
    ms_per_frame: float
    failures: int = 0

    def summary(self) -> dict[str, Any]:
        """The row's CSV record."""
        return {
            "method": self.method,
            "label": self.label,
            "cameras": self.cameras,
            "frames": self.frames,
            "subsets": self.subsets,
            "failures": self.failures,
            "pmpjpe_mm": _mean(self.pmpjpe),
            "pmpjpe_median_mm": float(np.median(self.pmpjpe)) if self.pmpjpe.size else float("nan"),
            "nmpjpe_mm": _mean(self.nmpjpe),
            "pck150_percent": 100 * _mean(self.pck),
            "ms_per_frame": self.ms_per_frame,
        }


def _mean(values: F64) -> float:
    return float(values.mean()) if values.size else float("nan")


@dataclass(frozen=True)
class Evaluation:
    """All rows of one run, in camera-count then method order, and what produced them."""

    rows: list[Row]
    dataset: str
    joint_names: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def row(self, method: str, cameras: int) -> Row:
        for row in self.rows:
            if row.method == method and row.cameras == cameras:
                return row
        raise KeyError(f"no row for method {method!r} with {cameras} cameras")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class _Data:
    """The fields of the first N frames of a dataset file that the methods need."""

    path: str
    skeleton: Skeleton
    num_cameras: int
    arrays: dict[str, NDArray]

    def __getitem__(self, name: str) -> NDArray:
        return self.arrays[name]

    @property
    def num_frames(self) -> int:
        return int(self.arrays["heatmaps"].shape[0])


def _load(path: str | os.PathLike, frames: int | None, kinds: set[str]) -> _Data:
    from .datasets import DatasetReader

    with DatasetReader(path) as reader:
        available = len(reader)
        if frames is None:
            frames = available
        if frames > available:
            raise ValueError(f"frames: asked for {frames}, but {path} has {available} committed frames")
        if frames < 1:
            raise ValueError(f"frames: expected at least 1 frame, {path} has {available}")
        needed = sorted({name for kind in kinds for name in _NEEDS[kind]})
        missing = [name for name in needed if name not in reader.fields]
        if missing:
            raise ValueError(f"{path}: the requested methods need the ground-truth field(s) {missing}, which the "
                             f"file lacks (metapose-geom make-dataset writes them)")
        wanted = {"heatmaps", "pose3d_epi_pred", "bboxes", *needed}
        wanted |= {name for name in ("cam_image_size", "occluded", "confused") if name in reader.fields}
        arrays = {name: reader.read(name, 0, frames) for name in sorted(wanted)}
        return _Data(str(path), reader.skeleton, reader.num_cameras, arrays)


def camera_subsets(num_cameras: int, count: int, mode: Literal["first", "all"] = "first") -> list[tuple[int, ...]]:
    """The camera subsets of size ``count`` out of ``num_cameras``: ``[(0, .., count-1)]`` for
    ``"first"``, every combination in lexicographic order for ``"all"``."""
    if mode not in ("first", "all"):
        raise ValueError(f"subsets: expected 'first' or 'all', got {mode!r}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 2 <= count <= num_cameras:
        raise ValueError(f"cameras: expected camera counts in [2, {num_cameras}] (the file's cameras), got {count!r}")
    if mode == "first":
        return [tuple(range(count))]
    return list(itertools.combinations(range(num_cameras), count))


def _cameras(data: _Data, frame: int, subset: tuple[int, ...]) -> PerspectiveCameras:
    """Frame ``frame``'s ground-truth cameras of ``subset`` in OpenCV form, ``t = -R c``."""
    index = list(subset)
    rotation = data["cam_rot"][frame, index]
    translation = -np.einsum("cij,cj->ci", rotation, data["cam_pose3d"][frame, index])
    intrinsics = data["cam_intr"][frame, index]
    if "cam_image_size" in data.arrays:
        image_size = data["cam_image_size"][frame, index]
    else:  # not in the original release: the principal point is near the centre
        image_size = 2 * intrinsics[:, 2:]
    return PerspectiveCameras(rotation, translation, intrinsics, data["cam_kd"][frame, index], image_size)


def _scene(data: _Data, frame: int, subset: tuple[int, ...]) -> Scene:
    """Frame ``frame`` seen by ``subset`` as a :class:`Scene`, rebuilt from the file's fields."""
    index = list(subset)
    cameras = _cameras(data, frame, subset)
    pose3d = data["pose3d"][frame]
    boxes = data["bboxes"][frame, index]
    size = boxes[:, 2:].max(axis=1)
    flags = {}
    for name in ("occluded", "confused"):
        flags[name] = data[name][frame, index] if name in data.arrays else np.zeros(boxes.shape[:1] + pose3d.shape[:1],
                                                                                   dtype=bool)
    return Scene(
        pose3d=pose3d,
        rotation=cameras.rotation,
        translation=cameras.translation,
        intrinsics=cameras.intrinsics,
        distortion=cameras.distortion,
        image_size=cameras.image_size,
        pose3d_cam=np.einsum("cab,jb->cja", cameras.rotation, pose3d) + cameras.translation[:, None, :],
        pose2d=data["pose2d_gt"][frame, index] * size[:, None, None] + boxes[:, None, :2],
        boxes=boxes,
        mixtures=data["heatmaps"][frame, index],
        mono3d=data["pose3d_epi_pred"][frame, index],
        occluded=flags["occluded"],
        confused=flags["confused"],
        skeleton=data.skeleton,
    )


def _views(data: _Data, frame: int, subset: tuple[int, ...], spec: MethodSpec) -> Views:
    if spec.ablation:
        return _scene(data, frame, subset).ablated_views(**dict(spec.ablation))
    index = list(subset)
    names = tuple(f"cam{c}" for c in subset)
    return Views(data["heatmaps"][frame, index], data["pose3d_epi_pred"][frame, index], data["bboxes"][frame, index],
                 names, data.skeleton)


def _truth(data: _Data, frames: int, subset: tuple[int, ...]) -> tuple[F64, F64]:
    """World pose (n, J, 3) and the pose in the subset's first camera (n, J, 3), mm."""
    world = data["pose3d"][:frames]
    first = subset[0]
    rotation = data["cam_rot"][:frames, first]
    in_camera = np.einsum("nab,njb->nja", rotation, world - data["cam_pose3d"][:frames, first][:, None, :])
    return world, in_camera


# --------------------------------------------------------------------------- methods


def _run_solver(data: _Data, spec: MethodSpec, frames: int, subset: tuple[int, ...]) -> tuple[F64, float]:
    views = [_views(data, i, subset, spec) for i in range(frames)]
    solve_batch(views[:1], method=spec.solver, progress=False)  # warm-up, excluded
    start = time.perf_counter()
    solutions = solve_batch(views, method=spec.solver, progress=False)
    elapsed = time.perf_counter() - start
    return np.stack([solution.pose3d for solution in solutions]), elapsed


@dataclass(frozen=True)
class _AniPoseTask:
    """One AniPose batch: frames ``first:first + n`` sharing the cameras ``start``."""

    first: int
    points: F64  #: (n, k, J, 2) px
    start: PerspectiveCameras
    adjust_intrinsics: bool
    seed: int


_WARM = False  # has this process run aniposelib once (JIT compilation of its kernels)?


def _run_anipose_task(task: _AniPoseTask) -> tuple[int, F64, float]:
    """-> (first frame, pose (n, J, 3) in camera 0, seconds). The first call in a process is run
    twice and the first run, which compiles aniposelib's numba and jax kernels, is not timed. A
    batch aniposelib fails on (:class:`~metapose_geom.baselines.AniPoseError`) gives NaN poses,
    which the table counts as failures, and the time until the failure."""
    from .baselines import AniPoseError, anipose_solve

    global _WARM
    for _ in range(1 if _WARM else 2):
        try:
            result = anipose_solve(task.points, task.start, adjust_intrinsics=task.adjust_intrinsics, seed=task.seed)
            pose, seconds = result.pose3d, result.seconds
        except AniPoseError as error:
            pose, seconds = np.full(task.points.shape[:1] + task.points.shape[2:3] + (3,), np.nan), error.seconds
        _WARM = True
    return task.first, pose, seconds


def _anipose_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from . import baselines

    found = [f"adapter {baselines.ADAPTER_VERSION}"]
    for package in ("aniposelib", "opencv-contrib-python", "opencv-python", "opencv-python-headless", "scipy"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found)


class AniPoseCache:
    """AniPose results on disk, appended one record per batch as they come in.

    A record is ``key (32 bytes) | n, J (int64) | seconds (float64) | pose (n, J, 3) float64``,
    little-endian; ``key`` is :meth:`key` of the batch. Opening reads every whole record and cuts
    off a partial one at the end (a run killed while writing), so appends stay aligned.
    """

    MAGIC = b"metapose-geom anipose cache 1\n"
    _HEAD = struct.Struct("<32sqqd")

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.results: dict[bytes, tuple[F64, float]] = {}
        self.hits = 0  #: batches :meth:`get` found
        self._versions = _anipose_versions()
        blob = self.path.read_bytes() if self.path.exists() else b""
        if len(blob) < len(self.MAGIC) and self.MAGIC.startswith(blob):  # new, or killed while starting it
            self.path.write_bytes(self.MAGIC)
            blob = self.MAGIC
        if not blob.startswith(self.MAGIC):
            raise ValueError(f"cache: {self.path} is not an AniPose cache of metapose-geom (delete it or pass another)")
        offset = len(self.MAGIC)
        while offset + self._HEAD.size <= len(blob):
            key, n, joints, seconds = self._HEAD.unpack_from(blob, offset)
            end = offset + self._HEAD.size + 8 * 3 * n * joints
            if n < 1 or joints < 1 or end > len(blob):
                break
            pose = np.frombuffer(blob, dtype="<f8", count=3 * n * joints, offset=offset + self._HEAD.size)
            self.results[key] = (pose.reshape(n, joints, 3).astype(np.float64), float(seconds))
            offset = end
        if offset < len(blob):  # a record cut short: drop it
            with self.path.open("r+b") as handle:
                handle.truncate(offset)
        self._handle = self.path.open("ab")
        try:
            import fcntl

            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): no lock
            pass
        except OSError:
            self._handle.close()
            raise ValueError(f"cache: {self.path} is in use by another run (give each run its own --cache)") from None

    def key(self, task: _AniPoseTask) -> bytes:
        """SHA-256 of everything the batch's result depends on: the points, the start cameras, the
        switches, the seed, and the versions of this adapter, aniposelib, OpenCV and scipy."""
        digest = hashlib.sha256(f"{self._versions}; {task.adjust_intrinsics}; {task.seed}".encode())
        for array in (task.points, *task.start):
            array = np.ascontiguousarray(array, dtype="<f8")
            digest.update(repr(array.shape).encode())
            digest.update(array.tobytes())
        return digest.digest()

    def get(self, key: bytes, task: _AniPoseTask) -> tuple[F64, float] | None:
        """(pose (n, J, 3), seconds) of the batch ``task`` whose :meth:`key` is ``key``, if solved before."""
        found = self.results.get(key)
        if found is None or found[0].shape[:2] != (task.points.shape[0], task.points.shape[2]):
            return None
        self.hits += 1
        return found

    def put(self, key: bytes, pose: F64, seconds: float) -> None:
        """Append the result of the batch whose :meth:`key` is ``key`` and flush it to disk."""
        pose = np.ascontiguousarray(pose, dtype="<f8")
        n, joints = pose.shape[:2]
        self._handle.write(self._HEAD.pack(key, n, joints, float(seconds)) + pose.tobytes())
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.results[key] = (pose.astype(np.float64), float(seconds))

    def __len__(self) -> int:
        return len(self.results)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> AniPoseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _same_cameras(data: _Data, a: int, b: int) -> bool:
    return all(np.array_equal(data[name][a], data[name][b]) for name in ("cam_rot", "cam_pose3d", "cam_intr", "cam_kd"))


def _anipose_tasks(data: _Data, spec: MethodSpec, frames: int, subset: tuple[int, ...], seed: int,
                   batch: int, adjust_intrinsics: bool) -> list[_AniPoseTask]:
    from .baselines import mixture_mean_pixels, perturb_cameras

    index = list(subset)
    points = mixture_mean_pixels(data["heatmaps"][:frames, index], data["bboxes"][:frames, index])
    tasks, first = [], 0
    while first < frames:
        stop = first + 1
        while stop < frames and stop - first < batch and _same_cameras(data, first, stop):
            stop += 1
        start = _cameras(data, first, subset)
        key = [seed, first, *subset]
        if spec.start == "random":
            subject = data["pose3d"][first:stop].mean(axis=(0, 1))
            start = perturb_cameras(start, subject, np.random.default_rng(key), ANIPOSE_ROTATION_DEGREES,
                                    ANIPOSE_TRANSLATION_FRACTION)
        aniposelib_seed = int(np.random.SeedSequence(key).generate_state(1)[0])
        tasks.append(_AniPoseTask(first, points[first:stop], start, adjust_intrinsics, aniposelib_seed))
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
def _anipose_pool(workers: int) -> Iterator[Any]:
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


def _run_anipose_all(tasks: list[_AniPoseTask], frames_total: int, joints: int, pool, bar,
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
    results = map(_run_anipose_task, todo) if pool is None else pool.map(_run_anipose_task, todo, chunksize=2)
    for task, key, (first, batch_pose, batch_seconds) in zip(todo, keys, results):
        if cache is not None:
            cache.put(key, batch_pose, batch_seconds)
        store(first, batch_pose, batch_seconds)
    return pose, seconds


def _score(method: str, label: str, cameras: int, frames: int, subsets: int, prediction: F64, world: F64,
           in_camera: F64, ms_per_frame: float) -> Row:
    finite = np.isfinite(prediction).all(axis=(1, 2))
    prediction, world, in_camera = prediction[finite], world[finite], in_camera[finite]
    joints = world.shape[1]
    if prediction.shape[0]:
        pmpjpe_per_joint = metrics.pmpjpe(prediction, world, per_joint=True)
        nmpjpe = metrics.nmpjpe(prediction, in_camera)
        pck = metrics.pck(prediction, in_camera, threshold=PCK_THRESHOLD_MM)
    else:
        pmpjpe_per_joint, nmpjpe, pck = np.empty((0, joints)), np.empty(0), np.empty(0)
    per_joint = pmpjpe_per_joint.mean(axis=0) if pmpjpe_per_joint.shape[0] else np.full(joints, np.nan)
    return Row(method, label, cameras, frames, subsets, pmpjpe_per_joint.mean(axis=1), nmpjpe, pck, per_joint,
               ms_per_frame, failures=int((~finite).sum()))


# --------------------------------------------------------------------------- the run


def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def evaluate(
    dataset: str | os.PathLike,
    cameras: Sequence[int] = (2, 3, 4),
    frames: int | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    seed: int = 0,
    subsets: Literal["first", "all"] = "first",
    anipose_frames: int | None = None,
    anipose_batch: int = 100,
    anipose_adjust_intrinsics: bool = True,
    workers: int = 1,
    threads: int = 1,
    progress: bool = True,
    cache: str | os.PathLike | None = None,
) -> Evaluation:
    """Evaluate ``methods`` on the first ``frames`` frames (all when None) of a dataset file.

    Args:
        dataset: an HDF5 file of :mod:`metapose_geom.datasets` with ground truth.
        cameras: camera counts; each is evaluated on :func:`camera_subsets` of the file's cameras.
        methods: names in :data:`METHODS`, in the order the rows should have.
        seed: seeds AniPose's perturbed start and aniposelib's resampling.
        subsets: ``"first"`` (the first k cameras) or ``"all"`` (every k-subset, averaged).
        anipose_frames: evaluate the AniPose methods on the first this many frames only (None: all).
        anipose_batch: most frames (consecutive, sharing their cameras) adjusted together.
        anipose_adjust_intrinsics: let aniposelib refine focal length and k1 (its default and the
            original study's); False refines the extrinsics only.
        workers: processes for AniPose (each single-threaded); 1 runs in this process.
        threads: the compiled solver's threads while timing (1: per-core figures; 0: all cores).
        progress: show a progress bar.
        cache: a file for AniPose's results (:class:`AniPoseCache`): batches found there are not
            solved again, new ones are added as they finish. None keeps nothing.

    Returns:
        An :class:`Evaluation` with one :class:`Row` per camera count and method.
    """
    start_time = time.perf_counter()
    methods = list(methods)
    if not methods:
        raise ValueError("methods: expected at least one method")
    unknown = [name for name in methods if name not in METHODS]
    if unknown or len(set(methods)) != len(methods):
        raise ValueError(f"methods: expected distinct names from {list(METHODS)}, got {methods}")
    cameras = [int(_check_int(count, "cameras", 2)) for count in cameras]
    if not cameras or len(set(cameras)) != len(cameras):
        raise ValueError(f"cameras: expected distinct camera counts, got {cameras}")
    seed = _check_int(seed, "seed", 0)
    if frames is not None:
        _check_int(frames, "frames", 1)
    if anipose_frames is not None:
        _check_int(anipose_frames, "anipose_frames", 1)
    anipose_batch = _check_int(anipose_batch, "anipose_batch", 1)
    workers = _check_int(workers, "workers", 1)
    threads = _check_int(threads, "threads", 0)
    if subsets not in ("first", "all"):
        raise ValueError(f"subsets: expected 'first' or 'all', got {subsets!r}")
    specs = [METHODS[name] for name in methods]
    kinds = {"anipose" if spec.kind == "anipose" else ("oracle" if spec.ablation else "solver") for spec in specs}
    if "anipose" in kinds:
        from .baselines import require_aniposelib

        require_aniposelib()  # fail before any work, with the install command
    data = _load(dataset, frames, kinds)
    if "oracle" in kinds and data.skeleton.num_joints != 17:
        raise ValueError(f"the IR oracles need the H36M-17 skeleton, the file has {data.skeleton.name!r}")
    plan = {count: camera_subsets(data.num_cameras, count, subsets) for count in cameras}
    count_frames = {spec.name: min(data.num_frames, anipose_frames or data.num_frames) if spec.kind == "anipose"
                    else data.num_frames for spec in specs}
    total = sum(len(subset_list) * count_frames[spec.name] for subset_list in plan.values() for spec in specs)

    from tqdm.auto import tqdm

    threads_before = get_num_threads()
    set_num_threads(threads)
    rows = []
    try:
        with tqdm(total=total, desc="evaluate", unit="frame", disable=not progress, dynamic_ncols=True) as bar, \
                (AniPoseCache(cache) if cache is not None and "anipose" in kinds else nullcontext()) as store, \
                _anipose_pool(workers if "anipose" in kinds else 1) as pool:
            for count, subset_list in plan.items():
                for spec in specs:
                    n = count_frames[spec.name]
                    bar.set_postfix_str(f"{spec.name}, {count} cameras")
                    predictions, worlds, in_cameras, seconds = [], [], [], 0.0
                    for subset in subset_list:
                        if spec.kind == "anipose":
                            tasks = _anipose_tasks(data, spec, n, subset, seed, anipose_batch, anipose_adjust_intrinsics)
                            pose, per_frame = _run_anipose_all(tasks, n, data.skeleton.num_joints, pool, bar, store)
                            seconds += float(per_frame.sum())
                        else:
                            pose, elapsed = _run_solver(data, spec, n, subset)
                            seconds += elapsed
                            bar.update(n)
                        world, in_camera = _truth(data, n, subset)
                        predictions.append(pose)
                        worlds.append(world)
                        in_cameras.append(in_camera)
                    rows.append(_score(
                        spec.name, spec.label, count, n, len(subset_list), np.concatenate(predictions),
                        np.concatenate(worlds), np.concatenate(in_cameras), 1e3 * seconds / (n * len(subset_list)),
                    ))
    finally:
        set_num_threads(threads_before)
    settings = {
        "frames": data.num_frames, "cameras": cameras, "methods": methods, "seed": seed, "subsets": subsets,
        "anipose_frames": anipose_frames, "anipose_batch": anipose_batch,
        "anipose_adjust_intrinsics": anipose_adjust_intrinsics, "workers": workers, "threads": threads,
    }
    if cache is not None and "anipose" in kinds:
        settings["anipose_batches_from_cache"] = store.hits
    return Evaluation(rows, str(dataset), data.skeleton.joints, settings, time.perf_counter() - start_time)


# --------------------------------------------------------------------------- outputs


_HEADER = ("| method | cameras | frames | PMPJPE mm | PMPJPE median mm | NMPJPE mm | PCK@150 % | ms / frame |\n"
           "|---|---:|---:|---:|---:|---:|---:|---:|")


def format_markdown(result: Evaluation) -> str:
    """The Markdown table: one line per camera count and method (frames x subsets when > 1)."""
    lines = [_HEADER]
    for row in result.rows:
        record = row.summary()
        frames = f"{row.frames}" if row.subsets == 1 else f"{row.frames} x {row.subsets}"
        if row.failures:
            frames += f" ({row.failures} failed)"
        lines.append(
            f"| {row.label} | {row.cameras} | {frames} | {record['pmpjpe_mm']:.1f} | {record['pmpjpe_median_mm']:.1f} | "
            f"{record['nmpjpe_mm']:.1f} | {record['pck150_percent']:.1f} | {_format_ms(row.ms_per_frame)} |"
        )
    return "\n".join(lines)


def _format_ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.0f}"


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


def _methods_in_order(result: Evaluation) -> list[str]:
    seen: dict[str, None] = {}
    for row in result.rows:
        seen.setdefault(row.method, None)
    return list(seen)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_error_vs_cameras(result: Evaluation, path: str | os.PathLike) -> Path:
    """PMPJPE, NMPJPE and PCK@150 against the camera count, one line per method."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(16, 5.8))
    panels = (("pmpjpe_mm", "PMPJPE (mm), mean"), ("nmpjpe_mm", "NMPJPE (mm), mean"),
              ("pck150_percent", "PCK@150 mm (%)"))
    counts = sorted({row.cameras for row in result.rows})
    for ax, (key, title) in zip(axes, panels):
        for method in _methods_in_order(result):
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
    return _save(figure, plt, path)


def plot_per_joint_error(result: Evaluation, path: str | os.PathLike) -> Path:
    """Mean PMPJPE per joint, one panel per camera count, one line per method."""
    plt = _pyplot()
    counts = sorted({row.cameras for row in result.rows})
    figure, axes = plt.subplots(1, len(counts), figsize=(6 * len(counts), 5.8), sharey=True, squeeze=False)
    joints = np.arange(len(result.joint_names))
    for ax, count in zip(axes[0], counts):
        for method in _methods_in_order(result):
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
    return _save(figure, plt, path)


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


def _save(figure, plt, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def run_evaluation(dataset: str | os.PathLike, out: str | os.PathLike = "metapose-evaluation",
                   command: str | None = None, **kwargs) -> Evaluation:
    """:func:`evaluate`, then write ``out/evaluation.md`` (settings and table), ``out/evaluation.csv``,
    ``out/error_vs_cameras.png`` and ``out/per_joint_error.png``; prints the table. AniPose's
    results are kept in ``out/anipose-cache.bin`` unless ``cache`` says otherwise (None: nowhere)."""
    out = Path(out)
    kwargs.setdefault("cache", out / ANIPOSE_CACHE_NAME)
    result = evaluate(dataset, **kwargs)
    out.mkdir(parents=True, exist_ok=True)
    table = format_markdown(result)
    settings = ", ".join(f"{name} {value}" for name, value in result.settings.items())
    lines = [f"# Evaluation of {Path(result.dataset).name}", ""]
    if command:
        lines += ["```bash", command, "```", ""]
    lines += [f"Settings: {settings}. Run time {result.seconds:.0f} s.", "", table, ""]
    cached = result.settings.get("anipose_batches_from_cache", 0)
    if cached:
        lines += [f"AniPose's ms / frame includes {cached} batch(es) taken from the cache, timed when they were "
                  "first solved; run with --no-cache (cache=None) to time every frame now.", ""]
    (out / "evaluation.md").write_text("\n".join(lines))
    write_csv(result, out / "evaluation.csv")
    plot_error_vs_cameras(result, out / "error_vs_cameras.png")
    plot_per_joint_error(result, out / "per_joint_error.png")
    print(table)
    print(f"evaluate: {len(result.rows)} rows in {result.seconds:.1f} s; wrote {out}/evaluation.md, evaluation.csv, "
          "error_vs_cameras.png, per_joint_error.png")
    return result
