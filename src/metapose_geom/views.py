"""One frame's evidence from several uncalibrated views, validated.

A :class:`Views` holds, for C cameras and J joints, the per-joint 2D evidence as spherical
Gaussian mixtures in *box units* (``(pixel - box origin) / max(box width, box height)``,
variances divided by the size squared), optional monocular 3D guesses in the same box units, the
boxes that lead back to pixels, camera names and the skeleton.

Real detector output comes in through the ``from_*`` constructors, which take keypoints in
pixels (boxes are inferred around each view's keypoints when none are given) and monocular
guesses in any unit and origin (each view's guess is brought onto its 2D evidence by the
weighted least-squares scale and xy offset, :func:`align_mono3d`; the alignment is kept in
``Views.mono3d_alignment``). Input whose scale cannot be what the caller said is a ValueError
that says what to pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import as_float64, check_bool, check_choice, check_int, check_number
from .mixtures import (KEYPOINT_SIGMA, UNINFORMATIVE_VARIANCE, check_mixtures, keypoints_to_mixtures,
                       missing_joints, mixture_mean)
from .skeletons import H36M_17, Skeleton, mirror_image_poses

F64 = NDArray[np.float64]

__all__ = ["BOX_MARGIN", "FLAT_GUESS", "KEYPOINT_SIGMA", "MIRROR_WEIGHT", "UNINFORMATIVE_VARIANCE", "Views",
           "align_mono3d", "box_to_pixels", "camera_indices", "check_box_values", "check_evidence",
           "find_swapped_views", "infer_boxes", "mirror_image_guesses", "pixels_to_box"]

#: Margin on each side of an inferred box, as a fraction of the extent of the view's keypoints.
BOX_MARGIN = 0.1
#: Weight (relative to the keypoint's own component, 1) of the component that a keypoint's
#: mixture carries at its mirror joint's keypoint (a detector's left/right swap); 0: none.
MIRROR_WEIGHT = 0.1
#: A person in pixels spans more than this many pixels; keypoints that span less are box units.
MIN_PIXEL_SPREAD = 4.0
#: A person in box units spans about one box; 2D evidence that spans more than this is pixels.
MAX_BOX_SPREAD = 16.0
#: Guesses said to be in box units must fit their 2D evidence at a scale within this range.
BOX_SCALE_RANGE = (0.2, 5.0)
#: A view's guess whose joints spread (root mean square distance from their mean) no more than
#: this fraction of its largest coordinate has all its joints at one point, and so no scale: a
#: constant that float64 cannot hold (0.3) leaves about 1e-17 once centred.
FLAT_GUESS = 1e-9


def check_box_values(boxes: F64, name: str = "boxes") -> F64:
    """The rule for boxes (..., 4) ``[x, y, width, height]`` in pixels, shape already checked: finite,
    width and height > 0, and no overflow in the box's own arithmetic (its far corner ``x + width,
    y + height`` finite; its size ``max(width, height)`` at least the smallest normal float64, so
    ``1 / size`` is finite). Returns ``boxes``; raises ValueError naming ``name`` (and for (C, 4) or
    (B, C, 4) boxes the camera and the frame). Conversions through a valid box can still leave
    float64's range for points far enough out: :func:`box_to_pixels` and :func:`pixels_to_box` refuse
    that."""
    if not np.isfinite(boxes).all():
        raise ValueError(f"{name}: contains NaN or inf")
    if (boxes[..., 2:] <= 0).any():
        raise ValueError(f"{name}: width and height must be > 0")
    with np.errstate(over="ignore"):
        corner = boxes[..., :2] + boxes[..., 2:]
    overflows = ~np.isfinite(corner).all(axis=-1)
    tiny = boxes[..., 2:].max(axis=-1) < np.finfo(np.float64).tiny
    for bad, problem in ((overflows, "its far corner (x + width, y + height) overflows float64"),
                         (tiny, "its size is below the smallest normal float64, so 1 / size overflows")):
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            label = "".join(f"frame {i}, " for i in where[:-1]) + f"camera {where[-1]}'s box" if where else "the box"
            raise ValueError(f"{name}: {label} {boxes[where].tolist()} is not pixels: {problem}")
    return boxes


def _finite_result(result: F64, given: F64, names: str) -> F64:
    """``result`` of a conversion of ``given``: ValueError naming ``names`` where a finite value
    became inf (NaN, a missing keypoint, stays NaN)."""
    if not np.isfinite(result[np.isfinite(given)]).all():
        raise ValueError(f"{names}: values too large or too small for float64 (the conversion overflows)")
    return result


def _check_boxes(boxes: ArrayLike, cameras: int, frames: int | None = None) -> F64:
    """boxes (C, 4), or (B, C, 4) with ``frames`` = B."""
    array = as_float64(boxes, "boxes")
    lead = () if frames is None else (frames,)
    if array.shape != lead + (cameras, 4):
        raise ValueError(f"boxes: expected shape ({_dims(lead)}C={cameras}, 4) [x, y, width, height] in pixels, "
                         f"got {array.shape}")
    return check_box_values(array)


def _dims(lead: tuple[int, ...]) -> str:
    """The leading frame axis of a message's shape: ``"B=5, "`` or nothing."""
    return f"B={lead[0]}, " if lead else ""


def check_evidence(mixtures: ArrayLike, mono3d: ArrayLike | None, boxes: ArrayLike | None, skeleton: Skeleton,
                   stacked: bool = False) -> tuple[F64, F64 | None, F64 | None]:
    """The rules of :class:`Views`, for one frame or (``stacked``) B frames on a leading axis.

    mixtures (C, J, K, 4) or (B, C, J, K, 4) box units (C >= 2, J the skeleton's joint count,
    :func:`~metapose_geom.mixtures.check_mixtures`), mono3d (C, J, 3) / (B, C, J, 3) finite, no
    view's joints at one point (:data:`FLAT_GUESS`), or None, boxes (C, 4) / (B, C, 4) px (:func:`check_box_values`) or None -> the three as float64
    arrays (no copy where none was needed); ValueError naming the argument otherwise."""
    if not isinstance(skeleton, Skeleton):
        raise ValueError(f"skeleton: expected a Skeleton, got {type(skeleton).__name__}")
    array = as_float64(mixtures, "mixtures")
    lead_text = "B, " if stacked else ""
    if array.ndim != 4 + stacked or array.shape[-1] != 4 or 0 in array.shape:
        raise ValueError(f"mixtures: expected shape ({lead_text}C, J, K, 4) with {lead_text}C, J, K >= 1, "
                         f"got {array.shape}")
    lead = array.shape[:1] if stacked else ()
    cameras, joints = array.shape[-4:-2]
    if cameras < 2:
        raise ValueError(f"mixtures: at least two cameras are needed, got C = {cameras}")
    if joints != skeleton.num_joints:
        raise ValueError(f"mixtures: J = {joints} joints, but skeleton {skeleton.name!r} has {skeleton.num_joints}")
    array = check_mixtures(array, joint_names=tuple(skeleton.joints))
    guesses = None
    if mono3d is not None:
        guesses = as_float64(mono3d, "mono3d")
        if guesses.shape != lead + (cameras, joints, 3):
            raise ValueError(f"mono3d: expected shape ({_dims(lead)}C={cameras}, J={joints}, 3), got {guesses.shape}")
        if not np.isfinite(guesses).all():
            raise ValueError("mono3d: contains NaN or inf")
        _check_guess_spread(guesses)
    box = None if boxes is None else _check_boxes(boxes, cameras, lead[0] if lead else None)
    return array, guesses, box


def _check_guess_spread(guesses: F64) -> None:
    """(..., C, J, 3) finite: ValueError naming the first view (and frame) whose guess has all its
    joints at one point (:data:`FLAT_GUESS`, relative to the guess's own size)."""
    size = np.abs(guesses).max(axis=(-2, -1), keepdims=True)  # each view in units of its largest coordinate:
    scaled = guesses / np.where(size > 0, size, 1.0)  # no overflow whatever the magnitudes
    centred = scaled - scaled.mean(axis=-2, keepdims=True)
    spread = np.sqrt((centred**2).sum(axis=(-2, -1)) / guesses.shape[-2])  # (..., C), relative
    flat = np.argwhere(~(spread > FLAT_GUESS))
    if len(flat):
        where = tuple(int(i) for i in flat[0])
        *frame, camera = where
        at = "".join(f"frame {i}, " for i in frame)
        raise ValueError(
            f"mono3d: {at}camera {camera}'s guess has all its joints at one point (they spread {spread[where]:.3g} "
            f"times its largest coordinate, {size[where][0, 0]:.3g}), so it has no scale; give that view a real "
            "guess or leave it out (Views.subset)"
        )


def pixels_to_box(pixels: ArrayLike, boxes: ArrayLike) -> F64:
    """pixels (C, ..., 2), boxes (C, 4) ``[x, y, width, height]`` -> box units (C, ..., 2)."""
    points = as_float64(pixels, "pixels")
    box = _check_boxes(boxes, points.shape[0] if points.ndim else -1)
    shape = (box.shape[0],) + (1,) * (points.ndim - 2) + (2,)
    with np.errstate(over="ignore", invalid="ignore"):
        result = (points - box[:, :2].reshape(shape)) / box[:, 2:].max(axis=1).reshape(shape[:-1] + (1,))
    return _finite_result(result, points, "pixels, boxes")


def box_to_pixels(points: ArrayLike, boxes: ArrayLike) -> F64:
    """box units (C, ..., 2), boxes (C, 4) -> pixels (C, ..., 2); the inverse of :func:`pixels_to_box`."""
    array = as_float64(points, "points")
    box = _check_boxes(boxes, array.shape[0] if array.ndim else -1)
    shape = (box.shape[0],) + (1,) * (array.ndim - 2) + (2,)
    with np.errstate(over="ignore", invalid="ignore"):
        result = array * box[:, 2:].max(axis=1).reshape(shape[:-1] + (1,)) + box[:, :2].reshape(shape)
    return _finite_result(result, array, "points, boxes")


def infer_boxes(keypoints: ArrayLike, valid: ArrayLike | None = None, margin: float = BOX_MARGIN) -> F64:
    """keypoints (C, J, 2) pixels (NaN: missing), valid (C, J) bool or None -> boxes (C, 4) ``[x, y, width, height]``.

    Each view's box is the square around the bounding box of its valid keypoints (not NaN, and
    ``valid`` where given), centred on it, its side the larger extent times ``1 + 2 * margin``.
    ValueError naming the camera when a view has fewer than two distinct valid keypoints."""
    points = as_float64(keypoints, "keypoints")
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"keypoints: expected shape (C, J, 2), got {points.shape}")
    usable = ~np.isnan(points).any(axis=-1)
    if valid is not None:
        usable &= np.asarray(valid, dtype=bool)
    margin = check_number(margin, "margin", 0.0)
    boxes = np.empty((points.shape[0], 4))
    for camera, (view, keep) in enumerate(zip(points, usable)):
        seen = view[keep]
        extent = float((seen.max(axis=0) - seen.min(axis=0)).max()) if len(seen) else 0.0
        if extent <= 0.0:
            raise ValueError(
                f"keypoints: camera {camera} has {len(seen)} valid keypoint(s) at one spot, too few to infer its box "
                "(leave the view out with Views.subset, or give boxes)"
            )
        side = extent * (1.0 + 2.0 * margin)
        centre = (seen.max(axis=0) + seen.min(axis=0)) / 2.0
        boxes[camera] = [centre[0] - side / 2.0, centre[1] - side / 2.0, side, side]
    return check_box_values(boxes, "boxes (inferred)")


def align_mono3d(mono3d: ArrayLike, points: ArrayLike, weights: ArrayLike) -> tuple[F64, F64]:
    """Bring each view's monocular guess onto its 2D evidence.

    mono3d (C, J, 3) in any unit and origin, in the camera's axes (x right, y down, z away from
    the camera, as the image's), points (C, J, 2) the 2D evidence in box units, weights (C, J)
    >= 0 (0: no evidence) -> (aligned (C, J, 3) in box units, alignment (C, 3) ``[scale, offset_x,
    offset_y]``): per view the scale ``s > 0`` and offset ``o`` minimising
    ``sum_j w_j |s * mono3d_j[:2] + o - points_j|^2``; the aligned guess is ``s * mono3d + [o, 0]``
    (depth scaled alike, its origin kept: stage 1 centres each guess).

    ValueError naming the camera when a view has fewer than two joints with weight, a guess
    with all its weighted joints at one point, or a fit that needs a negative scale (the guess's
    axes are not the image's)."""
    guesses = as_float64(mono3d, "mono3d")
    array = as_float64(points, "points")
    w = as_float64(weights, "weights")
    if guesses.ndim != 3 or guesses.shape[-1] != 3 or array.shape != guesses.shape[:2] + (2,) \
            or w.shape != guesses.shape[:2]:
        raise ValueError(f"mono3d, points, weights: expected shapes (C, J, 3), (C, J, 2), (C, J); got "
                         f"{guesses.shape}, {array.shape}, {w.shape}")
    if not (np.isfinite(guesses).all() and np.isfinite(w).all()) or (w < 0).any():
        raise ValueError("mono3d, weights: expected finite values and weights >= 0")
    aligned = np.empty_like(guesses)
    alignment = np.empty((guesses.shape[0], 3))
    for camera in range(guesses.shape[0]):
        keep = (w[camera] > 0) & np.isfinite(array[camera]).all(axis=-1)
        if keep.sum() < 2:
            raise ValueError(f"mono3d: camera {camera} has {int(keep.sum())} joint(s) with 2D evidence; at least two "
                             "are needed to bring its guess into box units")
        weight = w[camera, keep] / w[camera, keep].sum()
        source, target = guesses[camera, keep, :2], array[camera, keep]
        source_mean, target_mean = weight @ source, weight @ target
        centred = source - source_mean
        spread = float(weight @ (centred**2).sum(axis=-1))
        size = float(np.abs(source).max())
        if not spread > (FLAT_GUESS * size) ** 2:
            raise ValueError(f"mono3d: camera {camera}'s guess has all its joints (with 2D evidence) at one point")
        scale = float(weight @ (centred * (target - target_mean)).sum(axis=-1)) / spread
        if not scale > 0.0:
            raise ValueError(
                f"mono3d: camera {camera}'s guess fits its 2D evidence only mirrored (scale {scale:.3g}); guesses "
                "must be in the camera's axes, x right, y down, z away from the camera"
            )
        offset = target_mean - scale * source_mean
        aligned[camera] = scale * guesses[camera]
        aligned[camera, :, :2] += offset
        alignment[camera] = [scale, *offset]
    return aligned, alignment


def _evidence_weights(mixtures: F64) -> tuple[F64, F64]:
    """mixtures (C, J, K, 4) -> each joint's point (C, J, 2) (the mixture mean) and a weight (C, J):
    one over the mixture's standard deviation (so a keypoint's weight is its confidence over
    ``KEYPOINT_SIGMA``), 0 for a joint with no real evidence."""
    mean = mixture_mean(mixtures)
    total = mixtures[..., 0].sum(axis=-1)
    offsets = ((mixtures[..., 1:3] - mean[..., None, :]) ** 2).sum(axis=-1)
    variance = (mixtures[..., 0] * (mixtures[..., 3] + offsets / 2.0)).sum(axis=-1) / total
    weights = np.where(missing_joints(mixtures), 0.0, 1.0 / np.sqrt(variance))
    return mean, weights


def _spread(points: F64, keep: NDArray[np.bool_]) -> F64:
    """points (C, J, 2), keep (C, J) -> (C,) the larger extent of each view's kept points (0 if none)."""
    spread = np.zeros(points.shape[0])
    for camera in range(points.shape[0]):
        seen = points[camera, keep[camera]]
        if len(seen):
            spread[camera] = float((seen.max(axis=0) - seen.min(axis=0)).max())
    return spread


def _check_box_unit_evidence(mixtures: F64) -> None:
    """(C, J, K, 4) said to be in box units: a view whose joints spread over more than
    ``MAX_BOX_SPREAD`` units is pixels (ValueError saying what to pass)."""
    spread = _spread(mixture_mean(mixtures), ~missing_joints(mixtures))
    if spread.max() > MAX_BOX_SPREAD:
        camera = int(spread.argmax())
        raise ValueError(
            f"mixtures: camera {camera}'s joints spread over {spread[camera]:.4g} units, which cannot be box units "
            "(a person spans about one box); give pixels with Views.from_keypoints(...) or "
            "Views.from_mixtures(..., units='pixels', boxes=...)"
        )


def mirror_image_guesses(mono3d: ArrayLike, skeleton: Skeleton = H36M_17) -> NDArray[np.bool_]:
    """mono3d (C, J, 3) -> (C,) True where a view's guess is a mirror image of a body: its best
    orthogonal fit onto the skeleton's rest pose (forearms left out) is a reflection. A guess in a
    left-handed frame (z towards the camera, or y up with x right) is one in every view; a view
    whose detector swapped the whole body is one alone. A judgement over many frames: a twisted
    pose can fit its own rest pose better mirrored (about 2.5% of synthetic poses), so one frame
    cannot tell a left-handed frame from such a pose; :class:`metapose_geom.io.Capture` judges
    the whole sequence."""
    return mirror_image_poses(as_float64(mono3d, "mono3d"), skeleton)


def _mono3d_in_box_units(mono3d: ArrayLike | None, mixtures: F64, units: str,
                         evidence: tuple[F64, F64] | None) -> tuple[F64 | None, F64 | None]:
    """The ``from_*`` constructors' monocular guesses: ``units="auto"`` aligns each view onto its
    2D evidence ``(points (C, J, 2), weights (C, J))`` (:func:`align_mono3d`); ``"box"`` keeps them and
    checks that their scale fits."""
    units = check_choice(units, "mono3d_units", ("auto", "box"))
    if mono3d is None:
        return None, None
    guesses = as_float64(mono3d, "mono3d")
    if guesses.shape != mixtures.shape[:2] + (3,):
        raise ValueError(f"mono3d: expected shape (C={mixtures.shape[0]}, J={mixtures.shape[1]}, 3), got {guesses.shape}")
    if not np.isfinite(guesses).all():
        raise ValueError("mono3d: contains NaN or inf")
    aligned, alignment = align_mono3d(guesses, *evidence)
    if units == "auto":
        return aligned, alignment
    low, high = BOX_SCALE_RANGE
    scale = alignment[:, 0]
    bad = np.flatnonzero((scale < low) | (scale > high))
    if len(bad):
        camera = int(bad[0])
        raise ValueError(
            f"mono3d: camera {camera}'s guess is {1.0 / scale[camera]:.3g} times the size of its 2D evidence in box "
            "units, so it is not in box units; pass mono3d_units='auto' to bring it there"
        )
    return guesses, None


def _with_mirror(mixtures: F64, skeleton: Skeleton, weight: float) -> F64:
    """(C, J, K, 4) -> (C, J, 2K, 4): each joint's mixture gains, at ``weight`` times its own
    weights, the components of its mirror joint (left <-> right), for joints with evidence whose
    mirror joint has evidence too; otherwise the added components have weight 0."""
    weight = check_number(weight, "mirror_weight", 0.0, 1.0)
    if weight == 0.0 or not skeleton.mirror_pairs:
        return mixtures
    index = skeleton.mirror_index()
    mirrored = mixtures[:, index].copy()
    missing = missing_joints(mixtures)
    usable = ~missing & ~missing[:, index] & (index != np.arange(len(index)))
    total = mixtures[..., 0].sum(axis=-1)  # (C, J), positive
    mirrored[..., 0] *= (np.where(usable, weight, 0.0) * total / total[:, index])[..., None]
    return np.concatenate([mixtures, mirrored], axis=2)


def _chirality_residual(first: F64, second: F64) -> F64:
    """first, second (..., J, 3) -> (...,): how badly a rotation and scale fit ``second`` onto
    ``first`` (both centred), from 0 (a perfect fit) to 1; a mirror image fits badly."""
    a = first - first.mean(axis=-2, keepdims=True)
    b = second - second.mean(axis=-2, keepdims=True)
    u, sigma, vt = np.linalg.svd(np.swapaxes(b, -1, -2) @ a)
    sign = np.sign(np.linalg.det(u @ vt))
    fit = sigma[..., 0] + sigma[..., 1] + sign * sigma[..., 2]
    norms = (a**2).sum(axis=(-1, -2)) * (b**2).sum(axis=(-1, -2))
    return 1.0 - fit**2 / np.maximum(norms, np.finfo(np.float64).tiny)


def _two_view_residual(first: F64, second: F64, seen: NDArray[np.bool_]) -> F64:
    """first, second (..., J, 2) one pose seen by two views, seen (..., J) the joints both see ->
    (...,): the share of the centred 4 x J measurement matrix's energy beyond rank 3 (0 when the
    two views are affine views of one rigid pose; a mirror-labelled view breaks it). NaN with
    fewer than 6 joints seen."""
    if first.shape[-2] < 6:  # a skeleton of fewer joints says nothing (and gives fewer than 4 singular values)
        return np.full(first.shape[:-2], np.nan)
    stacked = np.concatenate([first, second], axis=-1)  # (..., J, 4)
    weight = seen[..., None].astype(np.float64)
    count = weight.sum(axis=-2, keepdims=True)
    centred = (stacked - (weight * stacked).sum(axis=-2, keepdims=True) / np.maximum(count, 1.0)) * weight
    sigma = np.linalg.svd(centred, compute_uv=False)  # (..., 4)
    energy = (sigma**2).sum(axis=-1)
    residual = sigma[..., 3] ** 2 / np.maximum(energy, np.finfo(np.float64).tiny)
    return np.where(count[..., 0, 0] >= 6, residual, np.nan)


def _labellings(same: F64, crossed: F64, pairs: tuple[NDArray[np.int64], NDArray[np.int64]], cameras: int,
                margin: float, ceiling: float) -> NDArray[np.bool_]:
    """(C,) the views to swap, from pairwise misfits over ``pairs`` (``np.triu_indices(C, 1)``):
    ``same`` (pairs,) as given, ``crossed`` with the pair's second view relabelled (NaN: the pair
    says nothing). The labelling with the least total misfit is searched among all of them up to
    10 cameras (camera 0 kept: swapping every view is the same labelling), view by view beyond;
    it swaps fewer than half the views (the majority's left is left) and is taken only when, on
    the pairs it changes, its misfit is under ``margin`` times the given one's and its mean under
    ``ceiling`` (evidence that fits no labelling well says nothing about swaps)."""
    none = np.zeros(cameras, dtype=bool)
    first, second = pairs
    known = np.isfinite(same) & np.isfinite(crossed)
    same, crossed = np.where(known, same, 0.0), np.where(known, crossed, 0.0)

    def misfit(flips: NDArray[np.bool_]) -> F64:  # (N, C) -> (N,)
        return np.where(flips[:, first] != flips[:, second], crossed, same).sum(axis=-1)

    if cameras <= 10:
        codes = np.arange(2 ** (cameras - 1))
        options = ((codes[:, None] >> np.arange(cameras)) & 1).astype(bool)
    else:
        options = none[None]
        for camera in range(cameras):
            trial = options[-1].copy()
            trial[camera] = True
            if misfit(trial[None])[0] < misfit(options[-1:])[0]:
                options = np.vstack([options, trial])
    best = options[int(np.argmin(misfit(options)))]
    if best.sum() * 2 > cameras:
        best = ~best
    changed = (best[first] != best[second]) & known
    if best.sum() * 2 == cameras or not changed.any():
        return none  # half and half (no majority to follow), or nothing measured changes
    before, after = same[changed].sum(), crossed[changed].sum()
    return best if after < margin * before and after / changed.sum() < ceiling else none


#: find_swapped_views from guesses: a relabelling is taken when, on the pairs of views it changes,
#: the guesses' rotation-and-scale misfit falls under ``margin`` (argument) times the given one's
#: and its mean under this (one view's guess against another's misfits 0.02-0.3, more with large
#: depth errors; unrelated poses 0.5-0.9).
SWAP_GUESS_CEILING = 0.35
#: find_swapped_views from the 2D: the same, with the two views' energy beyond rank 3 as the
#: misfit (views of one pose leave under 1% beyond rank 3).
SWAP_RANK_CEILING = 0.05


def find_swapped_views(mono3d: ArrayLike | None = None, points: ArrayLike | None = None,
                       weights: ArrayLike | None = None, skeleton: Skeleton = H36M_17,
                       margin: float | None = None) -> NDArray[np.bool_]:
    """One frame's views whose left and right are swapped: a detector that takes the person's back
    for their front labels the whole body mirrored.

    Args:
        mono3d: (C, J, 3) monocular guesses; a swapped view's guess is a mirror image that no
            rotation fits onto the other views' guesses.
        points, weights: (C, J, 2) the 2D evidence and (C, J) its weights (0: missing): two
            affine views of one pose stack into a rank-3 matrix, and a swapped view breaks it
            (judged per pair of views on the joints both see, with their mirror joints; at
            least 6 are needed). With guesses too, each pair's two misfits, each in units of
            its ceiling, are added.
        margin: a relabelling is taken only when, on the pairs of views it changes, its misfit
            is under ``margin`` times the given one's (and its mean under a ceiling,
            :data:`SWAP_GUESS_CEILING`, :data:`SWAP_RANK_CEILING`); None: 0.6 with both sources,
            0.4 with one. On 300 synthetic frames each at 3, 4 and 8 cameras (5 px noise,
            occluded joints missing) these found no swap in clean frames and 93-94% (both) or
            78-89% (2D alone) of one view's whole-body swaps.

    Returns:
        (C,) bool, True for the views to relabel. The labelling chosen has the least misfit
        summed over pairs of views, up to swapping every view, which nothing can tell apart; it
        swaps fewer than half the views. With fewer than three views nothing says which one is
        swapped: all False.
    """
    if mono3d is None and points is None:
        raise ValueError("mono3d, points: give the monocular guesses or the 2D evidence")
    sources = (mono3d is not None) + (points is not None)
    margin = (0.6 if sources == 2 else 0.4) if margin is None else check_number(margin, "margin", 0.0, 1.0)
    index = skeleton.mirror_index()
    cameras = as_float64(mono3d if mono3d is not None else points, "mono3d" if mono3d is not None else "points").shape[0]
    if not skeleton.mirror_pairs or cameras < 3:
        return np.zeros(cameras, dtype=bool)
    first, second = np.triu_indices(cameras, 1)
    same = np.zeros(len(first))
    crossed = np.zeros(len(first))
    measured = np.zeros(len(first), dtype=bool)
    # each source's misfit in units of its ceiling, summed where both speak
    if mono3d is not None:
        guesses = as_float64(mono3d, "mono3d")
        same += _chirality_residual(guesses[first], guesses[second]) / SWAP_GUESS_CEILING
        crossed += _chirality_residual(guesses[first], guesses[second][:, index]) / SWAP_GUESS_CEILING
        measured[:] = True
    if points is not None:
        array = as_float64(points, "points")
        seen = np.ones(array.shape[:2], dtype=bool) if weights is None else as_float64(weights, "weights") > 0
        seen &= np.isfinite(array).all(axis=-1)
        array = np.where(seen[..., None], array, 0.0)
        plain = _two_view_residual(array[first], array[second], seen[first] & seen[second])
        mirrored = _two_view_residual(array[first], array[second][:, index], seen[first] & seen[second][:, index])
        known = np.isfinite(plain) & np.isfinite(mirrored)
        same += np.where(known, plain, 0.0) / SWAP_RANK_CEILING
        crossed += np.where(known, mirrored, 0.0) / SWAP_RANK_CEILING
        measured |= known
    return _labellings(np.where(measured, same, np.nan), np.where(measured, crossed, np.nan), (first, second),
                       cameras, margin, float(sources))


def camera_indices(cameras: Sequence[int | str], names: Sequence[str]) -> list[int]:
    """Cameras given by index (negative counts from the end) or by name, among ``names`` -> their
    indices in that order; ValueError naming ``cameras`` for an unknown or repeated camera."""
    index = []
    for camera in cameras:
        if isinstance(camera, str):
            if camera not in names:
                raise ValueError(f"cameras: no camera named {camera!r}; have {tuple(names)}")
            index.append(list(names).index(camera))
        else:
            count = len(names)
            try:
                index.append(check_int(camera, "cameras", -count, count - 1) % count)
            except ValueError:
                raise ValueError(f"cameras: {camera!r} is not a camera index in [0, {count}) or a name") from None
    if len(set(index)) != len(index):
        raise ValueError(f"cameras: repeated camera in {list(cameras)}")
    return index


def _frozen(array: F64) -> F64:
    """A read-only copy: a Views never shares memory with its caller, and nobody writes into it.
    Its dtype is numpy's own float64 object, which the compiled core asks for (an array rebuilt
    from a pickle carries an equal but other one, and ``np.array(..., copy=True)`` keeps it)."""
    copy = array.astype(np.float64, order="C", copy=True)
    copy.setflags(write=False)
    return copy


@dataclass(frozen=True)
class Views:
    """Validated evidence for one frame, held as read-only copies of what was given.

    The constructor takes box units (the solver's array contract); real detector output comes
    in through :meth:`from_keypoints`, :meth:`from_mixtures` and :meth:`from_heatmaps`, which take
    pixels and monocular guesses in any unit.

    Attributes:
        mixtures: (C, J, K, 4) ``[weight, mu_x, mu_y, variance]`` in box units.
        mono3d: (C, J, 3) monocular 3D guess per view in box units (xy on the 2D evidence), or None.
        boxes: (C, 4) ``[x, y, width, height]`` in pixels, or None (then pixels are box units).
        camera_names: C names.
        skeleton: the joint layout; J equals ``skeleton.num_joints``.
        mono3d_alignment: (C, 3) ``[scale, offset_x, offset_y]`` that brought guesses given in
            other units into box units (``box = scale * given + [offset_x, offset_y, 0]``), or
            None when they were given in box units.
        swapped: (C,) bool, the views whose left and right the ``from_*`` constructor swapped
            back (:func:`find_swapped_views`; their mixtures and guesses are relabelled), or None
            when this was not looked for.
    """

    mixtures: F64
    mono3d: F64 | None = None
    boxes: F64 | None = None
    camera_names: tuple[str, ...] = ()
    skeleton: Skeleton = field(default=H36M_17)
    mono3d_alignment: F64 | None = None
    swapped: NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        mixtures, mono3d, boxes = check_evidence(self.mixtures, self.mono3d, self.boxes, self.skeleton)
        _check_box_unit_evidence(mixtures)
        object.__setattr__(self, "mixtures", _frozen(mixtures))
        if mono3d is not None:
            object.__setattr__(self, "mono3d", _frozen(mono3d))
        if boxes is not None:
            object.__setattr__(self, "boxes", _frozen(boxes))
        cameras = mixtures.shape[0]
        if self.mono3d_alignment is not None:
            alignment = as_float64(self.mono3d_alignment, "mono3d_alignment")
            if mono3d is None or alignment.shape != (cameras, 3) or not np.isfinite(alignment).all() \
                    or (alignment[:, 0] <= 0).any():
                raise ValueError(f"mono3d_alignment: expected ({cameras}, 3) [scale > 0, offset_x, offset_y] beside "
                                 f"a mono3d, got {alignment.shape}")
            object.__setattr__(self, "mono3d_alignment", _frozen(alignment))
        if self.swapped is not None:
            swapped = np.array(self.swapped, copy=True)
            if swapped.shape != (cameras,) or swapped.dtype != bool:
                raise ValueError(f"swapped: expected ({cameras},) bool, got {swapped.shape} {swapped.dtype}")
            swapped.setflags(write=False)
            object.__setattr__(self, "swapped", swapped)
        names = tuple(self.camera_names) or tuple(f"cam{c}" for c in range(cameras))
        if len(names) != cameras or len(set(names)) != cameras:
            raise ValueError(f"camera_names: expected {cameras} distinct names, got {names}")
        object.__setattr__(self, "camera_names", names)

    def __reduce__(self) -> tuple[type[Views], tuple]:
        """Pickled, copied and deep-copied as the constructor's arguments: the copy is validated
        again and holds fresh read-only arrays that the compiled core takes (a spawn pool's
        children get working frames)."""
        return type(self), (self.mixtures, self.mono3d, self.boxes, self.camera_names, self.skeleton,
                            self.mono3d_alignment, self.swapped)

    # ------------------------------------------------------------------ sizes

    @property
    def num_cameras(self) -> int:
        return int(self.mixtures.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.mixtures.shape[1])

    @property
    def num_components(self) -> int:
        return int(self.mixtures.shape[2])

    # ------------------------------------------------------------------ constructors

    @classmethod
    def _from_box_units(cls, mixtures: F64, mono3d: ArrayLike | None, boxes: ArrayLike | None,
                        camera_names: Sequence[str], skeleton: Skeleton, mono3d_units: str,
                        repair_swaps: bool, evidence: tuple[F64, F64] | None = None) -> Views:
        """The constructors' common end: mixtures checked in box units, guesses brought there,
        and (``repair_swaps``) views whose left and right are swapped relabelled. ``evidence`` is
        the 2D both steps fit (points (C, J, 2), weights (C, J)); None: the mixtures' means."""
        if not isinstance(skeleton, Skeleton):
            raise ValueError(f"skeleton: expected a Skeleton, got {type(skeleton).__name__}")
        mixtures, _, _ = check_evidence(mixtures, None, None, skeleton)
        repair = check_bool(repair_swaps, "repair_swaps")
        if evidence is None and (mono3d is not None or repair):
            evidence = _evidence_weights(mixtures)
        guesses, alignment = _mono3d_in_box_units(mono3d, mixtures, mono3d_units, evidence)
        swapped = None
        if repair:
            swapped = find_swapped_views(guesses, *evidence, skeleton)
            if swapped.any():
                index = skeleton.mirror_index()
                mixtures = mixtures.copy()
                mixtures[swapped] = mixtures[swapped][:, index]
                if guesses is not None:
                    guesses = guesses.copy()
                    guesses[swapped] = guesses[swapped][:, index]
        return cls(mixtures, guesses, boxes, tuple(camera_names), skeleton, alignment, swapped)

    @classmethod
    def from_mixtures(
        cls,
        mixtures: ArrayLike,
        mono3d: ArrayLike | None = None,
        boxes: ArrayLike | None = None,
        camera_names: Sequence[str] = (),
        skeleton: Skeleton = H36M_17,
        units: str = "box",
        *,
        mono3d_units: str = "auto",
        repair_swaps: bool = True,
    ) -> Views:
        """mixtures (C, J, K, 4) in box units, or in pixels with ``units="pixels"`` (boxes needed);
        mono3d (C, J, 3) in any unit and origin (``mono3d_units="auto"``, aligned per view onto the
        mixture means weighted by their sharpness) or in box units (``"box"``, checked);
        ``repair_swaps`` as :meth:`from_keypoints`."""
        array = as_float64(mixtures, "mixtures")
        if check_choice(units, "units", ("box", "pixels")) == "pixels":
            if boxes is None:
                raise ValueError("boxes: needed to convert mixtures given in pixels to box units")
            if array.ndim != 4 or array.shape[-1] != 4:
                raise ValueError(f"mixtures: expected shape (C, J, K, 4), got {array.shape}")
            box = _check_boxes(boxes, array.shape[0])
            size = box[:, 2:].max(axis=1)[:, None, None]
            array = array.copy()
            array[..., 1:3] = pixels_to_box(array[..., 1:3], box)
            array[..., 3] /= size**2
        return cls._from_box_units(array, mono3d, boxes, camera_names, skeleton, mono3d_units, repair_swaps)

    @classmethod
    def from_keypoints(
        cls,
        keypoints: ArrayLike,
        confidences: ArrayLike,
        boxes: ArrayLike | None = None,
        mono3d: ArrayLike | None = None,
        camera_names: Sequence[str] = (),
        skeleton: Skeleton = H36M_17,
        *,
        units: str = "pixels",
        mono3d_units: str = "auto",
        box_margin: float = BOX_MARGIN,
        mirror_weight: float = MIRROR_WEIGHT,
        repair_swaps: bool = True,
    ) -> Views:
        """A detector's output: keypoints (C, J, 2) in pixels, confidences (C, J) in [0, 1].

        Args:
            keypoints: (C, J, 2) pixels (``units="pixels"``, the default) or box units
                (``units="box"``, then without boxes); NaN marks a missing joint.
            confidences: (C, J) in [0, 1]; 0 marks a missing joint.
            boxes: (C, 4) ``[x, y, width, height]`` pixels; None infers a square box around each
                view's valid keypoints (:func:`infer_boxes`, ``box_margin`` on each side).
            mono3d: (C, J, 3) monocular guesses in the camera's axes (x right, y down, z away),
                any unit and origin (``mono3d_units="auto"``: each view brought onto its keypoints
                by the confidence-weighted least-squares scale and xy offset, recorded in
                ``mono3d_alignment``), or in box units (``"box"``: used as given, its scale checked).
                A guess whose xy fit needs a mirror is refused; a left-handed guess (z towards the
                camera) cannot be told from one frame (:func:`mirror_image_guesses`; a
                :class:`metapose_geom.io.Capture` checks it over the sequence).
            mirror_weight: weight of a second component at the mirror joint's keypoint (a
                detector's left/right swap), relative to the keypoint's own; 0 for none. The
                default 0.1 costs 0.3 mm PMPJPE on synthetic frames without swaps and saves
                9 mm (3% of left/right pairs swapped per view) to 52 mm (10%); neutral on the
                shared real capture (README, "Real captures"). It moves the mixture mean 10%
                towards the mirror joint: for ``method="anipose"``, which triangulates the
                means, pass 0.
            repair_swaps: with 3 or more views, relabel the views whose whole body is swapped
                left for right (:func:`find_swapped_views`, from the guesses when given, else
                from the 2D; recorded in ``swapped``).

        Each keypoint becomes a component at the keypoint with standard deviation
        ``KEYPOINT_SIGMA / confidence`` box units (capped at one box). A joint with confidence 0
        or a NaN keypoint is missing: its component sits at the box centre with variance
        ``UNINFORMATIVE_VARIANCE``, so it barely pulls the solution. Keypoints whose spread cannot
        be in the units given (a person within 4 pixels, or over 16 boxes) are a ValueError.
        """
        points = as_float64(keypoints, "keypoints")
        if points.ndim != 3 or points.shape[-1] != 2 or 0 in points.shape:
            raise ValueError(f"keypoints: expected shape (C, J, 2), got {points.shape}")
        conf = as_float64(confidences, "confidences")
        if conf.shape != points.shape[:2]:
            raise ValueError(f"confidences: expected shape {points.shape[:2]} (C, J), got {conf.shape}")
        if not np.isfinite(conf).all() or (conf < 0).any() or (conf > 1).any():
            raise ValueError("confidences: expected finite values in [0, 1]")
        if np.isinf(points).any():
            raise ValueError("keypoints: contains inf (use NaN for a missing joint)")
        box_margin = check_number(box_margin, "box_margin", 0.0)
        valid = (conf > 0) & ~np.isnan(points).any(axis=-1)
        spread = _spread(points, valid)
        if check_choice(units, "units", ("pixels", "box")) == "box":
            if boxes is not None:
                raise ValueError("boxes: keypoints in box units take no boxes (give pixels with their boxes)")
            if spread.max() > MAX_BOX_SPREAD:
                raise ValueError(f"keypoints: they spread over {spread.max():.4g} units, which cannot be box units (a "
                                 "person spans about one box); pass units='pixels' (the default)")
        else:
            if spread.max() < MIN_PIXEL_SPREAD:
                raise ValueError(f"keypoints: they spread over {spread.max():.3g} pixels at most, which cannot be a "
                                 "person in pixels; for box units pass units='box'")
            if boxes is None:
                boxes = infer_boxes(points, valid, box_margin)
            points = pixels_to_box(points, boxes)  # NaN (missing) stays NaN
        if not isinstance(skeleton, Skeleton):
            raise ValueError(f"skeleton: expected a Skeleton, got {type(skeleton).__name__}")
        if points.shape[1] != skeleton.num_joints:
            raise ValueError(f"keypoints: J = {points.shape[1]} joints, but skeleton {skeleton.name!r} has "
                             f"{skeleton.num_joints}")
        mixtures = _with_mirror(keypoints_to_mixtures(points, conf), skeleton, mirror_weight)
        evidence = (np.where(valid[..., None], points, 0.0), np.where(valid, conf, 0.0))  # the keypoints themselves
        return cls._from_box_units(mixtures, mono3d, boxes, camera_names, skeleton, mono3d_units, repair_swaps,
                                   evidence)

    @classmethod
    def from_heatmaps(
        cls,
        heatmaps: ArrayLike,
        boxes: ArrayLike | None,
        mono3d: ArrayLike | None = None,
        camera_names: Sequence[str] = (),
        skeleton: Skeleton = H36M_17,
        num_components: int = 4,
        steps: int = 5,
        limits: ArrayLike = (0.0, 0.0, 1.0, 1.0),
        on_invalid: str = "raise",
        negative: str = "clip",
        *,
        mono3d_units: str = "auto",
        repair_swaps: bool = True,
    ) -> Views:
        """heatmaps (C, J, H, W), boxes (C, 4) ``[x, y, width, height]`` px or None, mono3d (C, J, 3) or None.

        Each heatmap covers its view's box (``limits`` ``(x_min, y_min, x_max, y_max)``, box units:
        (4,) for all, default the whole square box, (C, 1, 4) per view or (C, J, 4) per heatmap)
        and becomes a K-component mixture in box
        units by :func:`metapose_geom.heatmaps.fit_mixtures` (weighted EM, ``steps`` steps;
        ``on_invalid`` and ``negative`` as there: ``on_invalid="uninformative"`` turns a blank or
        broken heatmap into a missing joint). ``boxes`` only lead back to pixels; without them
        pixels are box units. ``mono3d``, ``mono3d_units`` and ``repair_swaps`` as :meth:`from_mixtures`.
        """
        from .heatmaps import fit_mixtures  # numba is imported on first use only

        array = as_float64(heatmaps, "heatmaps")
        if array.ndim != 4 or 0 in array.shape:
            raise ValueError(f"heatmaps: expected shape (C, J, H, W) with all sizes >= 1, got {array.shape}")
        mixtures = fit_mixtures(array, num_components, steps, limits, on_invalid, negative)
        return cls._from_box_units(mixtures, mono3d, boxes, camera_names, skeleton, mono3d_units, repair_swaps)

    # ------------------------------------------------------------------ selections and units

    def subset(self, cameras: Sequence[int | str]) -> Views:
        """The views of the given cameras (indices or names), in that order; the first is the reference."""
        index = camera_indices(cameras, self.camera_names)
        return Views(
            self.mixtures[index],
            None if self.mono3d is None else self.mono3d[index],
            None if self.boxes is None else self.boxes[index],
            tuple(self.camera_names[i] for i in index),
            self.skeleton,
            None if self.mono3d_alignment is None else self.mono3d_alignment[index],
            None if self.swapped is None else self.swapped[index],
        )

    def to_pixels(self, points: ArrayLike) -> F64:
        """(C, ..., 2) box units -> pixels through this frame's boxes (unchanged without boxes)."""
        array = as_float64(points, "points")
        return array.copy() if self.boxes is None else box_to_pixels(array, self.boxes)
