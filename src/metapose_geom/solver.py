"""``solve`` and ``solve_batch``: MetaPose's stage 1 (S1) and iterative refiner (IR) on the C++ core,
and the AniPose baseline.

S1 and IR work in box units throughout; the recovered pose is in camera 0's weak-perspective
frame (camera 0 has rotation I and scale 1), centred on the mean joint, and is defined up to the
similarity that a set of uncalibrated weak cameras cannot see. Compare it to a ground truth with
:func:`metapose_geom.metrics.pmpjpe`.

``method="anipose"`` is the classical alternative (:mod:`metapose_geom.anipose`, needs the
``anipose`` extra): aniposelib's bundle adjustment of full-perspective cameras, started from
cameras the caller gives, on the mixture means in pixels, then triangulation. Its pose is in the
adjusted camera 0's frame, in the start cameras' world units. A joint whose evidence in a view is
no sharper than one box (``UNINFORMATIVE_VARIANCE``: a missing keypoint, an invalid heatmap) is
left out of that view; a joint left with fewer than two views is a ValueError.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import geometry
from ._core_loader import core as _core
from .geometry import PerspectiveCameras
from .skeletons import Skeleton
from .views import UNINFORMATIVE_VARIANCE, Views, pixels_to_box

F64 = NDArray[np.float64]
Method = Literal["s1", "ir", "anipose"]
METHODS: tuple[str, ...] = ("s1", "ir", "anipose")

__all__ = [
    "AniPoseOptions", "History", "RefineOptions", "Solution", "WeakCameras", "solve", "solve_batch", "solution_size",
]


def solution_size(num_cameras: int, num_joints: int) -> int:
    """P = 3 J + 10 C: ``[pose J*3 | rot6d C*6 | scale_raw C | shift C*3]``."""
    return 3 * num_joints + 10 * num_cameras


@dataclass(frozen=True)
class RefineOptions:
    """Options of the iterative refiner. Unknown names are rejected (:meth:`from_mapping`).

    Attributes:
        steps: Adam steps (100 as the original).
        learning_rate, beta1, beta2, epsilon: Adam in the Keras form the original used.
        bone_weight: weight of the bone-length term ``|l/mean(l) - l_ref/mean(l_ref)|``; 0 turns it off.
        bone_reference: (nB,) reference bone lengths in any unit; None uses the skeleton's rest pose.
        history_every: record the objective, pose and cameras every n steps (0: no history).
        init: ``"s1"`` starts from stage 1 (needs monocular guesses), ``"random"`` from a random
            pose and cameras (the original's random-initialisation ablation).
        seed: seed of the random initialisation.
    """

    steps: int = 100
    learning_rate: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7
    bone_weight: float = 0.0
    bone_reference: tuple[float, ...] | None = None
    history_every: int = 0
    init: Literal["s1", "random"] = "s1"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "history_every", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
        for name, low, high in (
            ("learning_rate", 0.0, np.inf),
            ("beta1", 0.0, 1.0),
            ("beta2", 0.0, 1.0),
            ("epsilon", 0.0, np.inf),
            ("bone_weight", 0.0, np.inf),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise ValueError(f"{name}: expected a number, got {value!r}")
            if not (np.isfinite(value) and low <= value and (value < high or high == np.inf)):
                raise ValueError(f"{name}: expected a finite number in [{low}, {high}), got {value!r}")
        if self.epsilon <= 0:
            raise ValueError(f"epsilon: expected a number > 0, got {self.epsilon!r}")
        if self.init not in ("s1", "random"):
            raise ValueError(f"init: expected 's1' or 'random', got {self.init!r}")
        if self.bone_reference is not None:
            reference = np.asarray(self.bone_reference, dtype=np.float64)
            if reference.ndim != 1 or not np.isfinite(reference).all() or (reference < 0).any() or reference.sum() <= 0:
                raise ValueError("bone_reference: expected (nB,) finite non-negative lengths with a positive sum")
            object.__setattr__(self, "bone_reference", tuple(float(v) for v in reference))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RefineOptions:
        """Options from a mapping; unknown names raise ValueError listing the known ones."""
        return _from_mapping(cls, values)


@dataclass(frozen=True)
class AniPoseOptions:
    """Options of ``method="anipose"``. Unknown names are rejected (:meth:`from_mapping`).

    Attributes:
        adjust_cameras: run aniposelib's ``bundle_adjust_iter`` (its defaults) before triangulating;
            False triangulates with the start cameras as given.
        adjust_intrinsics: also refine one focal length (``fx = fy``) and ``k1`` per camera, as
            aniposelib does by default (it then drops ``k2, p1, p2, k3``); False moves the
            extrinsics only.
        seed: seeds aniposelib's point resampling for the call (numpy's global generator, which
            is put back afterwards).
    """

    adjust_cameras: bool = True
    adjust_intrinsics: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("adjust_cameras", "adjust_intrinsics"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {self.seed!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AniPoseOptions:
        """Options from a mapping; unknown names raise ValueError listing the known ones."""
        return _from_mapping(cls, values)


def _from_mapping(cls, values: Mapping[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"options: unknown name(s) {unknown} for {cls.__name__}; known: {sorted(known)}")
    return cls(**values)


@dataclass(frozen=True)
class WeakCameras:
    """C weak-perspective cameras: a pose X (J, 3) is seen as ``scale[c] * X @ rotation[c] + shift[c]``."""

    rotation: F64  #: (C, 3, 3)
    scale: F64  #: (C,)
    shift: F64  #: (C, 3), box units

    def project(self, pose: ArrayLike) -> F64:
        """pose (..., J, 3) with cameras of the same leading dims -> (..., C, J, 2) box units."""
        return geometry.project_weak(pose, self.rotation, self.scale, self.shift)


@dataclass(frozen=True)
class History:
    """The refiner's path, recorded every ``history_every`` steps (H records, step 0 first)."""

    steps: NDArray[np.int64]  #: (H,) step index of each record
    objective: F64  #: (H,)
    pose3d: F64  #: (H, J, 3)
    rotation: F64  #: (H, C, 3, 3)
    scale: F64  #: (H, C)
    shift: F64  #: (H, C, 3)


@dataclass(frozen=True)
class Solution:
    """One frame's result.

    Attributes:
        method: ``"s1"``, ``"ir"`` or ``"anipose"``.
        pose3d: (J, 3) in camera 0's weak frame (camera 0 has rotation I and scale 1), box units;
            for ``"anipose"`` in the adjusted camera 0's frame (``R_0 X + t_0``), in the start
            cameras' world units (a bundle adjustment leaves the overall scale free: it stays
            near the start's, not exactly; compare with PMPJPE).
        cameras: the C weak cameras; for ``"anipose"`` the adjusted :class:`PerspectiveCameras`.
        reprojection: (C, J, 2) the pose seen by the cameras, box units.
        reprojection_pixels: (C, J, 2) the same in pixels through the views' boxes (box units
            when the views have no boxes).
        objective: the refiner objective at the solution (also for ``"s1"``); for ``"anipose"``
            its data term at ``reprojection``, ``-mean_cj log p(reprojection_cj | mixture_cj)``,
            which is the whole objective when ``bone_weight`` is 0.
        x: (P,) the solution vector ``[pose | rot6d | scale_raw | shift]`` as the refiner left it,
            before the result is expressed in camera 0's frame; empty (0,) for ``"anipose"``.
        history: the refiner's path, or None.
    """

    method: str
    pose3d: F64
    cameras: WeakCameras | PerspectiveCameras
    reprojection: F64
    reprojection_pixels: F64
    objective: float
    x: F64
    history: History | None = None


Options = RefineOptions | AniPoseOptions | Mapping[str, Any] | None
_DEFAULTS = {RefineOptions: RefineOptions(), AniPoseOptions: AniPoseOptions()}  # frozen, so shared


def _options(options: Options, method: str) -> RefineOptions | AniPoseOptions:
    kind = AniPoseOptions if method == "anipose" else RefineOptions
    if options is None:
        return _DEFAULTS[kind]
    if isinstance(options, kind):
        return options
    if isinstance(options, Mapping):
        return kind.from_mapping(options)
    raise ValueError(f"options: method {method!r} takes {kind.__name__}, a mapping of its fields or None, "
                     f"got {type(options).__name__}")


def _unpack(x: F64, num_cameras: int, num_joints: int) -> tuple[F64, WeakCameras]:
    """x (..., P) -> pose (..., J, 3) and cameras with leading dims, in camera 0's frame.

    The objective cannot see a common similarity of the pose and the cameras, and the refiner moves
    camera 0 with the others; the result is expressed where camera 0 has rotation I and scale 1:
    ``pose' = s_0 pose R_0``, ``R_c' = R_0^T R_c``, ``s_c' = s_c / s_0`` (shifts unchanged), which
    leaves every projection as it was.
    """
    J, C = num_joints, num_cameras
    pose = x[..., : 3 * J].reshape(x.shape[:-1] + (J, 3))
    rotation = geometry.rot6d_to_matrix(x[..., 3 * J : 3 * J + 6 * C].reshape(x.shape[:-1] + (C, 6)))
    scale = np.logaddexp(x[..., 3 * J + 6 * C : 3 * J + 7 * C], 0.0)  # softplus
    shift = x[..., 3 * J + 7 * C :].reshape(x.shape[:-1] + (C, 3))
    reference, reference_scale = rotation[..., :1, :, :], scale[..., :1]
    pose = reference_scale[..., None] * pose @ reference[..., 0, :, :]
    rotation = np.swapaxes(reference, -1, -2) @ rotation
    return pose, WeakCameras(rotation, scale / reference_scale, shift)


def _random_init(mixtures: F64, seed: int) -> F64:
    """(B, C, J, K, 4) -> (B, P): a random pose of box-unit size, random rotations, unit scales, and
    shifts at the centre of each view's evidence. The random draws depend on the seed only, so a
    frame starts from the same point alone or in a batch."""
    B, C, J = mixtures.shape[:3]
    rng = np.random.default_rng(seed)
    x = np.empty((B, solution_size(C, J)))
    x[:, : 3 * J] = rng.normal(scale=0.3, size=3 * J)
    x[:, 3 * J : 3 * J + 6 * C] = rng.normal(size=6 * C)
    x[:, 3 * J + 6 * C : 3 * J + 7 * C] = np.log(np.expm1(1.0))
    weights = mixtures[..., 0:1]
    centre = (weights * mixtures[..., 1:3]).sum(axis=(2, 3)) / weights.sum(axis=(2, 3))  # (B, C, 2)
    shift = np.concatenate([centre, np.zeros((B, C, 1))], axis=-1)
    x[:, 3 * J + 7 * C :] = shift.reshape(B, 3 * C)
    return x


def _stack(frames: Sequence[Views]) -> tuple[F64, F64 | None]:
    if len(frames) == 0:
        raise ValueError("frames: expected at least one Views")
    first = frames[0]
    for i, views in enumerate(frames):
        if not isinstance(views, Views):
            raise ValueError(f"frames[{i}]: expected a Views, got {type(views).__name__}")
        if views.mixtures.shape != first.mixtures.shape:
            raise ValueError(
                f"frames[{i}]: mixtures shape {views.mixtures.shape} differs from frames[0]'s "
                f"{first.mixtures.shape}; solve_batch needs equal C, J and K (use camera subsets)"
            )
        if (views.mono3d is None) != (first.mono3d is None):
            raise ValueError(f"frames[{i}]: some frames have monocular guesses and some do not")
    mixtures = np.stack([views.mixtures for views in frames])
    mono3d = None if first.mono3d is None else np.stack([views.mono3d for views in frames])
    return mixtures, mono3d


def _solve_arrays(
    mixtures: F64, mono3d: F64 | None, method: str, options: RefineOptions, bones: NDArray[np.int64], reference: F64
) -> tuple[F64, F64, F64, F64]:
    """Core call for a stacked batch -> x (B, P), objective (B,), history x (B, H, P), history objective (B, H)."""
    B = mixtures.shape[0]
    needs_s1 = method == "s1" or options.init == "s1"
    if needs_s1:
        if mono3d is None:
            raise ValueError(
                "mono3d: stage 1 needs monocular 3D guesses; give Views a mono3d, or use "
                "method='ir' with options init='random'"
            )
        x0 = _core.stage1(mono3d)
    else:
        x0 = _random_init(mixtures, options.seed)
    references = np.broadcast_to(reference, (B, reference.shape[0])).copy()
    if method == "s1":
        objective, _ = _core.refiner_objective(mixtures, x0, bones, references, options.bone_weight)
        P = x0.shape[1]
        return x0, objective, np.empty((B, 0, P)), np.empty((B, 0))
    return _core.refine(
        mixtures,
        x0,
        bones,
        references,
        float(options.bone_weight),
        int(options.steps),
        float(options.learning_rate),
        float(options.beta1),
        float(options.beta2),
        float(options.epsilon),
        int(options.history_every),
    )


@functools.lru_cache(maxsize=16)
def _skeleton_arrays(skeleton: Skeleton) -> tuple[NDArray[np.int64], F64]:
    """A skeleton's bones (nB, 2) and rest-pose bone lengths (nB,), built once (read-only)."""
    bones = np.array(skeleton.bones, dtype=np.int64)
    lengths = skeleton.bone_lengths(skeleton.rest_pose())
    bones.setflags(write=False)
    lengths.setflags(write=False)
    return bones, lengths


def _bones(views: Views, options: RefineOptions) -> tuple[NDArray[np.int64], F64]:
    bones, reference = _skeleton_arrays(views.skeleton)
    if options.bone_reference is not None:
        reference = np.array(options.bone_reference)
        if reference.shape != (len(bones),):
            raise ValueError(
                f"bone_reference: expected {len(bones)} lengths for skeleton {views.skeleton.name!r}, "
                f"got {reference.shape[0]}"
            )
    return bones, reference


def _to_pixels(frames: Sequence[Views], points: F64) -> F64:
    """points (B, C, J, 2) box units -> pixels through each frame's boxes, in one array operation
    (frames without boxes keep box units). The arithmetic is that of :func:`box_to_pixels`."""
    boxed = [i for i, views in enumerate(frames) if views.boxes is not None]
    if not boxed:
        return points.copy()
    boxes = np.stack([frames[i].boxes for i in boxed])  # (b, C, 4), validated by Views
    size = boxes[..., 2:].max(axis=-1)[..., None, None]  # (b, C, 1, 1)
    if len(boxed) == len(frames):
        return points * size + boxes[..., None, :2]
    pixels = points.copy()
    pixels[boxed] = points[boxed] * size + boxes[..., None, :2]
    return pixels


def _solutions(
    frames: Sequence[Views], method: str, options: RefineOptions, x: F64, objective: F64, hx: F64, hobj: F64
) -> list[Solution]:
    """x (B, P), objective (B,), history hx (B, H, P), hobj (B, H) -> one Solution per frame.

    Every step runs on the whole batch; ``solve`` comes here with B = 1, so a frame's results are
    the same bits alone or in a batch."""
    C, J = frames[0].num_cameras, frames[0].num_joints
    pose, cameras = _unpack(x, C, J)
    reprojection = cameras.project(pose)
    pixels = _to_pixels(frames, reprojection)
    histories: list[History | None] = [None] * len(frames)
    if hx.shape[1] > 0:
        h_pose, h_cameras = _unpack(hx, C, J)
        steps = np.minimum(np.arange(hx.shape[1]) * options.history_every, options.steps).astype(np.int64)
        histories = [History(steps.copy(), hobj[i].copy(), h_pose[i], h_cameras.rotation[i], h_cameras.scale[i],
                             h_cameras.shift[i]) for i in range(len(frames))]
    return [
        Solution(
            method=method,
            pose3d=pose[i],
            cameras=WeakCameras(cameras.rotation[i], cameras.scale[i], cameras.shift[i]),
            reprojection=reprojection[i],
            reprojection_pixels=pixels[i],
            objective=float(objective[i]),
            x=x[i].copy(),
            history=histories[i],
        )
        for i in range(len(frames))
    ]


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")


_NEEDS_START = ("cameras: method='anipose' needs the cameras its bundle adjustment starts from, a "
                "metapose_geom.PerspectiveCameras (intrinsics in px, rough extrinsics)")


def _anipose_starts(cameras: Any, frames: int, num_cameras: int) -> list[PerspectiveCameras]:
    """One shared start (a PerspectiveCameras) or one per frame (a sequence), validated."""
    if isinstance(cameras, PerspectiveCameras):
        starts, names = [cameras], ["cameras"]
    elif isinstance(cameras, Sequence) and not isinstance(cameras, (str, bytes)):
        if len(cameras) != frames:
            raise ValueError(f"cameras: expected one PerspectiveCameras for all frames or one per frame "
                             f"({frames}), got a sequence of {len(cameras)}")
        starts, names = list(cameras), [f"cameras[{i}]" for i in range(frames)]
    else:
        raise ValueError(f"{_NEEDS_START}; got {type(cameras).__name__}")
    checked = []
    for start, name in zip(starts, names):
        start = PerspectiveCameras.checked(start, name)
        if start.num_cameras != num_cameras:
            raise ValueError(f"{name}: expected {num_cameras} cameras, one per view, got {start.num_cameras}")
        checked.append(start)
    return checked


def _solve_anipose(frames: Sequence[Views], cameras: Any, options: AniPoseOptions, bar: Any = None) -> list[Solution]:
    """AniPose on frames sharing C, J and K: one adjustment of a shared start over all frames'
    points, or one per frame with per-frame starts."""
    from .anipose import AniPoseError, anipose_solve, mixture_mean_pixels

    mixtures, _ = _stack(frames)
    N, C = mixtures.shape[:2]
    starts = _anipose_starts(cameras, N, C)
    unit = np.array([0.0, 0.0, 1.0, 1.0])  # views without boxes: pixels are box units
    boxes = np.stack([np.tile(unit, (C, 1)) if views.boxes is None else views.boxes for views in frames])
    points = mixture_mean_pixels(mixtures, boxes)  # (N, C, J, 2) px
    # a joint whose evidence is no sharper than one box (a missing keypoint, an invalid heatmap) is
    # missing for AniPose, not a point at the box centre
    missing = (mixtures[..., 3] >= UNINFORMATIVE_VARIANCE).all(axis=-1)  # (N, C, J)
    points[missing] = np.nan
    seen = (~missing).sum(axis=1)  # (N, J)
    if (seen < 2).any():
        frame, joint = (int(i) for i in np.argwhere(seen < 2)[0])
        name = frames[frame].skeleton.joints[joint]
        raise ValueError(
            f"frames[{frame}]: joint {joint} ({name}) has evidence in {seen[frame, joint]} view(s); AniPose "
            "triangulates only joints seen by two or more views (method='ir' handles missing joints)"
        )
    groups = [range(N)] if len(starts) == 1 else [range(i, i + 1) for i in range(N)]
    solutions: list[Solution] = []
    for group, start in zip(groups, starts):
        try:
            result = anipose_solve(points[group.start:group.stop], start, adjust_cameras=bool(options.adjust_cameras),
                                   adjust_intrinsics=bool(options.adjust_intrinsics), seed=int(options.seed))
        except AniPoseError as error:
            where = f"frames[{group.start}]" if len(group) == 1 else f"frames[{group.start}:{group.stop}]"
            raise AniPoseError(f"{where}: {error}; start from cameras closer to the truth, or pass "
                               "adjust_intrinsics=False", error.seconds) from error
        for i, frame in enumerate(group):
            pose, pixels = result.pose3d[i], result.reprojection[i]
            if not (np.isfinite(pose).all() and np.isfinite(pixels).all()):
                raise RuntimeError(
                    f"frames[{frame}]: aniposelib's bundle adjustment and triangulation gave non-finite values; "
                    "start from cameras closer to the truth, or pass adjust_intrinsics=False"
                )
            views = frames[frame]
            reprojection = pixels.copy() if views.boxes is None else pixels_to_box(pixels, views.boxes)
            loglik = geometry.mixture_log_likelihood(reprojection, views.mixtures)
            solutions.append(Solution(
                method="anipose",
                pose3d=pose.copy(),
                cameras=result.cameras,
                reprojection=reprojection,
                reprojection_pixels=pixels.copy(),
                objective=float(-loglik.mean()),
                x=np.empty(0),
            ))
        if bar is not None:
            bar.update(len(group))
    return solutions


def solve(views: Views, method: Method = "ir", options: Options = None,
          cameras: PerspectiveCameras | None = None) -> Solution:
    """Recover the pose and the cameras of one frame.

    Args:
        views: the frame's evidence (C >= 2 cameras, J joints, K components).
        method: ``"s1"`` (stage 1 alone: Procrustes of the monocular guesses), ``"ir"`` (stage 1,
            or a random start, then the iterative refiner) or ``"anipose"`` (aniposelib's bundle
            adjustment of ``cameras`` on the mixture means in pixels, then triangulation).
        options: :class:`RefineOptions` (``"s1"``, ``"ir"``) or :class:`AniPoseOptions`
            (``"anipose"``), or a mapping of its field names.
        cameras: ``"anipose"`` only, and needed there: the C perspective cameras to start from,
            in the pixels of the views' boxes.

    Returns:
        A :class:`Solution`: pose3d (J, 3), cameras, reprojection (C, J, 2) in box units and pixels,
        objective, and the history when asked for.
    """
    if not isinstance(views, Views):
        raise ValueError(f"views: expected a Views, got {type(views).__name__}")
    _check_method(method)
    opts = _options(options, method)
    if method == "anipose":
        if not isinstance(cameras, PerspectiveCameras):
            raise ValueError(f"{_NEEDS_START}; got {type(cameras).__name__}")
        return _solve_anipose([views], cameras, opts)[0]
    if cameras is not None:
        raise ValueError("cameras: only method='anipose' takes start cameras; 's1' and 'ir' find the cameras")
    bones, reference = _bones(views, opts)
    mono3d = None if views.mono3d is None else views.mono3d[None]
    x, objective, hx, hobj = _solve_arrays(views.mixtures[None], mono3d, method, opts, bones, reference)
    return _solutions([views], method, opts, x, objective, hx, hobj)[0]


def solve_batch(
    frames: Sequence[Views],
    method: Method = "ir",
    options: Options = None,
    progress: bool = True,
    chunk_size: int = 256,
    cameras: PerspectiveCameras | Sequence[PerspectiveCameras] | None = None,
) -> list[Solution]:
    """Solve many frames over all cores (``metapose_geom.set_num_threads``), with a progress bar.

    Frames must share C, J and K. For ``"s1"`` and ``"ir"`` the results equal :func:`solve` on
    each frame alone. For ``"anipose"``, ``cameras`` is either one :class:`PerspectiveCameras`
    (a fixed rig: one bundle adjustment on the points of all frames, AniPose's usual use) or a
    sequence with one per frame (each frame adjusted alone, as :func:`solve` does it).
    """
    _check_method(method)
    opts = _options(options, method)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected an integer >= 1, got {chunk_size!r}")
    frames = list(frames)
    if method == "anipose":
        from tqdm.auto import tqdm

        with tqdm(total=len(frames), desc="solve anipose", unit="frame", disable=not progress) as bar:
            return _solve_anipose(frames, cameras, opts, bar)
    if cameras is not None:
        raise ValueError("cameras: only method='anipose' takes start cameras; 's1' and 'ir' find the cameras")
    mixtures, mono3d = _stack(frames)
    bones, reference = _bones(frames[0], opts)
    from tqdm.auto import tqdm

    solutions: list[Solution] = []
    with tqdm(total=len(frames), desc=f"solve {method}", unit="frame", disable=not progress) as bar:
        for start in range(0, len(frames), chunk_size):
            stop = min(start + chunk_size, len(frames))
            chunk_mono = None if mono3d is None else mono3d[start:stop]
            x, objective, hx, hobj = _solve_arrays(mixtures[start:stop], chunk_mono, method, opts, bones, reference)
            solutions.extend(_solutions(frames[start:stop], method, opts, x, objective, hx, hobj))
            bar.update(stop - start)
    return solutions
