"""skeletons: the H36M-17 definition and Skeleton.bone_lengths."""

from __future__ import annotations

import numpy as np
import pytest

from metapose_geom.skeletons import H36M_17


def test_h36m17_matches_the_design():
    assert H36M_17.num_joints == 17 and len(H36M_17.bones) == 16
    assert H36M_17.bones[0] == (0, 7) and H36M_17.joints[0] == "pelvis" and H36M_17.joints[16] == "r_wrist"
    assert H36M_17.rest_pose().shape == (17, 3)


def test_bone_lengths_of_any_batch_and_from_lists(rng):
    pose = rng.normal(size=(2, 3, 17, 3))
    lengths = H36M_17.bone_lengths(pose)
    assert lengths.shape == (2, 3, 16)
    parent, child = H36M_17.bones[4]
    assert lengths[1, 2, 4] == pytest.approx(np.linalg.norm(pose[1, 2, child] - pose[1, 2, parent]), rel=1e-15)
    np.testing.assert_array_equal(H36M_17.bone_lengths(pose[0, 0].tolist()), lengths[0, 0])


@pytest.mark.parametrize("shape", [(17,), (16, 3), (17, 2), (2, 18, 3)])
def test_bone_lengths_refuses_another_shape(shape):
    with pytest.raises(ValueError, match=r"^pose: expected shape \(\.\.\., 17, 3\) for h36m17"):
        H36M_17.bone_lengths(np.zeros(shape))


def test_bone_lengths_refuses_a_non_numeric_pose():
    with pytest.raises(ValueError, match=r"^pose: expected a real numeric array"):
        H36M_17.bone_lengths(np.full((17, 3), "x"))


def test_mirror_index_swaps_left_and_right_by_name():
    index = H36M_17.mirror_index()
    assert sorted(index) == list(range(17)) and (index[index] == np.arange(17)).all()
    for joint, name in enumerate(H36M_17.joints):
        mirrored = H36M_17.joints[index[joint]]
        expected = name.replace("l_", "x_").replace("r_", "l_").replace("x_", "r_") if name[:2] in ("l_", "r_") else name
        assert mirrored == expected


def test_rest_pose_mirrored_through_the_midline_is_the_rest_pose_relabelled():
    rest = H36M_17.rest_pose()
    mirrored = rest * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(mirrored[H36M_17.mirror_index()], rest, atol=1e-12)


@pytest.mark.parametrize("pairs", [((0, 0),), ((1, 2), (2, 3)), ((0, 17),), ((0, 1, 2),)])
def test_bad_mirror_pairs_are_refused(pairs):
    from metapose_geom.skeletons import Skeleton

    with pytest.raises(ValueError, match=r"^mirror_pairs:"):
        Skeleton("x", H36M_17.joints, H36M_17.bones, H36M_17.rest_pose_mm, pairs)
