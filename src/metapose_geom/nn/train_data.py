"""Stage-2 training data: dataset files held in memory, the examples of an epoch, and their batches.

An *example* is one frame of one training file seen by an ordered subset of its cameras: a random
subset of ``k`` cameras, ``camera_min <= k <= camera_max``, in random order (the camera-permutation
augmentation). A batch holds examples of one camera count (its tensors have one shape). Which
examples an epoch holds depends on the seed and the epoch number only (:func:`epoch_plan`), so an
epoch's order is reproduced without any saved random state; the validation examples depend on the
seed only (:func:`validation_plan`). Frames are held out by index, the same in every file: from
``min(N over the files) - val_frames`` on, every file's frames validate and are never trained on.
Files that ``make-dataset`` builds for several camera counts share their scenes' poses frame by
frame (one scene seed per split), so holding out the same indices everywhere keeps a held-out pose
out of training in every file, whatever the files' lengths.

Arrays are stored in float32 (mixtures (N, C, J, K, 4), monocular guesses (N, C, J, 3) and 2D
labels (N, C, J, 2), all box units; the 3D pose (N, J, 3) in mm, used for logging only). Stage 1
(``core.stage1``) runs on each batch's camera subset in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .._core_loader import core as _core
from ..skeletons import Skeleton

__all__ = ["Batch", "BatchPlan", "FileData", "TeacherCache", "TrainingData", "epoch_plan", "load_training_data",
           "make_batch", "standardisation_plan", "validation_plan"]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

#: the fields a training file must have (``pose3d`` is read when present, for logging only)
TRAINING_FIELDS = ("heatmaps", "pose3d_epi_pred", "pose2d_gt")

# the first key of each random stream: epochs, validation, standardisation
_EPOCH_STREAM, _VALIDATION_STREAM, _STANDARDISATION_STREAM = 0, 1, 2


@dataclass(frozen=True)
class FileData:
    """One training file in memory: N frames of C cameras; frames ``[0, train_frames)`` train, the
    rest validate."""

    path: str
    num_cameras: int
    train_frames: int
    mixtures: F32  #: (N, C, J, K, 4) ``[weight, mu_x, mu_y, variance]``, box units
    mono3d: F32  #: (N, C, J, 3) monocular guesses, box units
    labels: F32  #: (N, C, J, 2) the 2D labels ``pose2d_gt``, box units
    pose3d: F32 | None  #: (N, J, 3) mm, logging only; None when the file has none

    @property
    def num_frames(self) -> int:
        return int(self.mixtures.shape[0])


@dataclass(frozen=True)
class TrainingData:
    """Every training file, with the skeleton and component count they share."""

    files: tuple[FileData, ...]
    skeleton: Skeleton
    num_components: int

    @property
    def num_joints(self) -> int:
        return self.skeleton.num_joints

    @property
    def max_cameras(self) -> int:
        return max(f.num_cameras for f in self.files)

    def fingerprint(self) -> list[list]:
        """``[[path, frames, cameras], ...]``: what a checkpoint records so a resume sees the same data."""
        return [[f.path, f.num_frames, f.num_cameras] for f in self.files]

    def bones(self) -> tuple[I64, F64]:
        """The skeleton's bones (nB, 2) and its rest pose's bone lengths (nB,)."""
        return (np.array(self.skeleton.bones, dtype=np.int64),
                np.asarray(self.skeleton.bone_lengths(self.skeleton.rest_pose()), dtype=np.float64))


def load_training_data(paths: Sequence[str], val_frames: int, camera_min: int) -> TrainingData:
    """Read the training fields of every file into memory (float32).

    Files are opened without HDF5 locking, so a file another process is still writing can be read:
    its committed frames are used. ValueError naming the file for a missing field, fewer than
    ``val_frames + 1`` frames, fewer than ``camera_min`` cameras, or a skeleton or component count
    that differs from the first file's; FileNotFoundError when a file is absent.
    """
    from ..datasets import DatasetReader

    read_files: list[dict] = []
    skeleton: Skeleton | None = None
    components = 0
    for path in paths:
        with DatasetReader(path, locking=False) as reader:
            missing = [name for name in TRAINING_FIELDS if name not in reader.fields]
            if missing:
                raise ValueError(f"{path}: training needs the field(s) {missing}; the file has {list(reader.fields)}")
            if skeleton is None:
                skeleton, components = reader.skeleton, reader.num_components
            elif reader.skeleton.name != skeleton.name or reader.num_components != components:
                raise ValueError(f"{path}: skeleton {reader.skeleton.name!r} with K={reader.num_components}, but "
                                 f"{paths[0]} has {skeleton.name!r} with K={components}; train on one kind of file")
            if reader.num_cameras < camera_min:
                raise ValueError(f"{path}: {reader.num_cameras} cameras, fewer than the smallest camera count "
                                 f"{camera_min} (--cameras); leave the file out or lower the count")
            frames = len(reader)
            if frames <= val_frames:
                raise ValueError(f"{path}: {frames} frames, but {val_frames} are held out for validation; at least "
                                 f"one must be left for training (lower val_frames)")
            read = lambda name: np.ascontiguousarray(reader.read(name, 0, frames), dtype=np.float32)  # noqa: E731
            read_files.append(dict(
                path=str(Path(path).resolve()), num_cameras=reader.num_cameras,
                mixtures=read("heatmaps"), mono3d=read("pose3d_epi_pred"), labels=read("pose2d_gt"),
                pose3d=read("pose3d") if "pose3d" in reader.fields else None,
            ))
    if not read_files:
        raise ValueError("train_files: expected at least one dataset file")
    # one hold-out boundary for every file (see the module docstring)
    boundary = min(part["mixtures"].shape[0] for part in read_files) - val_frames
    files = [FileData(train_frames=boundary, **part) for part in read_files]
    assert skeleton is not None
    return TrainingData(tuple(files), skeleton, components)


# --------------------------------------------------------------------------- which examples


@dataclass(frozen=True)
class BatchPlan:
    """The examples of one batch, all with k cameras: ``file`` (b,), ``frame`` (b,), ``cameras``
    (b, k) camera indices into each frame's cameras, in the order the model sees them."""

    file: I64
    frame: I64
    cameras: I64

    def __len__(self) -> int:
        return int(self.file.shape[0])

    @property
    def num_cameras(self) -> int:
        return int(self.cameras.shape[1])


def _subsets(rng: np.random.Generator, counts: I64, k: int) -> I64:
    """For examples whose frames have ``counts`` (b,) cameras: a random ordered k-subset of each (b, k).

    One uniform key per camera slot (the same number of draws whatever the counts); the slots a
    frame lacks sort last."""
    keys = rng.random((counts.shape[0], int(counts.max())))
    keys[np.arange(keys.shape[1])[None, :] >= counts[:, None]] = np.inf
    return np.argsort(keys, axis=1, kind="stable")[:, :k].astype(np.int64)


def _camera_counts(data: TrainingData, camera_min: int, camera_max: int) -> list[int]:
    return list(range(camera_min, min(camera_max, data.max_cameras) + 1))


def _sample_batches(data: TrainingData, rng: np.random.Generator, examples: int, batch_size: int,
                    camera_min: int, camera_max: int) -> list[BatchPlan]:
    """``examples`` training examples in batches of ``batch_size`` (the last may be smaller): each
    batch draws its camera count k uniformly, then frames uniformly from the training frames of
    the files with at least k cameras, then each frame's ordered camera subset."""
    counts = np.array([f.num_cameras for f in data.files], dtype=np.int64)
    sizes = np.array([f.train_frames for f in data.files], dtype=np.int64)
    choices = _camera_counts(data, camera_min, camera_max)
    plans = []
    for start in range(0, examples, batch_size):
        size = min(batch_size, examples - start)
        k = int(choices[rng.integers(len(choices))])
        eligible = np.flatnonzero(counts >= k)
        bounds = np.cumsum(sizes[eligible])
        flat = rng.integers(0, bounds[-1], size=size)
        which = np.searchsorted(bounds, flat, side="right")
        file = eligible[which]
        frame = flat - np.concatenate([[0], bounds[:-1]])[which]
        plans.append(BatchPlan(file.astype(np.int64), frame.astype(np.int64), _subsets(rng, counts[file], k)))
    return plans


def epoch_plan(data: TrainingData, epoch: int, *, seed: int, examples: int, batch_size: int, camera_min: int,
               camera_max: int) -> list[BatchPlan]:
    """The batches of training epoch ``epoch`` (counted over all stages): a function of the seed,
    the epoch and the data's shape only."""
    rng = np.random.default_rng([seed, _EPOCH_STREAM, epoch])
    return _sample_batches(data, rng, examples, batch_size, camera_min, camera_max)


def standardisation_plan(data: TrainingData, *, seed: int, examples: int, batch_size: int, camera_min: int,
                         camera_max: int) -> list[BatchPlan]:
    """The training examples each stage's input standardisation is measured on (seed only)."""
    rng = np.random.default_rng([seed, _STANDARDISATION_STREAM])
    return _sample_batches(data, rng, examples, batch_size, camera_min, camera_max)


def validation_plan(data: TrainingData, *, seed: int, batch_size: int, camera_min: int,
                    camera_max: int) -> list[BatchPlan]:
    """Every held-out frame once, each with a camera count drawn uniformly from those its file has
    within ``[camera_min, camera_max]`` and a random ordered subset; batches of one count."""
    rng = np.random.default_rng([seed, _VALIDATION_STREAM])
    file_parts, frame_parts, k_parts = [], [], []
    for index, data_file in enumerate(data.files):
        frames = np.arange(data_file.train_frames, data_file.num_frames, dtype=np.int64)
        highest = min(camera_max, data_file.num_cameras)
        file_parts.append(np.full(frames.shape, index, dtype=np.int64))
        frame_parts.append(frames)
        k_parts.append(rng.integers(camera_min, highest + 1, size=frames.shape[0]))
    file, frame, k = (np.concatenate(part) for part in (file_parts, frame_parts, k_parts))
    counts = np.array([f.num_cameras for f in data.files], dtype=np.int64)[file]
    order = _subsets(rng, counts, int(counts.max()))  # a full random order per frame; the first k are used
    plans = []
    for count in np.unique(k):
        rows = np.flatnonzero(k == count)
        for start in range(0, rows.shape[0], batch_size):
            chosen = rows[start:start + batch_size]
            plans.append(BatchPlan(file[chosen], frame[chosen], order[chosen, :count]))
    return plans


# --------------------------------------------------------------------------- the arrays of a batch


@dataclass(frozen=True)
class Batch:
    """A batch's arrays (b examples, k cameras)."""

    plan: BatchPlan
    mixtures: F32  #: (b, k, J, K, 4)
    labels: F32  #: (b, k, J, 2)
    x0: F64  #: (b, P) stage 1's solution for the subset
    pose3d: F64 | None  #: (b, J, 3) mm, or None when any example's file has none (logging only)


def make_batch(data: TrainingData, plan: BatchPlan) -> Batch:
    """Gather a batch's arrays (vectorised per file) and run stage 1 on its camera subsets."""
    b, k = len(plan), plan.num_cameras
    J, K = data.num_joints, data.num_components
    mixtures = np.empty((b, k, J, K, 4), dtype=np.float32)
    mono3d = np.empty((b, k, J, 3), dtype=np.float64)
    labels = np.empty((b, k, J, 2), dtype=np.float32)
    pose3d: F64 | None = np.empty((b, J, 3), dtype=np.float64)
    for index in np.unique(plan.file):
        rows = np.flatnonzero(plan.file == index)
        source = data.files[index]
        frames, cameras = plan.frame[rows, None], plan.cameras[rows]
        mixtures[rows] = source.mixtures[frames, cameras]
        mono3d[rows] = source.mono3d[frames, cameras]
        labels[rows] = source.labels[frames, cameras]
        if source.pose3d is None:
            pose3d = None
        elif pose3d is not None:
            pose3d[rows] = source.pose3d[plan.frame[rows]]
    return Batch(plan, mixtures, labels, _core.stage1(mono3d), pose3d)


class TeacherCache:
    """The refiner's solution (IR, ``core.refine`` with the solver's default options) from each
    example's own stage-1 start, kept per (file, frame, ordered cameras) up to ``capacity`` entries.

    The refiner treats every frame alone, so a cached solution is the same bits as a recomputed one
    and the cache never changes what training computes, only how fast."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._solutions: dict[tuple[int, ...], F64] = {}

    def __len__(self) -> int:
        return len(self._solutions)

    def solutions(self, data: TrainingData, batch: Batch) -> F64:
        """(b, P) float64 IR solutions of the batch's examples."""
        from ..solver.options import RefineOptions

        plan = batch.plan
        keys = [(int(f), int(fr), *map(int, cams)) for f, fr, cams in zip(plan.file, plan.frame, plan.cameras)]
        missing = [i for i, key in enumerate(keys) if key not in self._solutions]
        result = np.empty_like(batch.x0)
        if missing:
            options = RefineOptions()
            bones, reference = data.bones()
            rows = np.array(missing)
            references = np.broadcast_to(reference, (rows.shape[0], reference.shape[0])).copy()
            solved, *_ = _core.refine(
                np.ascontiguousarray(batch.mixtures[rows], dtype=np.float64), np.ascontiguousarray(batch.x0[rows]),
                bones, references, 0.0, options.steps, options.learning_rate, options.beta1, options.beta2,
                options.epsilon, 0,
            )
            result[rows] = solved
            for row, solution in zip(missing, solved):
                if len(self._solutions) < self.capacity:
                    self._solutions[keys[row]] = solution
        for i, key in enumerate(keys):
            if key in self._solutions:
                result[i] = self._solutions[key]
        return result


def batch_count(examples: int, batch_size: int) -> int:
    """Batches per epoch: ``ceil(examples / batch_size)``."""
    return math.ceil(examples / batch_size)
