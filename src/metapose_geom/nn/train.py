"""Training stage 2 from 2D labels: :class:`TrainConfig` (the recipe) and :func:`train`.

Stage i is ``x_{i+1} = x_i + f_i(inputs(x_i))`` (:mod:`metapose_geom.nn.model`), started from
stage 1 (S1) on each example's camera subset. Stages are trained one at a time: before stage i
trains, its input standardisation is measured on training examples (per feature mean and standard
deviation of :func:`~metapose_geom.nn.model.stage_inputs`, the standard deviation floored at
1e-6); stage i then trains with the earlier stages frozen and its inputs detached. After every
epoch the held-out frames give the *validation criterion* ("fwd": the reprojection MSE against
the 2D labels, or "objective": the refiner objective; never a 3D error). A stage's best epoch is
kept only when it beats the best of the stages before it (stage 0 must beat S1 alone); the first
stage that does not ends the training.

The loss of a batch is ``sum_name weight[name] * term[name]`` over (each a mean over examples):

- ``fwd``: the reprojection MSE, mean over cameras and joints of ``|p_cj - label_cj|^2`` with
  ``p`` the weak projections of the stage's output and ``label`` the 2D labels ``pose2d_gt``
  (box units squared);
- ``objective``: the refiner objective of the output (self-supervised: no labels);
- ``teacher``: the distance to the refiner's solution (IR) from the same S1 start: mean squared
  joint error of the pose + mean over cameras of the squared log-scale difference, of the squared
  shift error, and of ``|R R_ref^T - I|_F^2``;
- ``bone``: ``|| l / mean(l) - l_ref / mean(l_ref) ||`` of the output pose's bone lengths against
  the skeleton's rest pose.

Several processes (``torchrun --nproc_per_node=N``, on one machine or several): the trainer joins
the process group torchrun describes (``WORLD_SIZE`` > 1; gloo for the CPU tensors it trains on,
with nccl beside it for CUDA tensors where there are GPUs), wraps the trained stage in
:class:`~torch.nn.parallel.DistributedDataParallel` and splits every batch: each rank takes its
slice of the *same* global batch (the examples of :func:`~metapose_geom.nn.train_data.epoch_plan`,
cut in ``N`` nearly equal consecutive parts) and scales its loss by its share, so the averaged
gradient is the one-process gradient of the whole batch and the weights equal one process's to
float rounding. Rank 0 measures each stage's input standardisation and broadcasts it; every rank
validates its slice of each held-out batch and the sums are reduced, then rank 0's value is
broadcast, so every rank takes the same decisions. Only rank 0 writes files; a checkpoint resumes
under any process count. One process (no torchrun) runs exactly the code it always ran.

Files written into ``out``: ``checkpoint.pt`` after every epoch (atomically: everything needed to
continue bit for bit), ``log.csv`` (one row per epoch), ``curves.png`` and the best weights,
``stage2.safetensors`` + ``stage2.json`` (:func:`metapose_geom.stage2.weights.save_weights`), with
the recipe in the config's notes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import layout
from .._checks import check_bool, check_choice, check_int, check_number
from ..stage2.config import INPUT_NAMES, KINDS, ModelConfig

_MODEL = ModelConfig()  # the model-shape defaults of TrainConfig are ModelConfig's own
from .geometry import project_weak, rot6d_to_matrix, softplus
from .model import Stage2Model
from .objective import bone_deviation, refiner_objective
from .train_data import (
    Batch, BatchPlan, TeacherCache, TrainingData, batch_count, epoch_plan, load_training_data, make_batch,
    standardisation_plan, validation_plan,
)

__all__ = ["LOSS_NAMES", "SELECT_CHOICES", "Ranks", "TrainConfig", "Trainer", "loss_terms", "train"]

LOSS_NAMES = ("fwd", "objective", "teacher", "bone")
SELECT_CHOICES = ("fwd", "objective")
SCHEDULES = ("cosine", "constant")
#: the floor of the measured input standard deviations
STD_FLOOR = 1e-6
CHECKPOINT_NAME = "checkpoint.pt"
WEIGHTS_NAME = "stage2.safetensors"
LOG_NAME = "log.csv"
PLOT_NAME = "curves.png"
#: the columns of log.csv, one row per epoch
LOG_COLUMNS = ("stage", "epoch", "loss_total", *(f"loss_{name}" for name in LOSS_NAMES), "val_criterion",
               "val_pmpjpe_mm", "lr", "seconds")


def _check_sequence(value: Any, name: str) -> tuple:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name}: expected a sequence, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe: data, examples, optimisation, model shape, losses and selection.

    Validated on construction (ValueError naming the field); :meth:`to_dict` / :meth:`from_dict`
    round-trip it through JSON. Hyper-parameter defaults are provisional.

    Attributes:
        train_files: dataset files (``metapose-geom make-dataset``) with heatmaps, pose3d_epi_pred
            and pose2d_gt.
        val_frames: frames held out for validation: from index min(N over the files) - val_frames on,
            in every file (files of make-dataset share their poses by frame index).
        camera_min, camera_max: each example sees a random subset of its frame's cameras of a size
            in this range (at most the frame's camera count), in random order.
        batch_size: examples per batch (a batch has one camera count).
        lr: Adam's learning rate at the start of each stage.
        lr_schedule: ``"cosine"`` (to ``lr_min`` over the stage's batches) or ``"constant"``.
        lr_min: the cosine schedule's final learning rate.
        epochs: epochs per stage.
        examples_per_epoch: training examples per epoch.
        max_stages: the most stages trained (each kept only when the criterion improves).
        kind, spec, pose_head, inputs, num_cameras: the model (:class:`ModelConfig`); ``inputs``
            without ``"bones"`` (that is ``bone_input``).
        bone_input: give the model the reference bone lengths (the skeleton's rest pose).
        loss: weight of each loss term, names from :data:`LOSS_NAMES` (the missing ones 0).
        select: the validation criterion, ``"fwd"`` or ``"objective"``.
        seed: every random choice (initial weights, examples) follows from it.
        threads: torch and core threads (0: one per core); results are reproducible bit for bit
            at a fixed count.
        standardise_examples: training examples the input standardisation is measured on.
        teacher_cache: most IR solutions kept for the teacher loss.
    """

    train_files: tuple[str, ...]
    val_frames: int = 500
    camera_min: int = 2
    camera_max: int = 6
    batch_size: int = 256
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    lr_min: float = 1e-5
    epochs: int = 24
    examples_per_epoch: int = 50_000
    max_stages: int = 2
    kind: str = _MODEL.kind
    spec: str = _MODEL.spec
    pose_head: tuple[int, ...] = _MODEL.pose_head
    inputs: tuple[str, ...] = _MODEL.inputs
    num_cameras: int | None = None
    bone_input: bool = False
    loss: Mapping[str, float] = field(default_factory=lambda: {"fwd": 1.0})
    select: str = "fwd"
    seed: int = 0
    threads: int = 0
    standardise_examples: int = 4096
    teacher_cache: int = 200_000

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        files = _check_sequence(self.train_files, "train_files")
        if not files or not all(isinstance(f, (str, os.PathLike)) and str(f) for f in files):
            raise ValueError(f"train_files: expected one or more dataset file paths, got {self.train_files!r}")
        set_("train_files", tuple(str(f) for f in files))
        set_("val_frames", check_int(self.val_frames, "val_frames", 1))
        set_("camera_min", check_int(self.camera_min, "camera_min", 2, 8))
        set_("camera_max", check_int(self.camera_max, "camera_max", 2, 8))
        if self.camera_min > self.camera_max:
            raise ValueError(f"camera_min: {self.camera_min} is above camera_max {self.camera_max}")
        set_("batch_size", check_int(self.batch_size, "batch_size", 1, 1 << 20))
        set_("lr", check_number(self.lr, "lr", 0.0, 1.0, low_open=True))
        set_("lr_schedule", check_choice(self.lr_schedule, "lr_schedule", SCHEDULES))
        set_("lr_min", check_number(self.lr_min, "lr_min", 0.0, self.lr))
        set_("epochs", check_int(self.epochs, "epochs", 1, 100_000))
        set_("examples_per_epoch", check_int(self.examples_per_epoch, "examples_per_epoch", 1, 1 << 30))
        set_("max_stages", check_int(self.max_stages, "max_stages", 1, 64))
        set_("kind", check_choice(self.kind, "kind", KINDS))
        inputs = _check_sequence(self.inputs, "inputs")
        if "bones" in inputs:
            raise ValueError("inputs: 'bones' is switched by bone_input (--bone-input), not listed")
        set_("inputs", inputs)
        set_("pose_head", _check_sequence(self.pose_head, "pose_head"))
        set_("bone_input", check_bool(self.bone_input, "bone_input"))
        if self.kind == "flat":
            count = check_int(self.num_cameras, "num_cameras", 2, 8)
            if not self.camera_min == self.camera_max == count:
                raise ValueError(f"num_cameras: a flat model sees exactly {count} cameras; set camera_min and "
                                 f"camera_max to {count} (got {self.camera_min}..{self.camera_max})")
            set_("num_cameras", count)
        elif self.num_cameras is not None:
            raise ValueError("num_cameras: only a flat model has a fixed camera count; leave it None")
        if not isinstance(self.loss, Mapping):
            raise ValueError(f"loss: expected a mapping of {LOSS_NAMES} to weights, got {self.loss!r}")
        weights = {}
        for name, value in self.loss.items():
            check_choice(name, "loss", LOSS_NAMES)
            weights[name] = check_number(value, f"loss[{name!r}]", 0.0)
        if not any(weights.values()):
            raise ValueError(f"loss: at least one weight must be above 0, got {weights}")
        set_("loss", {name: weights.get(name, 0.0) for name in LOSS_NAMES})
        set_("select", check_choice(self.select, "select", SELECT_CHOICES))
        set_("seed", check_int(self.seed, "seed", 0, 2**63 - 1))
        set_("threads", check_int(self.threads, "threads", 0, 1024))
        set_("standardise_examples", check_int(self.standardise_examples, "standardise_examples", 1, 1 << 24))
        set_("teacher_cache", check_int(self.teacher_cache, "teacher_cache", 0))
        self.model_config(skeleton="check", num_joints=17, num_components=4, num_bones=16)  # the shape's own checks

    def model_config(self, skeleton: str, num_joints: int, num_components: int, num_bones: int,
                     num_stages: int | None = None, notes: Mapping[str, Any] | None = None) -> ModelConfig:
        """The :class:`ModelConfig` of this recipe for data of the given skeleton."""
        inputs = tuple(name for name in INPUT_NAMES if name in self.inputs or (name == "bones" and self.bone_input))
        return ModelConfig(num_joints=num_joints, num_components=num_components, skeleton=skeleton,
                           num_bones=num_bones, num_stages=self.max_stages if num_stages is None else num_stages,
                           kind=self.kind, spec=self.spec, pose_head=self.pose_head, inputs=inputs,
                           num_cameras=self.num_cameras, notes=notes or {})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (:meth:`from_dict` reads it back equal)."""
        values = asdict(self)
        values.update(train_files=list(self.train_files), pose_head=list(self.pose_head), inputs=list(self.inputs),
                      loss=dict(self.loss))
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The config of :meth:`to_dict`; ValueError for unknown fields or bad values."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"config: unknown field(s) {unknown}")
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)


# --------------------------------------------------------------------------- losses


def _batch_tensors(batch: Batch, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """mixtures (b, k, J, K, 4), x0 (b, P), labels (b, k, J, 2) as tensors of ``dtype``."""
    return (torch.as_tensor(batch.mixtures).to(dtype), torch.as_tensor(batch.x0).to(dtype),
            torch.as_tensor(batch.labels).to(dtype))


def reprojection_mse(x: Tensor, labels: Tensor) -> Tensor:
    """x (b, P), labels (b, C, J, 2) -> (b,): mean over cameras and joints of ``|p_cj - label_cj|^2``."""
    C, J = labels.shape[-3], labels.shape[-2]
    pose, rot6d, scale_raw, shift = layout.unpack(x, C, J)
    points = project_weak(pose, rot6d_to_matrix(rot6d), softplus(scale_raw), shift)
    return ((points - labels) ** 2).sum(dim=-1).mean(dim=(-2, -1))


def teacher_distance(x: Tensor, teacher: Tensor, num_cameras: int, num_joints: int) -> Tensor:
    """x, teacher (b, P) -> (b,): mean squared joint error + mean over cameras of the squared
    log-scale difference, the squared shift error and ``|R R_ref^T - I|_F^2``; 0 at ``x = teacher``."""
    pose, rot6d, scale_raw, shift = layout.unpack(x, num_cameras, num_joints)
    ref_pose, ref_rot6d, ref_scale_raw, ref_shift = layout.unpack(teacher, num_cameras, num_joints)
    pose_term = ((pose - ref_pose) ** 2).sum(dim=-1).mean(dim=-1)
    scale_term = ((torch.log(softplus(scale_raw)) - torch.log(softplus(ref_scale_raw))) ** 2).mean(dim=-1)
    shift_term = ((shift - ref_shift) ** 2).sum(dim=-1).mean(dim=-1)
    relative = rot6d_to_matrix(rot6d) @ rot6d_to_matrix(ref_rot6d).transpose(-1, -2)
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    rotation_term = ((relative - eye) ** 2).sum(dim=(-2, -1)).mean(dim=-1)
    return pose_term + scale_term + shift_term + rotation_term


def bone_term(x: Tensor, num_cameras: int, num_joints: int, bones: Tensor, reference: Tensor) -> Tensor:
    """x (b, P), bones (nB, 2), reference lengths (nB,) -> (b,) ``|| l/mean(l) - l_ref/mean(l_ref) ||``."""
    return bone_deviation(layout.unpack(x, num_cameras, num_joints).pose, bones, reference)


def loss_terms(x: Tensor, mixtures: Tensor, labels: Tensor, weights: Mapping[str, float], *,
               teacher: Tensor | None = None, bones: Tensor | None = None,
               bone_reference: Tensor | None = None) -> dict[str, Tensor]:
    """The per-example terms (b,) of the loss at the output x (b, P), for the names of ``weights``
    above 0 (``teacher`` needs the IR solutions (b, P); ``bone`` the bones and reference)."""
    C, J = mixtures.shape[1], mixtures.shape[2]
    terms: dict[str, Tensor] = {}
    if weights.get("fwd", 0.0) > 0:
        terms["fwd"] = reprojection_mse(x, labels)
    if weights.get("objective", 0.0) > 0:
        terms["objective"] = refiner_objective(mixtures, x)
    if weights.get("teacher", 0.0) > 0:
        if teacher is None:
            raise ValueError("teacher: the teacher loss needs the IR solutions")
        terms["teacher"] = teacher_distance(x, teacher, C, J)
    if weights.get("bone", 0.0) > 0:
        if bones is None or bone_reference is None:
            raise ValueError("bones: the bone loss needs the skeleton's bones and reference lengths")
        terms["bone"] = bone_term(x, C, J, bones, bone_reference)
    return terms


# --------------------------------------------------------------------------- the trainer


@contextlib.contextmanager
def _torch_settings(threads: int, local_processes: int = 1) -> Iterator[int]:
    """Fixed thread counts (torch and the core) and deterministic algorithms, restored afterwards.
    ``threads`` 0 is one per core, shared among the ``local_processes`` of this machine."""
    from .. import geometry

    count = threads or max(1, (os.cpu_count() or 1) // local_processes)
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), geometry.get_num_threads())
    torch.set_num_threads(count)
    torch.use_deterministic_algorithms(True)
    geometry.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1])
        geometry.set_num_threads(before[2])


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes: ``rank`` of ``world``, ``local`` of them
    on this machine. One process is ``Ranks(0, 1, 1)``."""

    rank: int = 0
    world: int = 1
    local: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files and shows progress."""
        return self.rank == 0

    def share(self, count: int) -> tuple[int, int]:
        """This rank's rows ``[start, stop)`` of ``count``: consecutive parts, sizes differing by at most 1."""
        base, extra = divmod(count, self.world)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (self.rank < extra)

    def slice(self, plan: BatchPlan) -> BatchPlan:
        """This rank's part of a global batch."""
        start, stop = self.share(len(plan))
        return BatchPlan(plan.file[start:stop], plan.frame[start:stop], plan.cameras[start:stop])


def _launched_ranks() -> Ranks:
    """The ranks torchrun (``torch.distributed.run``) describes in the environment; one process without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_WORLD_SIZE", world)))


@contextlib.contextmanager
def _process_group(ranks: Ranks) -> Iterator[None]:
    """Join torchrun's process group (when there are several processes and none is joined yet) and
    leave it afterwards: gloo, with nccl for CUDA tensors where CUDA is."""
    import torch.distributed as dist

    joined = ranks.world > 1 and not dist.is_initialized()
    if joined:
        gpus = torch.cuda.is_available() and dist.is_nccl_available()
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if gpus else "gloo")
    try:
        yield
    finally:
        if joined:
            dist.destroy_process_group()


class _StageStep(torch.nn.Module):
    """``model.step`` as a module's forward, so DistributedDataParallel can wrap it (it reduces the
    gradients of the parameters that require them: the trained stage's)."""

    def __init__(self, model: Stage2Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, index: int, mixtures: Tensor, x: Tensor, bones: Tensor | None) -> Tensor:
        return self.model.step(index, mixtures, x, bones)


def _data_parallel(model: Stage2Model) -> torch.nn.Module:
    """The DistributedDataParallel wrapper of ``model.step``: it reduces the gradients of the trained
    stage (the others require none). Buffers (the standardisation) are synced when it is built and
    never again: they change only between stages, when a new wrapper is built."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    keyword = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
               else "broadcast_buffers")  # torch >= 2.13 renamed it
    return DistributedDataParallel(_StageStep(model), **{keyword: False})


def _reduce_sum(values: Sequence[float]) -> list[float]:
    """The sums of ``values`` over the ranks (float64), rank 0's result on every rank."""
    import torch.distributed as dist

    tensor = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(tensor)
    dist.broadcast(tensor, 0)
    return tensor.tolist()


class Trainer:
    """The pieces of :func:`train`, usable one by one (tests, experiments): the data in memory,
    the model, the examples, the losses of a batch, the standardisation and the validation.
    ``ranks`` (several processes, :class:`Ranks`): validation on this rank's slices, the
    standardisation measured on rank 0 and broadcast."""

    def __init__(self, config: TrainConfig, data: TrainingData | None = None, ranks: Ranks | None = None) -> None:
        self.config = config
        self.ranks = ranks if ranks is not None else Ranks()
        self.data = data if data is not None else load_training_data(config.train_files, config.val_frames,
                                                                     config.camera_min)
        bones, reference = self.data.bones()
        self.model_config = config.model_config(self.data.skeleton.name, self.data.num_joints,
                                                self.data.num_components, int(bones.shape[0]))
        torch.manual_seed(config.seed)
        self.model = Stage2Model(self.model_config)
        self.bones = torch.as_tensor(bones)
        self.bone_reference = torch.as_tensor(reference, dtype=torch.float32)
        self.teacher = TeacherCache(config.teacher_cache)
        self._validation: list[Batch] | None = None

    # ------------------------------------------------------------------ examples

    def _plan_options(self) -> dict[str, int]:
        c = self.config
        return dict(seed=c.seed, batch_size=c.batch_size, camera_min=c.camera_min, camera_max=c.camera_max)

    def epoch_plan(self, epoch: int) -> list[BatchPlan]:
        """The batches of epoch ``epoch`` (counted over all stages)."""
        return epoch_plan(self.data, epoch, examples=self.config.examples_per_epoch, **self._plan_options())

    @property
    def batches_per_epoch(self) -> int:
        return batch_count(self.config.examples_per_epoch, self.config.batch_size)

    def validation_batches(self) -> list[Batch]:
        """The held-out examples' batches (made once)."""
        if self._validation is None:
            plans = validation_plan(self.data, **self._plan_options())
            if self.ranks.world > 1:  # this rank's slice of each (some may be empty)
                plans = [part for part in map(self.ranks.slice, plans) if len(part)]
            self._validation = [make_batch(self.data, plan) for plan in plans]
        return self._validation

    # ------------------------------------------------------------------ forward

    def _bones_input(self, count: int) -> Tensor | None:
        if "bones" not in self.model_config.inputs:
            return None
        return self.bone_reference.expand(count, -1)

    def start(self, index: int, mixtures: Tensor, x0: Tensor) -> Tensor:
        """x_index (b, P): x0 through the frozen stages before ``index``, without gradients."""
        with torch.no_grad():
            x = x0
            for earlier in range(index):
                x = self.model.step(earlier, mixtures, x, self._bones_input(x.shape[0]))
        return x.detach()

    def batch_terms(self, index: int, batch: Batch, step: torch.nn.Module | None = None) -> dict[str, Tensor]:
        """Mean loss terms of stage ``index``'s output on ``batch`` (differentiable in that stage);
        ``step`` runs the stage instead of ``model.step`` (the DistributedDataParallel wrapper)."""
        mixtures, x0, labels = _batch_tensors(batch, torch.float32)
        run = self.model.step if step is None else step
        x = run(index, mixtures, self.start(index, mixtures, x0), self._bones_input(x0.shape[0]))
        teacher = None
        if self.config.loss["teacher"] > 0:
            teacher = torch.as_tensor(self.teacher.solutions(self.data, batch)).to(torch.float32)
        terms = loss_terms(x, mixtures, labels, self.config.loss, teacher=teacher, bones=self.bones,
                           bone_reference=self.bone_reference)
        return {name: value.mean() for name, value in terms.items()}

    def total_loss(self, terms: Mapping[str, Tensor]) -> Tensor:
        return sum(self.config.loss[name] * value for name, value in terms.items())  # type: ignore[return-value]

    def freeze(self, index: int) -> list[torch.nn.Parameter]:
        """Only stage ``index`` trains: its parameters require gradients, every other's not; returns them."""
        for position, stage in enumerate(self.model.stages):
            for parameter in stage.parameters():
                parameter.requires_grad_(position == index)
        return list(self.model.stages[index].parameters())

    # ------------------------------------------------------------------ standardisation

    def stage_inputs_sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw inputs of stage ``index`` over the standardisation examples: shared rows (n, Ds) and
        camera rows (sum of k over examples, Dc), float64."""
        c = self.config
        plans = standardisation_plan(self.data, examples=c.standardise_examples, **self._plan_options())
        shared_rows, camera_rows = [], []
        with torch.no_grad():
            for plan in plans:
                mixtures, x0, _ = _batch_tensors(make_batch(self.data, plan), torch.float32)
                x = self.start(index, mixtures, x0)
                shared, camera = self.model.inputs(mixtures, x, index, self._bones_input(x.shape[0]))
                shared_rows.append(shared.double().numpy())
                camera_rows.append(camera.double().numpy().reshape(-1, camera.shape[-1]))
        return np.concatenate(shared_rows), np.concatenate(camera_rows)

    def standardise(self, index: int) -> None:
        """Set stage ``index``'s input mean and standard deviation (floored at 1e-6) from training
        examples (several processes: measured on rank 0, broadcast to the others)."""
        stage = self.model.stages[index]
        names = ("shared_mean", "shared_std", "camera_mean", "camera_std")
        if self.ranks.main:
            shared, camera = self.stage_inputs_sample(index)
            for rows, mean_name, std_name in ((shared, names[0], names[1]), (camera, names[2], names[3])):
                mean = rows.mean(axis=0) if rows.shape[1] else np.zeros(0)
                std = np.maximum(rows.std(axis=0), STD_FLOOR) if rows.shape[1] else np.ones(0)
                getattr(stage, mean_name).copy_(torch.as_tensor(mean))
                getattr(stage, std_name).copy_(torch.as_tensor(std))
        if self.ranks.world > 1:
            import torch.distributed as dist

            for name in names:
                dist.broadcast(getattr(stage, name), 0)

    # ------------------------------------------------------------------ validation

    def validate(self, stages: int) -> tuple[float, float]:
        """The validation criterion (``config.select``) and the PMPJPE in mm (NaN without 3D truth;
        logged only) of the first ``stages`` stages (0: S1 alone) over the held-out examples."""
        from ..metrics import pmpjpe

        total, errors, count = 0.0, [], 0
        with torch.no_grad():
            for batch in self.validation_batches():
                mixtures, x0, labels = _batch_tensors(batch, torch.float32)
                x = self.start(stages, mixtures, x0)
                if self.config.select == "fwd":
                    values = reprojection_mse(x, labels)
                else:
                    values = refiner_objective(mixtures, x)
                total += float(values.double().sum())
                count += len(batch.plan)
                if batch.pose3d is not None:
                    pose = layout.unpack(x.double().numpy(), batch.plan.num_cameras, self.data.num_joints).pose
                    errors.append(pmpjpe(pose, batch.pose3d))
        if self.ranks.world > 1:  # the sums over every rank's slices, rank 0's on every rank
            measured = sum(len(e) for e in errors)
            total, count, error_sum, measured = _reduce_sum(
                [total, count, float(np.concatenate(errors).sum()) if errors else 0.0, measured])
            return total / count, error_sum / measured if measured == count else math.nan
        error = float(np.concatenate(errors).mean()) if errors and sum(len(e) for e in errors) == count else math.nan
        return total / count, error

    def stage_tensors(self, stages: int) -> dict[str, np.ndarray]:
        """The weights-file tensors of the first ``stages`` stages (float32 numpy)."""
        prefixes = tuple(f"stages.{i}." for i in range(stages))
        return {name: value.detach().numpy().copy() for name, value in self.model.state_dict().items()
                if name.startswith(prefixes)}


# --------------------------------------------------------------------------- the loop


def _lr_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps: int):
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps), eta_min=config.lr_min)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def _clone_state(module: torch.nn.Module) -> dict[str, Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".partial")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _write_log(out: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: (f"{value:.8g}" if isinstance(value, float) else value) for key, value in row.items()})
    _atomic_write(out / LOG_NAME, buffer.getvalue().encode())


def _plot(out: Path, rows: Sequence[Mapping[str, Any]], select: str) -> None:
    """curves.png: the training loss terms and the validation criterion / PMPJPE per epoch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.13, top=0.9, wspace=0.25)
    left, middle, right = figure.subplots(1, 3)
    steps = np.arange(1, len(rows) + 1)
    lowest = math.inf
    for name in ("total", *LOSS_NAMES):
        values = np.array([row[f"loss_{name}"] for row in rows], dtype=float)
        if np.isfinite(values).any():
            left.plot(steps, values, label=name)
            lowest = min(lowest, float(np.nanmin(values)))
    # the objective term is a negative log-likelihood, often below 0: then a log scale only near 0
    left.set_yscale("log" if lowest > 0 else "symlog", **({} if lowest > 0 else {"linthresh": 1e-4}))
    left.set_title("training loss")
    left.legend(fontsize=7)
    middle.plot(steps, [row["val_criterion"] for row in rows], color="tab:blue")
    middle.set_title(f"validation {select} (selects)")
    right.plot(steps, [row["val_pmpjpe_mm"] for row in rows], color="tab:red")
    right.set_title("validation PMPJPE mm (logged only)")
    for axes in (left, middle, right):
        axes.set_xlabel("epoch (all stages)")
        for boundary in [i + 0.5 for i in range(1, len(rows)) if rows[i]["stage"] != rows[i - 1]["stage"]]:
            axes.axvline(boundary, color="grey", linestyle=":")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    _atomic_write(out / PLOT_NAME, buffer.getvalue())


def _save_best(out: Path, trainer: Trainer, stages: int, state: Mapping[str, Any]) -> Path:
    """The first ``stages`` stages to OUT/stage2.safetensors, the recipe in the notes."""
    from ..stage2.weights import save_weights

    notes = {"training": trainer.config.to_dict(), "data": trainer.data.fingerprint(),
             "selected": {"stages": stages, "criterion": state["best_criterion"], "select": trainer.config.select,
                          "s1_criterion": state["s1_criterion"], "epochs": state["kept_epochs"][:stages]},
             "torch": torch.__version__}
    config = trainer.config.model_config(trainer.model_config.skeleton, trainer.model_config.num_joints,
                                         trainer.model_config.num_components, trainer.model_config.num_bones,
                                         num_stages=stages, notes=notes)
    return save_weights(out / WEIGHTS_NAME, config, trainer.stage_tensors(stages))


def _check_resumable(saved: Mapping[str, Any], config: TrainConfig, trainer: Trainer, path: Path) -> None:
    if saved.get("config") != config.to_dict():
        before = saved.get("config") or {}
        changed = sorted(k for k in set(before) | set(config.to_dict()) if before.get(k) != config.to_dict().get(k))
        raise ValueError(f"{path}: written by a different training config (changed: {', '.join(changed)}); use "
                         "the same settings, another output folder, or resume=False (--no-resume) to start over")
    if saved.get("data") != trainer.data.fingerprint():
        raise ValueError(f"{path}: written for other data (files or frame counts changed: {saved.get('data')}); "
                         "use another output folder, or resume=False (--no-resume) to start over")


def train(config: TrainConfig, out_dir: str | os.PathLike, progress: bool = True, resume: bool = True) -> Path:
    """Train stage 2 by ``config``; returns the path of the best weights (OUT/stage2.safetensors).

    With ``resume`` an existing OUT/checkpoint.pt (of the same config and data; ValueError
    otherwise) is continued, and the result equals, bit for bit, a run that never stopped (at the
    same thread count). ``resume=False`` starts over and replaces it.

    Under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1) the N processes train together
    (DistributedDataParallel, each on its slice of every global batch; see the module's
    docstring): the weights equal one process's to float rounding, only rank 0 writes, and a
    checkpoint of any process count resumes. Every batch must give each process an example:
    ValueError when ``batch_size``, or the last batch of an epoch, is smaller than N.
    """
    from tqdm.auto import tqdm

    if not isinstance(config, TrainConfig):
        raise ValueError(f"config: expected a TrainConfig, got {type(config).__name__}")
    ranks = _launched_ranks()
    last = config.examples_per_epoch % config.batch_size
    if ranks.world > 1 and (config.batch_size < ranks.world or 0 < last < ranks.world):
        what = (f"batch_size: {config.batch_size}" if config.batch_size < ranks.world else
                f"examples_per_epoch: {config.examples_per_epoch} leaves a last batch of {last}")
        raise ValueError(f"{what} examples cannot be split among {ranks.world} processes (each needs one)")
    progress = progress and ranks.main
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / CHECKPOINT_NAME
    with _process_group(ranks), _torch_settings(config.threads, ranks.local):
        trainer = Trainer(config, ranks=ranks)
        model = trainer.model
        state: dict[str, Any] = {"stage": 0, "epoch": 0, "kept": 0, "kept_epochs": [], "rows": [],
                                 "best_criterion": math.inf, "s1_criterion": math.inf, "stage_best": math.inf,
                                 "stage_best_epoch": -1, "stage_best_state": None, "optimizer": None,
                                 "scheduler": None, "finished": False}
        if resume and checkpoint.exists():
            saved = torch.load(checkpoint, weights_only=True)
            _check_resumable(saved, config, trainer, checkpoint)
            model.load_state_dict(saved["model"])
            torch.set_rng_state(saved["torch_rng"])
            state.update(saved["state"])
        else:
            state["s1_criterion"] = state["best_criterion"] = trainer.validate(0)[0]
        batches = trainer.batches_per_epoch
        while not state["finished"]:
            index = state["stage"]
            parameters = trainer.freeze(index)
            if state["optimizer"] is None:  # a new stage
                trainer.standardise(index)
            step = _data_parallel(model) if ranks.world > 1 else None
            optimizer = torch.optim.Adam(parameters, lr=config.lr)
            scheduler = _lr_scheduler(optimizer, config, config.epochs * batches)
            if state["optimizer"] is not None:
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
            bar = tqdm(total=config.epochs * batches, initial=state["epoch"] * batches, disable=not progress,
                       desc=f"stage {index}", unit="batch", leave=False)
            for epoch in range(state["epoch"], config.epochs):
                started = time.perf_counter()
                model.train()
                sums = {name: 0.0 for name in ("total", *LOSS_NAMES)}
                seen = 0
                lr = optimizer.param_groups[0]["lr"]
                for plan in trainer.epoch_plan(index * config.epochs + epoch):
                    local = plan if ranks.world == 1 else ranks.slice(plan)
                    batch = make_batch(trainer.data, local)
                    terms = trainer.batch_terms(index, batch, step)
                    loss = trainer.total_loss(terms)
                    optimizer.zero_grad(set_to_none=True)
                    if ranks.world == 1:
                        loss.backward()
                    else:  # DDP averages over ranks: weigh this slice's mean by its share of the batch
                        (loss * (len(local) * ranks.world / len(plan))).backward()
                    optimizer.step()
                    scheduler.step()
                    size = len(local)
                    seen += size
                    sums["total"] += loss.item() * size
                    for name, value in terms.items():
                        sums[name] += value.item() * size
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.4g}", refresh=False)
                if ranks.world > 1:  # the epoch's loss sums over every rank's examples
                    seen, *totals = _reduce_sum([seen, *sums.values()])
                    sums = dict(zip(sums, totals))
                model.eval()
                criterion, error = trainer.validate(index + 1)
                row = {"stage": index, "epoch": epoch, **{f"loss_{k}": v / seen for k, v in sums.items()},
                       "val_criterion": criterion, "val_pmpjpe_mm": error, "lr": lr,
                       "seconds": time.perf_counter() - started}
                for name in LOSS_NAMES:
                    if config.loss[name] == 0:
                        row[f"loss_{name}"] = math.nan
                state["rows"].append(row)
                if criterion < state["stage_best"]:
                    state.update(stage_best=criterion, stage_best_epoch=epoch,
                                 stage_best_state=_clone_state(model.stages[index]))
                    if criterion < state["best_criterion"] and ranks.main:
                        _save_best(out, trainer, index + 1, dict(state, best_criterion=criterion,
                                                                 kept_epochs=[*state["kept_epochs"], epoch]))
                state.update(epoch=epoch + 1, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
                if epoch + 1 == config.epochs:
                    _finish_stage(state, model, config)
                if ranks.main:
                    _atomic_write(checkpoint, _checkpoint_bytes(config, trainer, state))
                    _write_log(out, state["rows"])
                    _plot(out, state["rows"], config.select)
                bar.set_postfix(val=f"{criterion:.4g}", pmpjpe=f"{error:.1f}")
            bar.close()
        weights = _save_best(out, trainer, state["kept"], state) if ranks.main else out / WEIGHTS_NAME
        if ranks.world > 1:
            import torch.distributed as dist

            dist.barrier()  # the weights are written before any rank returns their path
        if state["kept"] == 0 and progress:
            print(f"stage 2: no stage improved on S1's validation {config.select} ({state['s1_criterion']:.4g}); "
                  f"{weights} holds no stages")
        return weights


def _finish_stage(state: dict[str, Any], model: Stage2Model, config: TrainConfig) -> None:
    """A stage's epochs are done: keep its best epoch if it beats the stages before, then go on or stop."""
    index = state["stage"]
    if state["stage_best"] < state["best_criterion"]:
        model.stages[index].load_state_dict(state["stage_best_state"])
        state.update(kept=index + 1, best_criterion=state["stage_best"],
                     kept_epochs=[*state["kept_epochs"], state["stage_best_epoch"]])
        finished = index + 1 >= config.max_stages
    else:
        finished = True
    state.update(stage=index + 1, epoch=0, stage_best=math.inf, stage_best_epoch=-1, stage_best_state=None,
                 optimizer=None, scheduler=None, finished=finished)


def _checkpoint_bytes(config: TrainConfig, trainer: Trainer, state: Mapping[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save({"config": config.to_dict(), "data": trainer.data.fingerprint(), "model": trainer.model.state_dict(),
                "torch_rng": torch.get_rng_state(), "state": dict(state)}, buffer)
    return buffer.getvalue()
