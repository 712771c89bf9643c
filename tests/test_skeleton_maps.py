"""skeletons: detector landmark sets (BlazePose-33, COCO-17, BODY_25, Halpe-26) and their maps to H36M-17.

The expected landmark orders and joint recipes are written here from the detectors' documentation,
by name, independently of the tables in skeletons.py.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from metapose_geom.skeletons import (
    BLAZEPOSE_33, BODY_25, COCO_17, H36M_17, HALPE_26, LANDMARK_SETS, Landmarks, SkeletonMap, skeleton_map,
)

DETECTOR_SETS = ("blazepose33", "coco17", "body25", "halpe26")
ALL_SETS = (*DETECTOR_SETS, "h36m17")

# --------------------------------------------------------------------------- the detectors' orders

#: MediaPipe Pose landmarks 0..32
BLAZEPOSE_NAMES = """
nose left_eye_inner left_eye left_eye_outer right_eye_inner right_eye right_eye_outer left_ear right_ear
mouth_left mouth_right left_shoulder right_shoulder left_elbow right_elbow left_wrist right_wrist
left_pinky right_pinky left_index right_index left_thumb right_thumb left_hip right_hip left_knee
right_knee left_ankle right_ankle left_heel right_heel left_foot_index right_foot_index
""".split()

#: COCO person keypoints 0..16
COCO_NAMES = """
nose left_eye right_eye left_ear right_ear left_shoulder right_shoulder left_elbow right_elbow
left_wrist right_wrist left_hip right_hip left_knee right_knee left_ankle right_ankle
""".split()

#: OpenPose poseParameters BODY_25, 0..24 (25 is "Background", not in pose_keypoints_2d)
BODY_25_NAMES = """
Nose Neck RShoulder RElbow RWrist LShoulder LElbow LWrist MidHip RHip RKnee RAnkle LHip LKnee LAnkle
REye LEye REar LEar LBigToe LSmallToe LHeel RBigToe RSmallToe RHeel
""".split()

#: Halpe-FullBody body keypoints 0..25 (its README's "Rknee" written "RKnee")
HALPE_26_NAMES = """
Nose LEye REye LEar REar LShoulder RShoulder LElbow RElbow LWrist RWrist LHip RHip LKnee RKnee LAnkle
RAnkle Head Neck Hip LBigToe RBigToe LSmallToe RSmallToe LHeel RHeel
""".split()

EXPECTED_NAMES = {"blazepose33": BLAZEPOSE_NAMES, "coco17": COCO_NAMES, "body25": BODY_25_NAMES,
                  "halpe26": HALPE_26_NAMES, "h36m17": list(H36M_17.joints)}

# --------------------------------------------------------------------------- each H36M joint, by landmark name

_SNAKE = {  # BlazePose-33 and COCO-17 name these landmarks alike
    "pelvis": "left_hip right_hip", "r_hip": "right_hip", "r_knee": "right_knee", "r_ankle": "right_ankle",
    "l_hip": "left_hip", "l_knee": "left_knee", "l_ankle": "left_ankle",
    "spine": "left_shoulder right_shoulder left_hip right_hip", "thorax": "left_shoulder right_shoulder",
    "neck_nose": "nose", "head": "left_ear right_ear", "l_shoulder": "left_shoulder", "l_elbow": "left_elbow",
    "l_wrist": "left_wrist", "r_shoulder": "right_shoulder", "r_elbow": "right_elbow", "r_wrist": "right_wrist",
}
_CAMEL = {  # BODY_25 and Halpe-26 likewise (neither's MidHip / Hip / Neck / Head is used)
    "pelvis": "LHip RHip", "r_hip": "RHip", "r_knee": "RKnee", "r_ankle": "RAnkle",
    "l_hip": "LHip", "l_knee": "LKnee", "l_ankle": "LAnkle",
    "spine": "LShoulder RShoulder LHip RHip", "thorax": "LShoulder RShoulder",
    "neck_nose": "Nose", "head": "LEar REar", "l_shoulder": "LShoulder", "l_elbow": "LElbow",
    "l_wrist": "LWrist", "r_shoulder": "RShoulder", "r_elbow": "RElbow", "r_wrist": "RWrist",
}
EXPECTED_RECIPES = {"blazepose33": _SNAKE, "coco17": _SNAKE, "body25": _CAMEL, "halpe26": _CAMEL,
                    "h36m17": {joint: joint for joint in H36M_17.joints}}

#: the table shipped with the Pose2Sim capture (shared data README, field h36m_from_blazepose)
CAPTURE_BLAZEPOSE_TABLE = ((23, 24), (24,), (26,), (28,), (23,), (25,), (27,), (11, 12, 23, 24), (11, 12), (0,),
                           (7, 8), (11,), (13,), (15,), (12,), (14,), (16,))


def recipe(set_name: str, joint: str) -> list[str]:
    return EXPECTED_RECIPES[set_name][joint].split()


def mirrored_name(name: str) -> str:
    """A name's left/right counterpart, from its spelling alone (the name itself on the midline)."""
    words = name.split("_")
    swap = {"left": "right", "right": "left", "l": "r", "r": "l"}
    if any(word in swap for word in words):
        return "_".join(swap.get(word, word) for word in words)
    if re.match(r"^[LR][A-Z]", name):
        return {"L": "R", "R": "L"}[name[0]] + name[1:]
    return name


def named_landmarks(set_name: str, dims: int = 2) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """Each landmark a distinct point and confidence chosen by its name; arrays in the expected order."""
    names = EXPECTED_NAMES[set_name]
    point = {name: np.array([7.0 * k + 1.0, 300.0 - 11.0 * k, 0.5 * k * k][:dims])
             for k, name in enumerate(sorted(names))}
    confidence = {name: 0.2 + 0.75 * (k + 1) / len(names) for k, name in enumerate(sorted(names, reverse=True))}
    return point, confidence, np.array([point[n] for n in names]), np.array([confidence[n] for n in names])


# --------------------------------------------------------------------------- the sets


@pytest.mark.parametrize("set_name", ALL_SETS)
def test_landmark_names_are_the_detectors_order(set_name):
    landmarks = LANDMARK_SETS[set_name]
    assert landmarks.name == set_name and list(landmarks.names) == EXPECTED_NAMES[set_name]
    assert landmarks.num_landmarks == len(EXPECTED_NAMES[set_name])


def test_the_public_constants_are_the_sets():
    assert (BLAZEPOSE_33, COCO_17, BODY_25, HALPE_26) == tuple(LANDMARK_SETS[name] for name in DETECTOR_SETS)
    assert set(LANDMARK_SETS) == set(ALL_SETS)
    counts = [landmarks.num_landmarks for landmarks in (BLAZEPOSE_33, COCO_17, BODY_25, HALPE_26)]
    assert counts == [33, 17, 25, 26]


@pytest.mark.parametrize("set_name", ALL_SETS)
def test_mirror_pairs_are_every_left_right_pair_by_name(set_name):
    landmarks = LANDMARK_SETS[set_name]
    names = landmarks.names
    index = landmarks.mirror_index()
    assert index.dtype == np.int64 and sorted(index) == list(range(len(names)))
    assert (index[index] == np.arange(len(names))).all()
    for k, name in enumerate(names):
        assert names[index[k]] == mirrored_name(name), name
    assert len(landmarks.mirror_pairs) == sum(mirrored_name(name) != name for name in names) // 2


def test_blazepose_map_is_the_captures_reference_table():
    assert skeleton_map("blazepose33").sources == CAPTURE_BLAZEPOSE_TABLE


# --------------------------------------------------------------------------- mapping


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("set_name", ALL_SETS)
def test_each_joint_is_the_mean_of_its_named_landmarks_with_their_lowest_confidence(set_name, dims):
    point, confidence, points, confidences = named_landmarks(set_name, dims)
    joints, joint_confidences = skeleton_map(set_name).apply(points, confidences)
    assert joints.shape == (17, dims) and joint_confidences.shape == (17,)
    assert joints.dtype == np.float64 and joint_confidences.dtype == np.float64
    for j, joint in enumerate(H36M_17.joints):
        names = recipe(set_name, joint)
        np.testing.assert_allclose(joints[j], np.mean([point[n] for n in names], axis=0), rtol=1e-15, atol=1e-13)
        assert joint_confidences[j] == min(confidence[n] for n in names)


def test_identity_map_returns_the_joints_unchanged(rng):
    points, confidences = rng.normal(size=(3, 17, 3)), rng.uniform(0.01, 1.0, size=(3, 17))
    identity = skeleton_map("h36m17")
    assert identity.sources == tuple((j,) for j in range(17)) and identity.target is H36M_17
    joints, joint_confidences = identity.apply(points, confidences)
    np.testing.assert_array_equal(joints, points)
    np.testing.assert_array_equal(joint_confidences, confidences)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("set_name", ALL_SETS)
def test_mirroring_the_landmarks_mirrors_the_joints(set_name, dims, rng):
    mapping = skeleton_map(set_name)
    n = mapping.source.num_landmarks
    points, confidences = rng.normal(size=(4, n, dims)), rng.uniform(0.05, 1.0, size=(4, n))
    points[1, 3] = np.nan
    confidences[2, 5] = 0.0
    swap = mapping.source.mirror_index()
    joints, joint_confidences = mapping.apply(points[..., swap, :], confidences[..., swap])
    expected, expected_confidences = mapping.apply(points, confidences)
    h36m_swap = H36M_17.mirror_index()
    np.testing.assert_allclose(joints, expected[..., h36m_swap, :], rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(joint_confidences, expected_confidences[..., h36m_swap])


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
@pytest.mark.parametrize("set_name", ALL_SETS)
def test_any_batch_shape_maps_frame_by_frame(set_name, batch, dims, rng):
    mapping = skeleton_map(set_name)
    n = mapping.source.num_landmarks
    points = rng.normal(size=(*batch, n, dims)) * 100.0
    confidences = rng.uniform(0.0, 1.0, size=(*batch, n))
    joints, joint_confidences = mapping.apply(points, confidences)
    assert joints.shape == (*batch, 17, dims) and joint_confidences.shape == (*batch, 17)
    for item in np.ndindex(*batch):
        one_joints, one_confidences = mapping.apply(points[item].tolist(), confidences[item].tolist())
        np.testing.assert_array_equal(joints[item], one_joints)
        np.testing.assert_array_equal(joint_confidences[item], one_confidences)


def test_an_empty_batch_maps_to_an_empty_batch():
    joints, confidences = skeleton_map("coco17").apply(np.zeros((0, 17, 2)), np.zeros((0, 17)))
    assert joints.shape == (0, 17, 2) and confidences.shape == (0, 17)


@pytest.mark.parametrize("how", ["nan x", "nan z", "zero confidence"])
@pytest.mark.parametrize("set_name", ALL_SETS)
def test_a_missing_landmark_makes_exactly_the_joints_that_use_it_missing(set_name, how):
    point, confidence, points, confidences = named_landmarks(set_name, dims=3)
    full_joints, full_confidences = skeleton_map(set_name).apply(points, confidences)
    for k, name in enumerate(EXPECTED_NAMES[set_name]):
        spoiled_points, spoiled_confidences = points.copy(), confidences.copy()
        if how == "zero confidence":
            spoiled_confidences[k] = 0.0
        else:
            spoiled_points[k, 0 if how == "nan x" else 2] = np.nan
        joints, joint_confidences = skeleton_map(set_name).apply(spoiled_points, spoiled_confidences)
        users = [j for j, joint in enumerate(H36M_17.joints) if name in recipe(set_name, joint)]
        others = [j for j in range(17) if j not in users]
        assert np.isnan(joints[users]).all() and (joint_confidences[users] == 0.0).all(), name
        np.testing.assert_array_equal(joints[others], full_joints[others])
        np.testing.assert_array_equal(joint_confidences[others], full_confidences[others])


def test_landmarks_outside_the_map_change_nothing():
    _, _, points, confidences = named_landmarks("blazepose33")
    expected = skeleton_map("blazepose33").apply(points, confidences)
    unused_parts = ("pinky", "index", "thumb", "heel", "eye", "inner", "outer")
    unused = [k for k, name in enumerate(BLAZEPOSE_NAMES) if name.startswith("mouth") or name.endswith(unused_parts)]
    assert len(unused) == 33 - 15
    points[unused], confidences[unused] = np.nan, 0.0
    joints, joint_confidences = skeleton_map("blazepose33").apply(points, confidences)
    np.testing.assert_array_equal(joints, expected[0])
    np.testing.assert_array_equal(joint_confidences, expected[1])


def test_apply_takes_float32_and_leaves_its_inputs_alone():
    _, _, points, confidences = named_landmarks("coco17")
    points32, confidences32 = points.astype(np.float32), confidences.astype(np.float32)
    before = points32.copy(), confidences32.copy()
    joints, joint_confidences = skeleton_map("coco17").apply(points32, confidences32)
    assert joints.dtype == np.float64 and joint_confidences.dtype == np.float64
    np.testing.assert_array_equal(points32, before[0])
    np.testing.assert_array_equal(confidences32, before[1])
    assert joint_confidences[H36M_17.joints.index("thorax")] == min(confidences32[5], confidences32[6])


# --------------------------------------------------------------------------- finding a map


@pytest.mark.parametrize(("alias", "set_name"), [
    ("blazepose", "blazepose33"), ("BlazePose33", "blazepose33"), ("mediapipe", "blazepose33"),
    ("MediaPipe", "blazepose33"), ("blazepose_33", "blazepose33"),
    ("coco", "coco17"), ("COCO_17", "coco17"), ("rtmpose", "coco17"), ("RTMPose", "coco17"), ("vitpose", "coco17"),
    ("yolo-pose", "coco17"),
    ("body_25", "body25"), ("BODY_25", "body25"), ("openpose", "body25"), ("OpenPose", "body25"),
    ("halpe", "halpe26"), ("Halpe-26", "halpe26"),
    ("h36m", "h36m17"), ("H36M_17", "h36m17"), ("human36m", "h36m17"),
])
def test_aliases_find_the_map(alias, set_name):
    assert skeleton_map(alias) is skeleton_map(set_name)
    assert skeleton_map(alias).source.name == set_name


@pytest.mark.parametrize("set_name", ALL_SETS)
def test_a_landmark_set_finds_its_own_map(set_name):
    mapping = skeleton_map(LANDMARK_SETS[set_name])
    assert isinstance(mapping, SkeletonMap) and mapping.source == LANDMARK_SETS[set_name] and mapping.target is H36M_17


@pytest.mark.parametrize("source", ["coco18", "", "body", 17, None,
                                    Landmarks("mine", ("a", "b"), ()),
                                    Landmarks("coco17", COCO_NAMES[::-1], ())])
def test_an_unknown_source_is_refused_with_the_known_names(source):
    with pytest.raises(ValueError, match=r"^source: expected a known landmark set, one of .*'blazepose33'.*'halpe26'"):
        skeleton_map(source)


# --------------------------------------------------------------------------- bad input


def good_call(set_name="coco17", batch=(2,)):
    n = LANDMARK_SETS[set_name].num_landmarks
    return np.ones((*batch, n, 2)), np.full((*batch, n), 0.5)


@pytest.mark.parametrize("shape", [(17,), (16, 2), (2, 18, 2), (17, 1), (17, 4), ()])
def test_points_of_another_shape_are_refused(shape):
    with pytest.raises(ValueError, match=r"^points: expected shape \(\.\.\., 17, 2\) or \(\.\.\., 17, 3\) for coco17"):
        skeleton_map("coco17").apply(np.ones(shape), np.ones(shape[:-1]))


def test_the_set_with_the_landmark_count_that_came_is_named_in_the_error():
    with pytest.raises(ValueError, match=r"^points: .* for coco17, got \(26, 2\) \(26 landmarks: halpe26\?\)$"):
        skeleton_map("rtmpose").apply(*good_call("halpe26", batch=()))
    with pytest.raises(ValueError, match=r"^points: .* for coco17, got \(17, 4\)$"):  # N right: no other set named
        skeleton_map("coco17").apply(np.ones((17, 4)), np.ones(17))


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_points_are_refused(value):
    points, confidences = good_call()
    points[1, 4, 0] = value
    with pytest.raises(ValueError, match=r"^points: expected finite coordinates \(NaN for a missing landmark\), got"):
        skeleton_map("coco17").apply(points, confidences)


@pytest.mark.parametrize("shape", [(17,), (2, 16), (3, 17), (2, 17, 1), (1, 17)])
def test_confidences_of_another_shape_are_refused(shape):
    points, _ = good_call()
    with pytest.raises(ValueError, match=r"^confidences: expected shape \(2, 17\)"):
        skeleton_map("coco17").apply(points, np.full(shape, 0.5))


@pytest.mark.parametrize(("value", "message"), [
    (np.nan, "expected finite values in"), (np.inf, "expected finite values in"),
    (-0.01, r"expected values in \[0, 1\], got values in \[-0.01, 0.5\]"),
    (1.5, r"expected values in \[0, 1\], got values in \[0.5, 1.5\]"),
])
def test_confidences_outside_zero_one_are_refused(value, message):
    points, confidences = good_call()
    confidences[0, 3] = value
    with pytest.raises(ValueError, match=r"^confidences: " + message):
        skeleton_map("coco17").apply(points, confidences)


@pytest.mark.parametrize("field", ["points", "confidences"])
def test_non_numeric_input_is_refused(field):
    arguments = dict(zip(("points", "confidences"), good_call()))
    arguments[field] = np.full(arguments[field].shape, "x")
    with pytest.raises(ValueError, match=rf"^{field}: expected a real numeric array"):
        skeleton_map("coco17").apply(**arguments)


def test_bad_landmark_sets_and_maps_are_refused():
    with pytest.raises(ValueError, match=r"^mirror_pairs: expected disjoint pairs of distinct landmark indices "
                                         r"in \[0, 2\)"):
        Landmarks("x", ("a", "b"), ((0, 2),))
    with pytest.raises(ValueError, match=r"^names: expected one or more distinct landmark names"):
        Landmarks("x", ("a", "a"), ())
    sources = skeleton_map("coco17").sources
    for bad in (sources[:-1], sources[:-1] + ((),), sources[:-1] + ((17,),), sources[:-1] + ((3, 3),)):
        with pytest.raises(ValueError, match=r"^sources: expected 17 non-empty tuples of distinct landmark indices "
                                             r"in \[0, 17\)"):
            SkeletonMap(COCO_17, H36M_17, bad)
