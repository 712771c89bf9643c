"""``solve``, ``solve_batch`` and ``solve_arrays``: one frame, many frames, or stacked arrays, by any
registered method (:mod:`metapose_geom.solver.methods`).

S1, IR and stage 2 (``"metapose"``) work in box units throughout; the recovered pose is in camera 0's weak-perspective
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

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from .._checks import check_int
from ..geometry import PerspectiveCameras, get_num_threads, set_num_threads
from ..skeletons import H36M_17, Skeleton
from ..views import Views, check_evidence
from .methods import CallSettings, Frames, RegisteredMethod, cameras_message, lookup
from .options import Options, resolve_options
from .results import BatchSolution, Solution

if TYPE_CHECKING:
    import torch

__all__ = ["solve", "solve_arrays", "solve_batch"]

Cameras = PerspectiveCameras | Sequence[PerspectiveCameras] | None


class _Silent:
    """No progress bar."""

    @staticmethod
    def update(n: int) -> None:
        pass


_SILENT = _Silent()
_UNIT_BOX = np.array([0.0, 0.0, 1.0, 1.0])
_UNIT_BOX.setflags(write=False)

# set_num_threads is one process-wide count; calls that set their own hold this lock throughout.
_THREADS_LOCK = threading.RLock()


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """Run the block on ``count`` core threads (None: leave the global setting), restoring it after.

    Calls that pass a count run one at a time (a lock), so none of them sees another's count and
    the global setting is what it was once they are done; a call without a count that runs at the
    same time may see a temporary count."""
    if count is None:
        yield
        return
    with _THREADS_LOCK:
        previous = get_num_threads()
        set_num_threads(count)
        try:
            yield
        finally:
            set_num_threads(previous)


def _method(method: str, options: Options, cameras: Any) -> tuple[RegisteredMethod, Any]:
    """The registry entry of ``method`` and its resolved options; start cameras only where taken."""
    entry = lookup(method)
    resolved = resolve_options(entry.options_type, options, method)
    if cameras is not None and not entry.takes_cameras:
        raise ValueError(cameras_message())
    return entry, resolved


def _run(entry: RegisteredMethod, frames: Frames, options: Any, cameras: Any, chunk_size: int, progress: bool,
         threads: int | None, device: Any) -> BatchSolution | list[Solution]:
    from tqdm.auto import tqdm

    count = frames.mixtures.shape[0]
    with tqdm(total=count, desc=f"solve {entry.name}", unit="frame", disable=not progress) as bar, _threads(threads):
        return entry.function(frames, options, CallSettings(entry.name, cameras, chunk_size, bar, device))


def _check_run(chunk_size: int, threads: int | None) -> int | None:
    check_int(chunk_size, "chunk_size", 1)
    return None if threads is None else check_int(threads, "threads", 0)


def _check_device(device: Any, entry: RegisteredMethod) -> Any:
    """None (the compiled core) or the torch.device ``device`` names (:mod:`.device`, which imports torch)."""
    if device is None:
        return None
    from .device import resolve_device

    return resolve_device(device, entry.name)


def _stack(frames: Sequence[Views]) -> Frames:
    """Frames sharing C, J, K, the skeleton, and whether they have monocular guesses -> stacked."""
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
        if views.skeleton is not first.skeleton and views.skeleton != first.skeleton:
            raise ValueError(f"frames[{i}]: skeleton {views.skeleton.name!r} differs from frames[0]'s "
                             f"{first.skeleton.name!r}")
    mixtures = np.stack([views.mixtures for views in frames])
    mono3d = None if first.mono3d is None else np.stack([views.mono3d for views in frames])
    boxed = np.array([views.boxes is not None for views in frames])
    if not boxed.any():
        return Frames(mixtures, mono3d, None, None, first.skeleton)
    unit = np.broadcast_to(_UNIT_BOX, (mixtures.shape[1], 4))
    boxes = np.stack([unit if views.boxes is None else views.boxes for views in frames])
    return Frames(mixtures, mono3d, boxes, None if boxed.all() else boxed, first.skeleton)


def solve(views: Views, method: str = "ir", options: Options = None, cameras: PerspectiveCameras | None = None
          ) -> Solution:
    """Recover the pose and the cameras of one frame.

    Args:
        views: the frame's evidence (C >= 2 cameras, J joints, K components).
        method: ``"s1"`` (the start alone: stage 1, the Procrustes of the monocular guesses, or
            without guesses the affine factorisation of the 2D), ``"ir"`` (that start, then the
            iterative refiner), ``"metapose"`` (that start, then the learned stage-2 solver,
            without torch; optionally the refiner after it) or ``"anipose"`` (aniposelib's bundle
            adjustment of ``cameras`` on the mixture means in pixels, then triangulation); any
            name in :func:`metapose_geom.solver.methods.method_names`.
        options: :class:`RefineOptions` (``"s1"``, ``"ir"``), :class:`MetaPoseOptions`
            (``"metapose"``: the weights file, stages, refiner steps after the network) or
            :class:`AniPoseOptions` (``"anipose"``), or a mapping of its field names.
        cameras: ``"anipose"`` only, and needed there: the C perspective cameras to start from,
            in the pixels of the views' boxes.

    Returns:
        A :class:`Solution`: pose3d (J, 3), cameras, reprojection (C, J, 2) in box units and pixels,
        objective, and the history when asked for.
    """
    if not isinstance(views, Views):
        raise ValueError(f"views: expected a Views, got {type(views).__name__}")
    entry, resolved = _method(method, options, cameras)
    frames = Frames(views.mixtures[None], None if views.mono3d is None else views.mono3d[None],
                    None if views.boxes is None else views.boxes[None], None, views.skeleton)
    return entry.function(frames, resolved, CallSettings(entry.name, cameras, 1, _SILENT))[0]


def solve_batch(
    frames: Sequence[Views],
    method: str = "ir",
    options: Options = None,
    progress: bool = True,
    chunk_size: int = 256,
    cameras: Cameras = None,
    threads: int | None = None,
    device: str | torch.device | None = None,
) -> list[Solution]:
    """B frames (Views sharing C, J, K) -> B Solutions, over all cores (``set_num_threads``), with a progress bar.

    Frames must share C, J, K and the skeleton. For ``"s1"``, ``"ir"`` and ``"metapose"`` the results equal
    :func:`solve` on each frame alone, whatever the thread count. For ``"anipose"``, ``cameras``
    is either one :class:`PerspectiveCameras` (a fixed rig: one bundle adjustment on the points of
    all frames, AniPose's usual use) or a sequence with one per frame (each frame adjusted alone,
    as :func:`solve` does it).

    Args:
        chunk_size: frames per call of the compiled core (the progress bar moves per chunk).
        threads: core threads for this call only (0: one per hardware core); None uses the global
            setting. The global setting is restored afterwards; calls that pass ``threads`` run
            one at a time. No effect on the torch device path (torch's own pool).
        device: None (the compiled core) or ``"cpu"``, ``"cuda"``, ``"cuda:N"``, a ``torch.device``:
            ``"s1"`` and ``"ir"`` run each chunk batched in torch (float64) on that device
            (:mod:`metapose_geom.solver.device`, needs the ``train`` extra), stage 1 in torch and the
            ``"factorization"`` or ``"random"`` starts in numpy; results equal the core's to 1e-6
            (not bit for bit), as the same types, on the CPU. ValueError for another value, another
            method, or CUDA where torch sees none.

    Returns:
        One :class:`Solution` per frame; :func:`solve_arrays` gives the stacked
        :class:`BatchSolution` instead, and ``BatchSolution.from_solutions`` stacks these.
    """
    entry, resolved = _method(method, options, cameras)
    threads = _check_run(chunk_size, threads)
    device = _check_device(device, entry)
    stacked = _stack(list(frames))
    result = _run(entry, stacked, resolved, cameras, chunk_size, progress, threads, device)
    return result.solutions() if isinstance(result, BatchSolution) else result


def solve_arrays(
    mixtures: ArrayLike,
    mono3d: ArrayLike | None = None,
    boxes: ArrayLike | None = None,
    method: str = "ir",
    options: Options = None,
    *,
    skeleton: Skeleton = H36M_17,
    cameras: Cameras = None,
    progress: bool = True,
    chunk_size: int = 256,
    threads: int | None = None,
    device: str | torch.device | None = None,
) -> BatchSolution:
    """mixtures (B, C, J, K, 4), mono3d (B, C, J, 3), boxes (B, C, 4) px -> a :class:`BatchSolution` of B frames.

    The array twin of :func:`solve_batch`, without building a :class:`Views` per frame: the same
    validation runs once on the stacked arrays, and the results equal ``solve_batch``'s frame
    for frame, bit for bit.

    Args:
        mixtures: (B, C, J, K, 4) ``[weight, mu_x, mu_y, variance]`` in box units.
        mono3d: (B, C, J, 3) monocular guesses in box units, or None (then the start is the
            affine factorisation of the 2D, :mod:`metapose_geom.factorization`).
        boxes: (B, C, 4) ``[x, y, width, height]`` in pixels, or None (pixels are box units).
        method: a method that gives weak cameras (``"s1"``, ``"ir"``); ``"anipose"`` gives
            perspective cameras per frame: use :func:`solve_batch` for it.
        options, cameras, progress, chunk_size, threads, device: as :func:`solve_batch`.
        skeleton: the joint layout; J must equal its joint count.

    Returns:
        A :class:`BatchSolution`: pose3d (B, J, 3), rotation (B, C, 3, 3), scale (B, C), shift
        (B, C, 3), reprojection and reprojection_pixels (B, C, J, 2), objective (B,), x (B, P);
        ``batch[i]`` is frame i's :class:`Solution`, ``batch.solutions()`` the list.
    """
    entry, resolved = _method(method, options, cameras)
    if not entry.stacked:
        raise ValueError(f"method: {method!r} does not give weak cameras to stack; use solve_batch")
    threads = _check_run(chunk_size, threads)
    device = _check_device(device, entry)
    if not isinstance(skeleton, Skeleton):
        raise ValueError(f"skeleton: expected a Skeleton, got {type(skeleton).__name__}")
    mixtures, mono3d, boxes = check_evidence(mixtures, mono3d, boxes, skeleton, stacked=True)
    frames = Frames(mixtures, mono3d, boxes, None, skeleton)
    return _run(entry, frames, resolved, cameras, chunk_size, progress, threads, device)
