"""Skeleton definitions: joint names, bones and a rest pose; detector landmark sets and their maps.

The Human3.6M 17-joint skeleton is the library's default (design.md, section 2). Other
skeletons are mapped into it explicitly: a :class:`Landmarks` names a detector's output in its
order, and a :class:`SkeletonMap` says which landmarks each H36M-17 joint averages. Maps ship for
BlazePose-33 (MediaPipe Pose), COCO-17 (RTMPose, ViTPose, YOLO-pose), OpenPose BODY_25 and
Halpe-26 (:func:`skeleton_map`). Every set is mapped alike, from the same named landmarks:

- pelvis = mean of the two hips (BODY_25's ``MidHip`` and Halpe-26's ``Hip`` are not used);
- r/l hip, knee, ankle, shoulder, elbow, wrist = that landmark;
- spine = mean of both shoulders and both hips; thorax = mean of the two shoulders (BODY_25's
  and Halpe-26's ``Neck`` are not used);
- neck_nose = the nose;
- head = mean of the two ears. A detector without a head-top landmark can only give the head's
  centre, so every map, Halpe-26 included (whose ``Head`` is the top of the head), uses the ears
  and "head" means the same point whatever the detector.

A joint's confidence is the lowest of its landmarks' (conservative), and a joint with any
landmark missing is missing. The BlazePose map is the reference table shipped with the Pose2Sim
capture (its ``h36m_from_blazepose``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import as_float64


def _index_pairs(pairs: object) -> tuple[tuple[int, int], ...] | None:
    """``pairs`` as a tuple of (int, int), or None when it is not a sequence of pairs of integers
    (bools are not integers)."""
    if isinstance(pairs, (str, bytes)):
        return None
    try:
        rows = [tuple(pair) for pair in pairs]  # type: ignore[union-attr]
    except TypeError:
        return None
    if any(len(row) != 2 or any(isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) for i in row)
           for row in rows):
        return None
    return tuple((int(a), int(b)) for a, b in rows)


def _check_mirror_pairs(pairs: object, count: int, what: str) -> tuple[tuple[int, int], ...]:
    """``pairs`` as a tuple of pairs; ValueError naming ``mirror_pairs`` unless they are disjoint
    pairs of distinct indices in [0, count)."""
    checked = _index_pairs(pairs)
    seen = [] if checked is None else [i for pair in checked for i in pair]
    if checked is None or any(a == b for a, b in checked) or len(set(seen)) != len(seen) \
            or any(not 0 <= i < count for i in seen):
        raise ValueError(f"mirror_pairs: expected disjoint pairs of distinct {what} indices in [0, {count}), "
                         f"got {pairs!r}")
    return checked


def _mirror_index(pairs: tuple[tuple[int, int], ...], count: int) -> NDArray[np.int64]:
    """(count,) the permutation that exchanges each pair's two indices and keeps every other index."""
    index = np.arange(count, dtype=np.int64)
    for left, right in pairs:
        index[left], index[right] = right, left
    return index


def _names(values: object) -> tuple[str, ...] | None:
    """``values`` as a tuple of non-empty strings, or None."""
    try:
        names = tuple(values)  # type: ignore[arg-type]
    except TypeError:
        return None
    return names if all(isinstance(name, str) and name for name in names) else None


@dataclass(frozen=True)
class Skeleton:
    """Joint names (J,), bones as (parent, child) joint-index pairs, a rest pose (J, 3) in mm, and
    the left/right pairs (a joint and its mirror image: what a detector's left/right swap exchanges)."""

    name: str
    joints: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    rest_pose_mm: tuple[tuple[float, float, float], ...]
    mirror_pairs: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        """Every field checked (ValueError naming it) and held as tuples of Python values, so a
        skeleton given lists or numpy values equals, and hashes as, the same one given tuples."""
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name: expected a non-empty string, got {self.name!r}")
        joints = None if isinstance(self.joints, (str, bytes)) else _names(self.joints)
        if not joints or len(set(joints)) != len(joints):
            raise ValueError(f"joints: expected a sequence of distinct non-empty names (one or more), got "
                             f"{self.joints!r}")
        count = len(joints)
        bones = _index_pairs(self.bones)
        if not bones:
            raise ValueError(f"bones: expected one or more (parent, child) pairs of joint indices, got {self.bones!r}")
        for index, (parent, child) in enumerate(bones):
            for joint in (parent, child):
                if not 0 <= joint < count:
                    raise ValueError(f"bones: joint index {joint} outside [0, {count}) in bone {index} "
                                     f"({parent}, {child})")
            if parent == child:
                raise ValueError(f"bones: bone {index} ({parent}, {child}) joins a joint to itself")
        try:
            rest = np.array(self.rest_pose_mm, dtype=np.float64)
        except (TypeError, ValueError):
            rest = np.empty(0)
        if rest.shape != (count, 3) or not np.isfinite(rest).all():
            raise ValueError(f"rest_pose_mm: expected {count} rows (one per joint) of 3 finite numbers (x, y, z "
                             f"in mm), got {np.shape(rest) if rest.size else repr(self.rest_pose_mm)[:80]}")
        parents, children = np.array(bones).T
        lengths = np.linalg.norm(rest[children] - rest[parents], axis=-1)
        if not (lengths > 0).all():
            index = int(np.flatnonzero(~(lengths > 0))[0])
            raise ValueError(f"rest_pose_mm: bone {index} {bones[index]} has length 0 in the rest pose; bone lengths "
                             "are the refiner's reference")
        mirror_pairs = _check_mirror_pairs(self.mirror_pairs, count, "joint")
        object.__setattr__(self, "joints", joints)
        object.__setattr__(self, "bones", bones)
        object.__setattr__(self, "rest_pose_mm", tuple(tuple(float(v) for v in row) for row in rest))
        object.__setattr__(self, "mirror_pairs", mirror_pairs)

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def mirror_index(self) -> NDArray[np.int64]:
        """(J,) each joint's mirror image: ``points[..., skeleton.mirror_index(), :]`` swaps left and
        right (joints on the midline map to themselves)."""
        return _mirror_index(self.mirror_pairs, self.num_joints)

    def rest_pose(self) -> NDArray[np.float64]:
        """(J, 3) rest pose in mm: x to the subject's left, y up, z forward, pelvis at the origin."""
        return np.array(self.rest_pose_mm, dtype=np.float64)

    def bone_lengths(self, pose: ArrayLike) -> NDArray[np.float64]:
        """(..., J, 3) -> (..., B) bone lengths in the pose's units; ValueError for another shape."""
        pose = as_float64(pose, "pose")
        if pose.shape[-2:] != (self.num_joints, 3):
            raise ValueError(f"pose: expected shape (..., {self.num_joints}, 3) for {self.name}, got {pose.shape}")
        parents, children = np.array(self.bones).T
        return np.linalg.norm(pose[..., children, :] - pose[..., parents, :], axis=-1)


H36M_17 = Skeleton(
    name="h36m17",
    joints=(
        "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine",
        "thorax", "neck_nose", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder",
        "r_elbow", "r_wrist",
    ),
    bones=(
        (0, 7), (7, 8), (8, 9), (9, 10), (8, 11), (8, 14), (14, 15), (15, 16), (11, 12),
        (12, 13), (0, 4), (0, 1), (1, 2), (2, 3), (4, 5), (5, 6),
    ),
    # A relaxed standing pose of a 1.7 m adult, arms slightly away from the body.
    rest_pose_mm=(
        (0.0, 0.0, 0.0), (-130.0, -5.0, 0.0), (-135.0, -445.0, 15.0), (-140.0, -880.0, -30.0),
        (130.0, -5.0, 0.0), (135.0, -445.0, 15.0), (140.0, -880.0, -30.0), (0.0, 230.0, -10.0),
        (0.0, 480.0, 0.0), (0.0, 585.0, 40.0), (0.0, 700.0, 10.0), (165.0, 450.0, -5.0),
        (235.0, 185.0, 10.0), (270.0, -60.0, 40.0), (-165.0, 450.0, -5.0), (-235.0, 185.0, 10.0),
        (-270.0, -60.0, 40.0),
    ),
    mirror_pairs=((1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16)),
)



# --------------------------------------------------------------------------- detector landmark sets


@dataclass(frozen=True)
class Landmarks:
    """A detector's landmark set: its names (N,) in the detector's output order, as the detector or
    its documentation spells them, and its left/right pairs (what a left/right swap exchanges)."""

    name: str
    names: tuple[str, ...]
    mirror_pairs: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names) or not self.names:
            raise ValueError(f"names: expected one or more distinct landmark names, got {self.names}")
        object.__setattr__(self, "mirror_pairs", _check_mirror_pairs(self.mirror_pairs, len(self.names), "landmark"))

    @property
    def num_landmarks(self) -> int:
        return len(self.names)

    def mirror_index(self) -> NDArray[np.int64]:
        """(N,) each landmark's mirror image: ``points[..., landmarks.mirror_index(), :]`` swaps left
        and right (landmarks on the midline map to themselves)."""
        return _mirror_index(self.mirror_pairs, self.num_landmarks)


@dataclass(frozen=True)
class SkeletonMap:
    """How a landmark set becomes a skeleton's joints: joint j is the mean of the landmarks
    ``sources[j]`` (one or more indices into ``source.names``; J tuples in the target's order)."""

    source: Landmarks
    target: Skeleton
    sources: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        count = self.source.num_landmarks
        if len(self.sources) != self.target.num_joints or any(
                len(indices) == 0 or len(set(indices)) != len(indices) or any(not 0 <= i < count for i in indices)
                for indices in self.sources):
            raise ValueError(f"sources: expected {self.target.num_joints} non-empty tuples of distinct landmark "
                             f"indices in [0, {count}) (one per {self.target.name} joint), got {self.sources}")

    def apply(self, points: ArrayLike, confidences: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(..., N, D) landmarks and (..., N) confidences -> (..., J, D) joints and (..., J) confidences.

        ``points`` are in any units (D = 2: pixels; D = 3: a monocular guess), NaN for a missing
        landmark; ``confidences`` are in [0, 1]. Joint j is the mean of its landmarks and its
        confidence the lowest of theirs; if any of them is missing (a NaN coordinate, or confidence
        0) the joint is NaN with confidence 0. Both outputs are new float64 arrays.

        ValueError, whose message starts with ``points`` or ``confidences``, for a shape other than
        (..., N, 2 or 3) with N = ``source.num_landmarks``, confidences not of the points' leading
        shape, an infinite coordinate, or confidences non-finite or outside [0, 1].

        >>> joints, confidence = skeleton_map("coco17").apply(np.zeros((100, 17, 2)), np.ones((100, 17)))
        >>> joints.shape, confidence.shape
        ((100, 17, 2), (100, 17))
        """
        count, name = self.source.num_landmarks, self.source.name
        points = as_float64(points, "points")
        confidences = as_float64(confidences, "confidences")
        if points.ndim < 2 or points.shape[-2] != count or points.shape[-1] not in (2, 3):
            others = [other.name for other in _SETS_BY_NAME.values()  # a set with the N that came, if N is wrong
                      if points.ndim >= 2 and points.shape[-2] != count and other.num_landmarks == points.shape[-2]]
            hint = f" ({points.shape[-2]} landmarks: {' or '.join(others)}?)" if others else ""
            raise ValueError(f"points: expected shape (..., {count}, 2) or (..., {count}, 3) for {name}, "
                             f"got {points.shape}{hint}")
        if np.isinf(points).any():
            raise ValueError("points: expected finite coordinates (NaN for a missing landmark), got inf")
        if confidences.shape != points.shape[:-1]:
            raise ValueError(f"confidences: expected shape {points.shape[:-1]} (the points' shape without its last "
                             f"axis), got {confidences.shape}")
        if not np.isfinite(confidences).all():
            raise ValueError("confidences: expected finite values in [0, 1], got NaN or inf")
        if confidences.size and not (0.0 <= confidences.min() and confidences.max() <= 1.0):
            raise ValueError(f"confidences: expected values in [0, 1], got values in "
                             f"[{confidences.min():g}, {confidences.max():g}]")

        # Pad every joint's landmark list to the longest with its first index, then mask the padding.
        width = max(len(indices) for indices in self.sources)
        index = np.array([indices + indices[:1] * (width - len(indices)) for indices in self.sources])  # (J, K)
        used = np.array([[k < len(indices) for k in range(width)] for indices in self.sources])  # (J, K)
        counts = np.array([len(indices) for indices in self.sources], dtype=np.float64)  # (J,)

        gathered = points[..., index, :]  # (..., J, K, D)
        joints = np.where(used[:, :, None], gathered, 0.0).sum(axis=-2) / counts[:, None]
        joint_confidences = np.where(used, confidences[..., index], np.inf).min(axis=-1)
        landmark_missing = np.isnan(points).any(axis=-1) | (confidences == 0.0)  # (..., N)
        joint_missing = (landmark_missing[..., index] & used).any(axis=-1)  # (..., J)
        joints[joint_missing] = np.nan
        joint_confidences[joint_missing] = 0.0
        return joints, joint_confidences


BLAZEPOSE_33 = Landmarks(
    name="blazepose33",  # MediaPipe Pose (BlazePose) pose landmarks
    names=(
        "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
        "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
        "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
        "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
        "left_foot_index", "right_foot_index",
    ),
    mirror_pairs=(
        (1, 4), (2, 5), (3, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (17, 18), (19, 20),
        (21, 22), (23, 24), (25, 26), (27, 28), (29, 30), (31, 32),
    ),
)

COCO_17 = Landmarks(
    name="coco17",  # the COCO keypoints: RTMPose, ViTPose, YOLO-pose, ...
    names=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
        "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
        "right_knee", "left_ankle", "right_ankle",
    ),
    mirror_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
)

BODY_25 = Landmarks(
    name="body25",  # OpenPose's BODY_25 model (pose_keypoints_2d), without its trailing "Background"
    names=(
        "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
        "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
        "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    ),
    mirror_pairs=(
        (2, 5), (3, 6), (4, 7), (9, 12), (10, 13), (11, 14), (15, 16), (17, 18), (19, 22), (20, 23),
        (21, 24),
    ),
)

HALPE_26 = Landmarks(
    name="halpe26",  # Halpe-FullBody's 26 body keypoints (AlphaPose; RTMPose's body-with-feet models)
    names=(  # the Halpe README spells index 14 "Rknee"; written here as its mirror "LKnee" implies
        "Nose", "LEye", "REye", "LEar", "REar", "LShoulder", "RShoulder", "LElbow", "RElbow", "LWrist",
        "RWrist", "LHip", "RHip", "LKnee", "RKnee", "LAnkle", "RAnkle", "Head", "Neck", "Hip",
        "LBigToe", "RBigToe", "LSmallToe", "RSmallToe", "LHeel", "RHeel",
    ),
    mirror_pairs=(
        (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (20, 21), (22, 23),
        (24, 25),
    ),
)

_H36M_17_LANDMARKS = Landmarks(name="h36m17", names=H36M_17.joints, mirror_pairs=H36M_17.mirror_pairs)

# Each H36M-17 joint as the mean of named body parts (left before right), the same for every set.
_H36M_FROM_PARTS: dict[str, tuple[str, ...]] = {
    "pelvis": ("left_hip", "right_hip"),
    "r_hip": ("right_hip",),
    "r_knee": ("right_knee",),
    "r_ankle": ("right_ankle",),
    "l_hip": ("left_hip",),
    "l_knee": ("left_knee",),
    "l_ankle": ("left_ankle",),
    "spine": ("left_shoulder", "right_shoulder", "left_hip", "right_hip"),
    "thorax": ("left_shoulder", "right_shoulder"),
    "neck_nose": ("nose",),
    "head": ("left_ear", "right_ear"),
    "l_shoulder": ("left_shoulder",),
    "l_elbow": ("left_elbow",),
    "l_wrist": ("left_wrist",),
    "r_shoulder": ("right_shoulder",),
    "r_elbow": ("right_elbow",),
    "r_wrist": ("right_wrist",),
}

# What each set calls those body parts (BlazePose and COCO call them by the part names themselves).
_OPENPOSE_STYLE_PARTS = {
    "nose": "Nose", "left_ear": "LEar", "right_ear": "REar", "left_shoulder": "LShoulder",
    "right_shoulder": "RShoulder", "left_elbow": "LElbow", "right_elbow": "RElbow", "left_wrist": "LWrist",
    "right_wrist": "RWrist", "left_hip": "LHip", "right_hip": "RHip", "left_knee": "LKnee",
    "right_knee": "RKnee", "left_ankle": "LAnkle", "right_ankle": "RAnkle",
}
_PART_NAMES: dict[str, dict[str, str]] = {
    "blazepose33": {part: part for part in _OPENPOSE_STYLE_PARTS},
    "coco17": {part: part for part in _OPENPOSE_STYLE_PARTS},
    "body25": _OPENPOSE_STYLE_PARTS,
    "halpe26": _OPENPOSE_STYLE_PARTS,
}


def _map_to_h36m(landmarks: Landmarks) -> SkeletonMap:
    if landmarks.name == _H36M_17_LANDMARKS.name:
        sources = tuple((j,) for j in range(H36M_17.num_joints))
    else:
        part_names = _PART_NAMES[landmarks.name]
        sources = tuple(tuple(landmarks.names.index(part_names[part]) for part in _H36M_FROM_PARTS[joint])
                        for joint in H36M_17.joints)
    return SkeletonMap(source=landmarks, target=H36M_17, sources=sources)


_SETS_BY_NAME = {landmarks.name: landmarks
                 for landmarks in (BLAZEPOSE_33, COCO_17, BODY_25, HALPE_26, _H36M_17_LANDMARKS)}

#: Every landmark set :func:`skeleton_map` knows, by name; "h36m17" is H36M-17's own joints.
LANDMARK_SETS: dict[str, Landmarks] = dict(_SETS_BY_NAME)

_MAPS = {name: _map_to_h36m(landmarks) for name, landmarks in _SETS_BY_NAME.items()}

# Other names users know a set by; looked up lower-case, without "_", "-" or spaces.
_ALIASES = {
    "blazepose33": ("blazepose", "mediapipe", "mediapipe_pose"),
    "coco17": ("coco", "rtmpose", "vitpose", "yolo_pose"),
    "body25": ("openpose",),
    "halpe26": ("halpe",),
    "h36m17": ("h36m", "human36m"),
}


def _alias_key(name: str) -> str:
    return "".join(character for character in name.lower() if character not in "_- ")


_MAP_BY_KEY = {_alias_key(alias): _MAPS[name] for name in _MAPS for alias in (name, *_ALIASES[name])}


def skeleton_map(source: str | Landmarks) -> SkeletonMap:
    """The map from a detector's landmark set to H36M-17, by the set's name or the set itself.

    Names: "blazepose33" (aliases "blazepose", "mediapipe", "mediapipe_pose"), "coco17" ("coco",
    "rtmpose", "vitpose", "yolo_pose"), "body25" ("body_25", "openpose"), "halpe26" ("halpe") and
    "h36m17" ("h36m", "human36m": the identity map). Case, "_", "-" and spaces are ignored, so
    "BODY_25", "MediaPipe" and "yolo-pose" are found too. RTMPose's body-with-feet models
    (Pose2Sim's default) give Halpe-26, not COCO-17: pass "halpe26" for those.

    ValueError naming ``source``, listing the known names, for any other name or landmark set.

    >>> joints, confidence = skeleton_map("mediapipe").apply(np.zeros((33, 2)), np.ones(33))
    >>> joints.shape
    (17, 2)
    """
    if isinstance(source, Landmarks):
        found = _MAPS.get(source.name)
        if found is not None and found.source == source:
            return found
    elif isinstance(source, str):
        found = _MAP_BY_KEY.get(_alias_key(source))
        if found is not None:
            return found
    known = ", ".join(f"{name!r} ({', '.join(repr(alias) for alias in _ALIASES[name])})" for name in _MAPS)
    shown = f"Landmarks {source.name!r} with other names or pairs" if isinstance(source, Landmarks) else repr(source)
    raise ValueError(f"source: expected a known landmark set, one of {known}, got {shown}")


__all__ = [
    "BLAZEPOSE_33",
    "CHIRALITY_SKIPS",
    "BODY_25",
    "COCO_17",
    "H36M_17",
    "HALPE_26",
    "LANDMARK_SETS",
    "Landmarks",
    "Skeleton",
    "SkeletonMap",
    "skeleton_map",
    "mirror_image_poses",
]


#: Joints left out when a pose's handedness is judged against the rest pose (names containing
#: these words): the forearms swing too freely for the rest pose to say where they are.
CHIRALITY_SKIPS = ("elbow", "wrist")


def mirror_image_poses(poses: ArrayLike, skeleton: Skeleton = H36M_17,
                       joints: NDArray[np.bool_] | None = None) -> NDArray[np.bool_]:
    """poses (B, J, 3) in any right-handed frame -> (B,) True where a pose is a mirror image of a
    body: its best orthogonal Procrustes fit onto the skeleton's rest pose is a reflection
    (``det(Xc^T Yc) < 0`` for the centred poses).

    The fit uses the joints not named in :data:`CHIRALITY_SKIPS`, among ``joints`` (B, J) where
    given (e.g. the joints a reconstruction determined); a pose left with fewer than four of those
    uses all of ``joints``. About 2.5% of twisted synthetic poses fit their rest pose better
    mirrored, so a single pose is a weak judgement."""
    array = as_float64(poses, "poses")
    usable = np.ones(array.shape[:2], dtype=bool) if joints is None else np.asarray(joints, dtype=bool)
    keep = np.array([not any(word in name for word in CHIRALITY_SKIPS) for name in skeleton.joints])
    used = usable & keep
    used = np.where((used.sum(axis=-1) >= 4)[:, None], used, usable)
    weight = used.astype(np.float64)[..., None]  # (B, J, 1)
    count = weight.sum(axis=1, keepdims=True)
    rest = skeleton.rest_pose()
    source = (array - (weight * array).sum(axis=1, keepdims=True) / count) * weight
    target = rest[None] - (weight * rest).sum(axis=1, keepdims=True) / count
    return np.linalg.det(np.swapaxes(source, -1, -2) @ target) < 0

