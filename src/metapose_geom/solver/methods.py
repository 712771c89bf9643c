"""THE registry of the solver's methods: a name maps to its options type and one batched function.

:func:`metapose_geom.solve`, :func:`~metapose_geom.solve_batch` and
:func:`~metapose_geom.solve_arrays` find a method here and nowhere else. Adding a method is one
:func:`register` call with a :class:`RegisteredMethod` and its function; the function takes

- ``frames``: :class:`Frames`, B frames' evidence stacked and validated (``solve`` gives B = 1),
- ``options``: an instance of the entry's options type (already resolved),
- ``call``: :class:`CallSettings`: the method's name (stamped on the results), the start cameras
  (only for ``takes_cameras`` methods), the chunk size and a progress counter to update,

and returns a :class:`~metapose_geom.solver.results.BatchSolution` (a ``stacked`` method: weak
cameras) or a list of B :class:`~metapose_geom.solver.results.Solution`.

The methods today:

- ``"s1"``: the start alone (:func:`stage1`): stage 1, the Procrustes of the monocular guesses,
  when the views have them, else the multi-view affine factorisation of the 2D evidence
  (:mod:`metapose_geom.factorization`); ``RefineOptions.init`` picks another start;
- ``"ir"``: that start, then the iterative refiner (:func:`refine`);
- ``"metapose"``: that start, then the stage-2 network (:func:`metapose`, numpy inference of
  :mod:`metapose_geom.stage2`, no torch), then optionally some steps of the refiner;
- ``"anipose"``: aniposelib's bundle adjustment of start cameras on the mixture means in pixels,
  then triangulation (:func:`anipose`, needs the ``anipose`` extra).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

from .. import geometry, layout
from .._checks import check_bool
from .._core_loader import core as _core
from ..factorization import TWO_VIEW_WARNING, factorize_frames
from ..geometry import PerspectiveCameras
from ..mixtures import missing_joints, mixture_mean
from ..skeletons import Skeleton
from ..views import pixels_to_box
from .options import AniPoseOptions, MetaPoseOptions, RefineOptions
from .results import BatchSolution, DivergenceWarning, History, Solution, _built

F64 = NDArray[np.float64]

__all__ = [
    "DIVERGENCE_TOLERANCE", "CallSettings", "Frames", "Progress", "RegisteredMethod", "anipose", "lookup",
    "metapose", "method_names", "refine", "register", "stage1", "unregister",
]

#: A refinement diverged when it ends more than this above its start's objective (a mean negative
#: log-likelihood per view and joint: 0.01 is a likelihood 1% lower). Less is the noise of Adam's
#: last steps around a minimum: from a start at the truth the objective ends up to 4e-4 above it
#: on synthetic frames (default options); a learning rate of 1.0 ends 1 to 140 above.
DIVERGENCE_TOLERANCE = 0.01


# --------------------------------------------------------------------------- what a method's function takes


class Frames(NamedTuple):
    """B frames' evidence, stacked and validated (by :class:`~metapose_geom.Views` or ``solve_arrays``)."""

    mixtures: F64  #: (B, C, J, K, 4) ``[weight, mu_x, mu_y, variance]``, box units
    mono3d: F64 | None  #: (B, C, J, 3) monocular guesses in box units, or None
    boxes: F64 | None  #: (B, C, 4) ``[x, y, width, height]`` px, or None: no frame has boxes
    #: (B,) which frames have boxes when only some do (the others hold unit boxes in ``boxes`` and
    #: their pixels are box units); None when every frame has them or none has
    boxed: NDArray[np.bool_] | None
    skeleton: Skeleton  #: the frames' joint layout (J joints)


class Progress(Protocol):
    """Counts solved frames (a tqdm bar, or nothing)."""

    def update(self, n: int) -> object: ...


class CallSettings(NamedTuple):
    """The settings of one call that a method's function needs besides the frames and options."""

    method: str  #: the registry name, stamped on the results
    cameras: Any  #: start cameras (``takes_cameras`` methods), else None
    chunk_size: int  #: frames per call of the compiled core (progress granularity)
    progress: Progress
    #: a torch.device: ``"s1"`` and ``"ir"`` run each chunk in torch there (:mod:`.device`); None: the core
    device: Any = None


MethodFunction = Callable[[Frames, Any, CallSettings], "BatchSolution | list[Solution]"]
#: A step between the start and the refiner (stage 2): a chunk's mixtures (B, C, J, K, 4), start
#: x (B, P), reference bone lengths (B, nB) and first frame's index -> the new x (B, P).
StartStep = Callable[[F64, F64, F64, int], F64]


@dataclass(frozen=True)
class RegisteredMethod:
    """One entry of the registry.

    Attributes:
        name: what callers pass as ``method``.
        options_type: the frozen dataclass of its options (built from a mapping or defaults when
            the caller passes one or None).
        function: the batched function (see the module's docstring).
        takes_cameras: it needs start cameras (``cameras=``); the others reject them.
        stacked: its function returns a BatchSolution (weak cameras), so ``solve_arrays`` serves it.
        summary: one line for messages and docs.
    """

    name: str
    options_type: type
    function: MethodFunction
    takes_cameras: bool = False
    stacked: bool = True
    summary: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: expected a non-empty string, got {self.name!r}")
        if not (isinstance(self.options_type, type) and dataclasses.is_dataclass(self.options_type)):
            raise ValueError(f"options_type: expected a dataclass type, got {self.options_type!r}")
        if not callable(self.function):
            raise ValueError(f"function: expected a callable, got {type(self.function).__name__}")
        object.__setattr__(self, "takes_cameras", check_bool(self.takes_cameras, "takes_cameras"))
        object.__setattr__(self, "stacked", check_bool(self.stacked, "stacked"))


_REGISTRY: dict[str, RegisteredMethod] = {}


def register(method: RegisteredMethod) -> RegisteredMethod:
    """Add ``method`` under its name (ValueError if the name is taken) and return it."""
    if not isinstance(method, RegisteredMethod):
        raise ValueError(f"method: expected a RegisteredMethod, got {type(method).__name__}")
    if method.name in _REGISTRY:
        raise ValueError(f"method: {method.name!r} is registered already")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> RegisteredMethod:
    """Remove the method ``name`` and return its entry."""
    return _REGISTRY.pop(lookup(name).name)


def lookup(name: str) -> RegisteredMethod:
    """The entry of ``name``; ValueError listing the registered names otherwise."""
    method = _REGISTRY.get(name) if isinstance(name, str) else None
    if method is None:
        raise ValueError(f"method: expected one of {method_names()}, got {name!r}")
    return method


def method_names() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(_REGISTRY)


def cameras_message() -> str:
    """The error for start cameras given to a method that finds its own."""
    takers = [name for name, method in _REGISTRY.items() if method.takes_cameras]
    finders = [name for name, method in _REGISTRY.items() if not method.takes_cameras]
    return (f"cameras: only method={_listing(takers, 'or')} takes start cameras; {_listing(finders, 'and')} "
            "find the cameras")


def _listing(names: Sequence[str], conjunction: str) -> str:
    """``'a'``, ``'a' and 'b'``, ``'a', 'b' and 'c'`` (``-`` for none)."""
    quoted = [repr(name) for name in names] or ["-"]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} {conjunction} {quoted[-1]}"


# --------------------------------------------------------------------------- s1 and ir: weak cameras


@functools.lru_cache(maxsize=16)
def _built_skeleton_arrays(skeleton: Skeleton) -> tuple[NDArray[np.int64], F64]:
    bones = np.array(skeleton.bones, dtype=np.int64)
    lengths = skeleton.bone_lengths(skeleton.rest_pose())
    bones.setflags(write=False)
    lengths.setflags(write=False)
    return bones, lengths


# the last skeleton asked for and its arrays: a solve per frame finds them without hashing the skeleton
_LAST_SKELETON: tuple[Skeleton | None, tuple[NDArray[np.int64], F64] | None] = (None, None)


def _skeleton_arrays(skeleton: Skeleton) -> tuple[NDArray[np.int64], F64]:
    """A skeleton's bones (nB, 2) and rest-pose bone lengths (nB,), built once (read-only)."""
    global _LAST_SKELETON
    last, arrays = _LAST_SKELETON
    if last is not skeleton or arrays is None:
        arrays = _built_skeleton_arrays(skeleton)
        _LAST_SKELETON = (skeleton, arrays)
    return arrays


def _bones(skeleton: Skeleton, options: RefineOptions) -> tuple[NDArray[np.int64], F64]:
    bones, reference = _skeleton_arrays(skeleton)
    if options.bone_reference is not None:
        reference = np.array(options.bone_reference)
        if reference.shape != (len(bones),):
            raise ValueError(
                f"bone_reference: expected {len(bones)} lengths for skeleton {skeleton.name!r}, "
                f"got {reference.shape[0]}"
            )
    return bones, reference


def _random_init(mixtures: F64, seed: int) -> F64:
    """(B, C, J, K, 4) -> (B, P): a random pose of box-unit size, random rotations, unit scales, and
    shifts at the centre of each view's evidence (the mean of all its joints' components pooled as
    one mixture). The random draws depend on the seed only, so a frame starts from the same point
    alone or in a batch."""
    B, C, J, K = mixtures.shape[:4]
    rng = np.random.default_rng(seed)
    pose = rng.normal(scale=0.3, size=(J, 3))
    rot6d = rng.normal(size=(C, 6))
    centre = mixture_mean(mixtures.reshape(B, C, J * K, 4))  # (B, C, 2)
    return layout.pack(
        np.broadcast_to(pose, (B, J, 3)),
        np.broadcast_to(rot6d, (B, C, 6)),
        np.full((B, C), layout.raw_from_scale(1.0)),
        np.concatenate([centre, np.zeros((B, C, 1))], axis=-1),
    )


def _init_choice(options: RefineOptions, mono3d: F64 | None) -> str:
    """The start ``options.init`` names, with ``"auto"`` resolved: stage 1 with monocular guesses,
    else the factorisation."""
    if options.init != "auto":
        return options.init
    return "s1" if mono3d is not None else "factorization"


def _start(mixtures: F64, mono3d: F64 | None, options: RefineOptions, skeleton: Skeleton, first_frame: int) -> F64:
    """A chunk's start x (B, P) by :func:`_init_choice`; errors name frames from ``first_frame``."""
    init = _init_choice(options, mono3d)
    if init == "s1":
        if mono3d is None:
            raise ValueError(
                "mono3d: stage 1 needs monocular 3D guesses; give Views a mono3d, or pass options "
                "init='auto' or 'factorization' to start from the 2D evidence alone"
            )
        return _core.stage1(mono3d)
    if init == "factorization":
        return factorize_frames(mixtures, skeleton, first_frame)
    return _random_init(mixtures, options.seed)


# The core names a failing frame by its index in the arrays it was given (a chunk), after the
# arguments it calls x or x0, which the caller never saw.
_CORE_INDEX = re.compile(r",? at index \((\d+),\)$")
_CORE_FLAT = re.compile(r" \(the result overflows at flat position (\d+)\)$")
_CORE_NAMES = re.compile(r"^(x0?(, mixtures)?): ")


def _frame_error(error: ValueError, first_frame: int, size: int) -> ValueError:
    """The core's ValueError about frame i of a chunk as one about ``frames[first_frame + i]``
    (``size``: the chunk's values per frame in the array the core reports a flat position of);
    ``error`` itself when it names no frame."""
    message = str(error)
    found = _CORE_INDEX.search(message) or _CORE_FLAT.search(message)
    if found is None:
        return error
    index = int(found.group(1))
    frame = first_frame + (index if found.re is _CORE_INDEX else index // size)
    return ValueError(f"frames[{frame}]: {_CORE_NAMES.sub('', message[:found.start()])}")


class _Chunk(NamedTuple):
    """What :func:`_solve_chunk` gives for B frames (the fields of a BatchSolution but its history)."""

    x: F64  #: (B, P) as the refiner left it
    objective: F64  #: (B,)
    history_x: F64  #: (B, H, P)
    history_objective: F64  #: (B, H)
    diverged: NDArray[np.bool_]  #: (B,)
    pose: F64  #: (B, J, 3) camera 0's frame
    rotation: F64  #: (B, C, 3, 3)
    scale: F64  #: (B, C)
    shift: F64  #: (B, C, 3)
    reprojection: F64  #: (B, C, J, 2) box units
    pixels: F64  #: (B, C, J, 2) through ``boxes`` (box units without)


def _solve_chunk(mixtures: F64, mono3d: F64 | None, boxes: F64 | None, refine: bool, options: RefineOptions,
                 bones: NDArray[np.int64], reference: F64, skeleton: Skeleton, first_frame: int,
                 network: StartStep | None = None, device: Any = None
                 ) -> tuple[_Chunk, tuple[int, int, int] | None]:
    """A stacked chunk: the start, then ``network`` (stage 2) when given, then one core call
    (``_core.solve_weak``): the start's objective, (``refine``) the refiner, each result in camera
    0's frame, its reprojection and pixels through ``boxes`` (B, C, 4) or None. ``diverged``: the
    refiner ended above where it began (:data:`DIVERGENCE_TOLERANCE`). Errors name frames from
    ``first_frame``; what the results cannot express (:func:`_problem_error`) comes back as
    ``(kind, frame, camera)`` with the frame counted from ``first_frame``, or None.

    With a torch ``device`` (methods without a network: :func:`.device.resolve_device` refuses the
    others) the start and the refiner run there (:func:`_solve_on_device`), and the core call only
    expresses the result (no steps): camera 0's frame, reprojection, pixels, objective."""
    B, C, J = mixtures.shape[:3]
    P = layout.solution_size(C, J)
    # one row per frame (the core takes per-frame references)
    references = reference[None] if B == 1 else np.repeat(reference[None], B, axis=0)
    on_device = None
    try:
        if device is None:
            x0 = _start(mixtures, mono3d, options, skeleton, first_frame)
            if network is not None:
                x0 = network(mixtures, x0, references, first_frame)
        else:
            x0, *on_device = _solve_on_device(mixtures, mono3d, refine, options, bones, reference, skeleton,
                                              first_frame, device)
        (x, objective, start_objective, history_x, history_objective, pose, rotation, scale, shift, reprojection,
         pixels, problem) = _core.solve_weak(
            mixtures, x0, bones, references, options.bone_weight, options.steps, options.learning_rate,
            options.beta1, options.beta2, options.epsilon, options.history_every, refine and device is None, boxes)
    except ValueError as error:
        renamed = _frame_error(error, first_frame, P)
        if renamed is error:
            raise
        raise renamed from None
    if on_device:  # the core only expressed the device's result: its history and start objective hold
        history_x, history_objective, start_objective = on_device
    if problem is not None:
        problem = (problem[0], first_frame + problem[1], problem[2])
    diverged = objective > start_objective + DIVERGENCE_TOLERANCE if refine else np.zeros(B, dtype=bool)
    return _Chunk(x, objective, history_x, history_objective, diverged, pose, rotation, scale, shift, reprojection,
                  pixels), problem


def _solve_on_device(mixtures: F64, mono3d: F64 | None, refine: bool, options: RefineOptions,
                     bones: NDArray[np.int64], reference: F64, skeleton: Skeleton, first_frame: int,
                     device: Any) -> tuple[F64, F64, F64, F64]:
    """The start and (``refine``) the refiner of a chunk in torch on ``device`` (:mod:`.device`; a
    start other than stage 1 is computed here in numpy and moved there) -> x (B, P), history x
    (B, H, P), history objective (B, H), objective at the start (B,)."""
    from .device import solve_chunk

    numpy_start = None
    if _init_choice(options, mono3d) != "s1" or mono3d is None:
        numpy_start = _start(mixtures, mono3d, options, skeleton, first_frame)
    x, _, history_x, history_objective, start_objective = solve_chunk(
        mixtures, mono3d, numpy_start, refine, options, bones, reference, first_frame, device)
    return x, history_x, history_objective, start_objective


def _problem_error(problem: tuple[int, int, int], x: F64, boxes: F64 | None, C: int, J: int,
                   options: RefineOptions) -> ValueError:
    """The error for what ``_core.solve_weak`` reports of a frame of the call (``problem``: kind,
    frame, camera; x (B, P) and boxes (B, C, 4) those of the call): kind 1, a camera scale that is
    0 or infinite relative to camera 0's (finite x, extreme values); 2, a reprojection beyond
    float64; 3, pixels beyond float64 through the box."""
    kind, frame, camera = problem
    where = f"frames[{frame}]"
    if kind == 1:
        scale = layout.scale_from_raw(layout.unpack(x[frame], C, J).scale_raw)
        extreme = ~(np.isfinite(scale) & (scale > 0))
        camera = int(np.flatnonzero(extreme)[0]) if extreme.any() else int(np.argmax(np.abs(np.log(scale))))
        return ValueError(
            f"{where}: refinement diverged: camera {camera}'s scale became {scale[camera]:.3g}, beyond what "
            f"float64 holds relative to the others; lower learning_rate (now {options.learning_rate:g})"
        )
    if kind == 2:
        return ValueError(f"{where}: reprojection: camera {camera}'s projection of the pose overflows float64 (values "
                          "too large)")
    return ValueError(f"{where}: reprojection_pixels: camera {camera}'s pixels overflow float64 through its box "
                      f"{boxes[frame, camera].tolist()}")


def _weak(frames: Frames, options: RefineOptions, call: CallSettings, refine: bool,
          network: StartStep | None = None) -> BatchSolution:
    """The start (:func:`_init_choice`), then ``network`` (stage 2) when given, then (``refine``)
    the refiner, chunk by chunk; every step runs on whole chunks and treats each frame alone, and
    ``solve`` comes here with B = 1, so a frame's results are the same bits alone or in a batch. A
    two-view factorisation start warns once per call."""
    bones, reference = _bones(frames.skeleton, options)
    mixtures, mono3d, boxes = frames.mixtures, frames.mono3d, frames.boxes
    count = mixtures.shape[0]
    if mixtures.shape[1] == 2 and _init_choice(options, mono3d) == "factorization":
        warnings.warn(TWO_VIEW_WARNING, UserWarning, stacklevel=4)  # user -> solve -> method -> _weak
    chunks, problem = [], None
    for start in range(0, count, call.chunk_size):
        stop = min(start + call.chunk_size, count)
        chunk, found = _solve_chunk(mixtures[start:stop], None if mono3d is None else mono3d[start:stop],
                                    None if boxes is None else boxes[start:stop], refine, options, bones, reference,
                                    frames.skeleton, start, network, call.device)
        chunks.append(chunk)
        if found is not None and (problem is None or found[0] < problem[0]):
            problem = found  # the lowest kind, then the lowest frame (chunks come in frame order)
        call.progress.update(stop - start)
    result = chunks[0] if len(chunks) == 1 else _Chunk(*(np.concatenate(part) for part in zip(*chunks)))
    if problem is not None:  # after every chunk's core errors, as each step once ran over all frames
        raise _problem_error(problem, result.x, boxes, *mixtures.shape[1:3], options)
    if frames.boxed is not None:  # the frames without boxes hold unit boxes: their pixels are box units
        result.pixels[~frames.boxed] = result.reprojection[~frames.boxed]

    history = None
    hx = result.history_x
    if hx.shape[1] > 0:
        C, J = mixtures.shape[1:3]
        steps = np.minimum(np.arange(hx.shape[1]) * options.history_every, options.steps).astype(np.int64)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # a path may pass through extremes
            history = History(steps, result.history_objective, *layout.in_camera0(hx, C, J))
    diverged = result.diverged
    flagged = np.count_nonzero(diverged) if refine else 0  # count_nonzero: a third of any()'s cost on one frame
    if flagged:
        warnings.warn(
            f"{flagged} of {count} frame{'s' if count > 1 else ''} ended the refinement above the "
            f"objective of {'their' if count > 1 else 'its'} start (diverged: flagged in Solution.diverged); lower "
            f"learning_rate (now {options.learning_rate:g}), give more steps (now {options.steps}), or take the "
            "start with method='s1'",
            DivergenceWarning, stacklevel=4)
    # the core's new arrays and a (B,) bool diverged: BatchSolution's __init__ would check nothing more
    return _built(BatchSolution, method=call.method, pose3d=result.pose, rotation=result.rotation, scale=result.scale,
                  shift=result.shift, reprojection=result.reprojection, reprojection_pixels=result.pixels,
                  objective=result.objective, x=result.x, history=history, diverged=diverged)


def stage1(frames: Frames, options: RefineOptions, call: CallSettings) -> BatchSolution:
    """``"s1"``: the start alone (``options.init``; by default the Procrustes of the monocular
    guesses into camera 0's frame, or the factorisation without them); objective at that start."""
    return _weak(frames, options, call, refine=False)


def refine(frames: Frames, options: RefineOptions, call: CallSettings) -> BatchSolution:
    """``"ir"``: the start of ``options.init`` (stage 1, the factorisation or a random start), then
    ``options.steps`` Adam steps."""
    return _weak(frames, options, call, refine=True)


def _name_key(name: str) -> str:
    return "".join(character for character in name.lower() if character not in "_- ")


def pad_components(mixtures: F64, count: int) -> F64:
    """mixtures (..., K, 4) -> (..., count, 4) for K <= count: the extra components copy the first
    one's mean and variance with weight 0, so the mixture's density is unchanged (up to the
    1e-8 weight floor of the log-likelihood). Keypoint views (K = 2) so run on a network trained
    on heatmap mixtures of K = 4. ValueError for K > count."""
    K = mixtures.shape[-2]
    if K > count:
        raise ValueError(f"mixtures: the stage-2 network takes at most {count} components per joint, got {K}")
    if K == count:
        return mixtures
    extra = np.repeat(mixtures[..., :1, :], count - K, axis=-2)
    extra[..., 0] = 0.0
    return np.concatenate([mixtures, extra], axis=-2)


def metapose(frames: Frames, options: MetaPoseOptions, call: CallSettings) -> BatchSolution:
    """``"metapose"``: the start of ``options.init`` (as ``"s1"``), the stage-2 network
    (:class:`~metapose_geom.stage2.forward.Stage2Network` of ``options.weights`` or the shipped
    weights, in numpy; views with fewer mixture components than the network's get zero-weight
    ones, :func:`pad_components`), then ``options.ir_steps`` Adam steps of the refiner (none by default);
    the objective (no bone term) at the final x. The network sees each frame alone, so a frame's
    results are the same bits alone or in a batch."""
    from ..stage2.forward import Stage2Network

    network = Stage2Network.load(options.weights)
    config, skeleton = network.config, frames.skeleton
    # names compare as skeleton_map's aliases do (case, "_", "-" and spaces ignored)
    if _name_key(config.skeleton) != _name_key(skeleton.name) or config.num_joints != skeleton.num_joints:
        raise ValueError(f"weights: {network.source} is a model of skeleton {config.skeleton!r} ({config.num_joints} "
                         f"joints); the views follow {skeleton.name!r} ({skeleton.num_joints} joints)")
    takes_bones = "bones" in config.inputs
    if takes_bones and config.num_bones != len(skeleton.bones):
        raise ValueError(f"weights: {network.source} takes {config.num_bones} bone lengths; skeleton "
                         f"{skeleton.name!r} has {len(skeleton.bones)} bones")
    if options.stages is not None and options.stages > config.num_stages:
        raise ValueError(f"stages: the model {network.source} has {config.num_stages} stage(s), got {options.stages}")
    dtype = np.float32 if options.dtype == "float32" else np.float64

    def run_network(mixtures: F64, x0: F64, references: F64, first_frame: int) -> F64:
        mixtures = pad_components(mixtures, config.num_components)
        outputs = network.forward(mixtures, x0, references if takes_bones else None, options.stages, dtype)
        if not outputs:
            return x0
        x = outputs[-1]
        finite = np.isfinite(x).all(axis=-1)
        if not finite.all():
            frame = first_frame + int(np.flatnonzero(~finite)[0])
            raise ValueError(f"frames[{frame}]: the stage-2 network ({network.source}) gave non-finite values")
        return x

    return _weak(frames, options.refine_options, call, refine=options.ir_steps > 0, network=run_network)


# --------------------------------------------------------------------------- anipose: perspective cameras


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


def anipose(frames: Frames, options: AniPoseOptions, call: CallSettings) -> list[Solution]:
    """``"anipose"``: one adjustment of a shared start (``call.cameras`` a PerspectiveCameras) over
    all frames' points, or one per frame with per-frame starts (a sequence of them), then
    triangulation. A joint with no real evidence in a view (:func:`metapose_geom.mixtures.missing_joints`)
    is left out of that view; one left with fewer than two views is a ValueError."""
    from ..anipose import AniPoseError, anipose_solve, mixture_mean_pixels

    mixtures = frames.mixtures
    N, C = mixtures.shape[:2]
    starts = _anipose_starts(call.cameras, N, C)
    unit = np.array([0.0, 0.0, 1.0, 1.0])  # frames without boxes: pixels are box units
    boxes = np.broadcast_to(unit, (N, C, 4)) if frames.boxes is None else frames.boxes
    points = mixture_mean_pixels(mixtures, boxes)  # (N, C, J, 2) px
    # a joint whose evidence is no sharper than one box (a missing keypoint, an invalid heatmap) is
    # missing for AniPose, not a point at the box centre
    missing = missing_joints(mixtures)  # (N, C, J)
    points[missing] = np.nan
    seen = (~missing).sum(axis=1)  # (N, J)
    if (seen < 2).any():
        frame, joint = (int(i) for i in np.argwhere(seen < 2)[0])
        name = frames.skeleton.joints[joint]
        raise ValueError(
            f"frames[{frame}]: joint {joint} ({name}) has evidence in {seen[frame, joint]} view(s); AniPose "
            "triangulates only joints seen by two or more views (method='ir' handles missing joints)"
        )
    groups = [range(N)] if len(starts) == 1 else [range(i, i + 1) for i in range(N)]
    solutions: list[Solution] = []
    for group, start in zip(groups, starts):
        try:
            result = anipose_solve(points[group.start:group.stop], start, adjust_cameras=options.adjust_cameras,
                                   adjust_intrinsics=options.adjust_intrinsics, seed=options.seed)
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
            has_box = frames.boxes is not None and (frames.boxed is None or frames.boxed[frame])
            reprojection = pixels_to_box(pixels, boxes[frame]) if has_box else pixels.copy()
            loglik = geometry.mixture_log_likelihood(reprojection, mixtures[frame])
            solutions.append(Solution(
                method=call.method,
                pose3d=pose.copy(),
                cameras=result.cameras,
                reprojection=reprojection,
                reprojection_pixels=pixels.copy(),
                objective=float(-loglik.mean()),
                x=np.empty(0),
            ))
        call.progress.update(len(group))
    return solutions


# --------------------------------------------------------------------------- the registry's entries


register(RegisteredMethod("s1", RefineOptions, stage1,
                          summary="the start alone: stage 1 (monocular guesses) or the factorisation of the 2D"))
register(RegisteredMethod("ir", RefineOptions, refine,
                          summary="the start (stage 1, factorisation or random), then the iterative refiner"))
register(RegisteredMethod("anipose", AniPoseOptions, anipose, takes_cameras=True, stacked=False,
                          summary="aniposelib's bundle adjustment of start cameras, then triangulation"))
register(RegisteredMethod("metapose", MetaPoseOptions, metapose,
                          summary="the start, then the learned stage-2 solver (shipped or given weights), "
                                  "then optionally the refiner"))
