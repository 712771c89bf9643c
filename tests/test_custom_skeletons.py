"""Custom skeletons: a bad definition is a ValueError naming the field, a good one solves end to end,
and evidence whose joint count is not the skeleton's says so on every path in."""

from __future__ import annotations

import numpy as np
import pytest

import metapose_geom as mg
from metapose_geom import Skeleton, heatmaps, synth

#: A five-joint chain with a left/right pair: the smallest skeleton the tests solve.
JOINTS = ("pelvis", "l_hip", "r_hip", "neck", "head")
BONES = ((0, 1), (0, 2), (0, 3), (3, 4))
REST = ((0.0, 0.0, 0.0), (120.0, 0.0, 10.0), (-120.0, 0.0, 10.0), (0.0, 500.0, -20.0), (0.0, 700.0, 30.0))
GOOD = dict(name="five", joints=JOINTS, bones=BONES, rest_pose_mm=REST, mirror_pairs=((1, 2),))


def changed(**fields):
    return {**GOOD, **fields}


class TestDefinition:
    @pytest.mark.parametrize("fields, match", [
        (changed(name=""), "name: expected a non-empty string"),
        (changed(name=3), "name: expected a non-empty string"),
        (changed(joints="pelvis"), "joints: expected a sequence of distinct non-empty names"),
        (changed(joints=("a", "a", "b", "c", "d")), "joints: expected a sequence of distinct non-empty names"),
        (changed(joints=("a", "b", "", "c", "d")), "joints: expected a sequence of distinct non-empty names"),
        (changed(joints=(), bones=(), rest_pose_mm=(), mirror_pairs=()), "joints: expected"),
        (changed(bones=((0, 1, 2),)), r"bones: expected one or more \(parent, child\) pairs"),
        (changed(bones=(0, 1)), r"bones: expected one or more \(parent, child\) pairs"),
        (changed(bones=()), r"bones: expected one or more \(parent, child\) pairs"),
        (changed(bones=((0, 7),)), r"bones: joint index 7 outside \[0, 5\) in bone 0 \(0, 7\)"),
        (changed(bones=((0, -1),)), r"bones: joint index -1 outside \[0, 5\)"),
        (changed(bones=((0, 1.5),)), r"bones: expected one or more \(parent, child\) pairs of joint indices"),
        (changed(bones=((0, True),)), r"bones: expected one or more \(parent, child\) pairs of joint indices"),
        (changed(bones=((1, 1),)), r"bones: bone 0 \(1, 1\) joins a joint to itself"),
        (changed(rest_pose_mm=REST[:3]), r"rest_pose_mm: expected 5 rows \(one per joint\) of 3 finite numbers"),
        (changed(rest_pose_mm=tuple(r[:2] for r in REST)), r"rest_pose_mm: expected 5 rows"),
        (changed(rest_pose_mm=((np.nan, 0.0, 0.0),) + REST[1:]), r"rest_pose_mm: expected 5 rows .* finite"),
        (changed(rest_pose_mm="abc"), r"rest_pose_mm: expected 5 rows"),
        (changed(rest_pose_mm=((0.0, 0.0, 0.0),) * 5), r"rest_pose_mm: bone 0 \(0, 1\) has length 0"),
        (changed(mirror_pairs=((0, 1, 2),)), "mirror_pairs: expected disjoint pairs"),
        (changed(mirror_pairs=(1, 2)), "mirror_pairs: expected disjoint pairs"),
        (changed(mirror_pairs=((1, 9),)), "mirror_pairs: expected disjoint pairs"),
    ], ids=["empty-name", "int-name", "joints-string", "repeated-joint", "empty-joint-name", "no-joints",
            "bone-triple", "bones-flat", "no-bones", "bone-out-of-range", "bone-negative", "bone-float", "bone-bool",
            "bone-to-itself", "rest-short", "rest-2d", "rest-nan", "rest-string", "rest-all-at-one-point",
            "mirror-triple", "mirror-flat", "mirror-out-of-range"])
    def test_a_bad_definition_names_the_field(self, fields, match):
        with pytest.raises(ValueError, match=match):
            Skeleton(**fields)

    def test_lists_and_numpy_values_become_tuples(self):
        skeleton = Skeleton("five", list(JOINTS), [list(b) for b in np.array(BONES)], np.array(REST), [[1, 2]])
        assert skeleton == Skeleton(**GOOD) and hash(skeleton) == hash(Skeleton(**GOOD))
        assert all(type(i) is int for bone in skeleton.bones for i in bone)
        assert all(type(v) is float for row in skeleton.rest_pose_mm for v in row)

    def test_h36m_is_unchanged(self):
        assert Skeleton(mg.H36M_17.name, mg.H36M_17.joints, mg.H36M_17.bones, mg.H36M_17.rest_pose_mm,
                        mg.H36M_17.mirror_pairs) == mg.H36M_17


def _scene(skeleton: Skeleton, cameras: int = 4, seed: int = 0):
    """Weak views of the skeleton's rest pose (box units): exact 2D evidence and guesses."""
    rng = np.random.default_rng(seed)
    pose = skeleton.rest_pose() / 1000.0 * [1, -1, -1]  # y down, z away
    rotations = np.linalg.qr(rng.normal(size=(cameras, 3, 3)))[0]
    rotations *= np.linalg.det(rotations)[:, None, None]
    guesses = pose @ rotations.transpose(0, 2, 1) * 0.5 + 0.5  # (C, J, 3)
    mixtures = np.zeros((cameras, skeleton.num_joints, 1, 4))
    mixtures[..., 0, 0] = 1.0
    mixtures[..., 0, 1:3] = guesses[..., :2]
    mixtures[..., 0, 3] = 1e-4
    return mixtures, guesses, pose


class TestSolving:
    @pytest.mark.parametrize("method, options", [("s1", None), ("ir", {"bone_weight": 0.1}),
                                                 ("ir", {"init": "factorization"})])
    def test_a_custom_skeleton_solves(self, method, options):
        skeleton = Skeleton(**GOOD)
        mixtures, guesses, pose = _scene(skeleton)
        views = mg.Views(mixtures, guesses, skeleton=skeleton)
        solution = mg.solve(views, method, options)
        assert solution.pose3d.shape == (5, 3) and not solution.diverged
        assert float(mg.metrics.pmpjpe(solution.pose3d, pose)) < 1e-3 * 1000  # under a millimetre of a metre-sized pose
        batch = mg.solve_arrays(mixtures[None], guesses[None], method=method, options=options, skeleton=skeleton,
                                progress=False)
        np.testing.assert_array_equal(batch.pose3d[0], solution.pose3d)

    def test_detector_output_with_a_custom_skeleton(self):
        skeleton = Skeleton(**GOOD)
        mixtures, guesses, _ = _scene(skeleton)
        keypoints = mixtures[..., 0, 1:3] * 400.0 + 100.0
        views = mg.Views.from_keypoints(keypoints, np.ones((4, 5)), mono3d=guesses * 1700.0, skeleton=skeleton)
        assert np.isfinite(mg.solve(views, "ir").pose3d).all()


    @pytest.mark.parametrize("joints", [3, 4, 5])
    def test_too_few_joints_to_judge_swaps_from_the_2d(self, joints):
        """Swaps are judged from the 2D on six or more joints two views share; a smaller skeleton
        has no swap found (it hit an IndexError below four joints)."""
        names = tuple(f"j{i}" for i in range(joints))
        rest = tuple((100.0 * i, 50.0 * (i % 2), 30.0 * (i % 3)) for i in range(joints))
        skeleton = Skeleton("small", names, tuple((0, i) for i in range(1, joints)), rest, ((1, 2),))
        keypoints = np.random.default_rng(joints).uniform(50.0, 250.0, (3, joints, 2))
        views = mg.Views.from_keypoints(keypoints, np.ones((3, joints)), skeleton=skeleton)
        assert not views.swapped.any()


class TestJointCount:
    """Evidence with 17 joints against a five-joint skeleton: each path in says J and the skeleton."""

    @pytest.mark.parametrize("call", [
        lambda s, sk: mg.Views(s.mixtures, skeleton=sk),
        lambda s, sk: mg.Views.from_mixtures(s.mixtures, skeleton=sk),
        lambda s, sk: mg.Views.from_keypoints(s.pose2d, np.ones((4, 17)), skeleton=sk),
        lambda s, sk: mg.Views.from_heatmaps(heatmaps.render_heatmaps(s.views().mixtures[..., 0, 1:3], size=16), None,
                                             skeleton=sk),
        lambda s, sk: mg.solve_arrays(s.mixtures[None], skeleton=sk, progress=False),
    ], ids=["Views", "from_mixtures", "from_keypoints", "from_heatmaps", "solve_arrays"])
    def test_seventeen_joints_against_five(self, call):
        scene = synth.make_scene(0)
        with pytest.raises(ValueError, match=r"J = 17 joints, but skeleton 'five' has 5"):
            call(scene, Skeleton(**GOOD))

    @pytest.mark.parametrize("skeleton", ["h36m", None, mg.H36M_17.joints])
    def test_a_skeleton_that_is_not_one(self, skeleton):
        scene = synth.make_scene(0)
        with pytest.raises(ValueError, match="skeleton: expected a Skeleton"):
            mg.Views(scene.mixtures, skeleton=skeleton)
