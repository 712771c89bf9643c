"""Skeleton definitions: joint names, bones and a rest pose.

The Human3.6M 17-joint skeleton is the library's default (design.md, section 2). Other
skeletons are mapped into it explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import as_float64


def _check_mirror_pairs(pairs: tuple[tuple[int, int], ...], count: int, what: str) -> None:
    """ValueError naming ``mirror_pairs`` unless ``pairs`` are disjoint pairs of distinct indices in [0, count)."""
    seen = [i for pair in pairs for i in pair]
    if any(len(pair) != 2 or pair[0] == pair[1] for pair in pairs) or len(set(seen)) != len(seen) \
            or any(not 0 <= i < count for i in seen):
        raise ValueError(f"mirror_pairs: expected disjoint pairs of distinct {what} indices in [0, {count}), "
                         f"got {pairs}")


def _mirror_index(pairs: tuple[tuple[int, int], ...], count: int) -> NDArray[np.int64]:
    """(count,) the permutation that exchanges each pair's two indices and keeps every other index."""
    index = np.arange(count, dtype=np.int64)
    for left, right in pairs:
        index[left], index[right] = right, left
    return index


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
        _check_mirror_pairs(self.mirror_pairs, len(self.joints), "joint")

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

__all__ = ["H36M_17", "Skeleton"]
