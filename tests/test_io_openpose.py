"""read_openpose: OpenPose / Pose2Sim JSON folders written here by hand, in the layout those tools write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from metapose_geom.io import Capture, read_openpose

# One OpenPose BODY_25 frame as OpenPose 1.7 writes it (--write_json), people's other fields empty.
OPENPOSE_TEMPLATE = (
    '{{"version":1.3,"people":[{people}]}}'
)
PERSON_TEMPLATE = (
    '{{"person_id":[-1],"pose_keypoints_2d":[{values}],"face_keypoints_2d":[],"hand_left_keypoints_2d":[],'
    '"hand_right_keypoints_2d":[],"pose_keypoints_3d":[],"face_keypoints_3d":[],"hand_left_keypoints_3d":[],'
    '"hand_right_keypoints_3d":[]}}'
)

# A COCO-17 person typed out as RTMPose (through Pose2Sim) writes one: x, y, score per landmark.
COCO_PERSON = [
    512.3, 201.7, 0.93, 521.0, 192.4, 0.91, 503.8, 192.9, 0.95, 532.6, 198.1, 0.72, 493.1, 199.0, 0.88,
    551.2, 262.5, 0.9, 474.4, 263.8, 0.89, 566.0, 338.2, 0.85, 459.9, 341.1, 0.87, 571.7, 405.6, 0.8,
    451.2, 409.9, 0.83, 535.4, 420.3, 0.79, 488.6, 421.0, 0.81, 540.2, 531.8, 0.84, 482.9, 533.1, 0.86,
    544.7, 640.2, 0.77, 479.5, 642.6, 0.0,
]


def person_text(values) -> str:
    """A person entry with its flat [x, y, c, ...] list, numbers as OpenPose prints them."""
    return PERSON_TEMPLATE.format(values=",".join(f"{float(v):.6g}" for v in np.ravel(values)))


def frame_text(people) -> str:
    return OPENPOSE_TEMPLATE.format(people=",".join(person_text(p) for p in people))


def write_frame(folder: Path, camera: str, number: int, people, name: str = "{camera}_{number:012d}_keypoints.json"):
    path = folder / camera / name.format(camera=camera, number=number)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(frame_text(people))
    return path


def person(rng, count: int, centre=(500.0, 400.0), spread: float = 150.0, confidence: float = 0.9) -> np.ndarray:
    """(count, 3) [x, y, c] around ``centre``."""
    xy = np.asarray(centre) + rng.uniform(-spread, spread, size=(count, 2))
    return np.column_stack([xy, np.full(count, confidence)])


def write_openpose_folder(root: Path, keypoints, confidences, missing=None) -> Path:
    """keypoints (C, F, N, 2), confidences (C, F, N) -> ``root/cam{c}_json/cam{c}_{f:012d}_keypoints.json``,
    one person per file; a (camera, frame) in ``missing`` (or with all confidences 0) has no people,
    and a landmark with confidence 0 is written as 0, 0, 0, as OpenPose does."""
    missing = set(missing or ())
    for c in range(keypoints.shape[0]):
        for f in range(keypoints.shape[1]):
            values = np.column_stack([keypoints[c, f], confidences[c, f]])
            values[confidences[c, f] == 0] = 0.0
            people = [] if (c, f) in missing or not (confidences[c, f] > 0).any() else [values]
            write_frame(root, f"cam{c + 1:02d}_json", f, people)
    return root


class TestLayout:
    def test_body25_round_trip(self, tmp_path, rng):
        truth = rng.uniform(100, 900, size=(3, 4, 25, 2)).round(2)
        conf = rng.uniform(0.3, 1.0, size=(3, 4, 25)).round(3)
        conf[1, 2, 5] = 0.0  # one landmark not found
        write_openpose_folder(tmp_path, truth, conf, missing={(2, 1)})  # camera 3 saw nobody in frame 1
        capture = read_openpose(tmp_path, fps=25)
        assert isinstance(capture, Capture)
        assert capture.skeleton.name == "body25"
        assert capture.camera_names == ("cam01_json", "cam02_json", "cam03_json")
        assert capture.keypoints.shape == (3, 4, 25, 2) and capture.fps == 25.0
        np.testing.assert_array_equal(capture.frame_numbers, np.arange(4))
        expected = truth.copy()
        expected[1, 2, 5] = np.nan
        expected[2, 1] = np.nan
        expected_conf = conf.copy()
        expected_conf[2, 1] = 0.0
        np.testing.assert_allclose(capture.keypoints, expected, rtol=1e-6)
        np.testing.assert_allclose(capture.confidences, expected_conf, rtol=1e-6)
        assert not capture.detected[2, 1] and capture.detected[:2].all()

    def test_frames_in_numeric_order_and_numbers_kept(self, tmp_path, rng):
        numbers = [7, 10, 9, 100, 8]  # "100" sorts before "7" as text
        for camera in ("a", "b"):
            for number in numbers:
                xy = np.full((25, 3), [number, 2.0 * number, 0.9])
                xy[:, :2] += np.arange(25)[:, None]  # spread the person out
                write_frame(tmp_path, camera, number, [xy], name="frame_{number}.json")
        capture = read_openpose(tmp_path)
        np.testing.assert_array_equal(capture.frame_numbers, sorted(numbers))
        np.testing.assert_array_equal(capture.keypoints[0, :, 0, 0], sorted(numbers))

    def test_cameras_numbered_differently_are_matched_by_order(self, tmp_path, rng):
        for camera, first in (("cam1", 0), ("cam2", 12)):
            for i in range(3):
                write_frame(tmp_path, camera, first + i, [person(rng, 25)])
        with pytest.warns(UserWarning, match="number their frames differently.*cam2 from 12"):
            capture = read_openpose(tmp_path)
        np.testing.assert_array_equal(capture.frame_numbers, np.arange(3))

    def test_folders_without_json_are_ignored(self, tmp_path, rng):
        (tmp_path / "calibration").mkdir()
        (tmp_path / "calibration" / "Calib.toml").write_text("")
        (tmp_path / "notes.txt").write_text("")
        for camera in ("cam01", "cam02"):
            write_frame(tmp_path, camera, 0, [person(rng, 25)])
        assert read_openpose(tmp_path).camera_names == ("cam01", "cam02")

    @pytest.mark.parametrize("name, count", [("coco17", 17), ("halpe26", 26), ("BODY_25", 25), ("rtmpose", 17)])
    def test_widths_of_each_landmark_set(self, tmp_path, rng, name, count):
        for camera in ("cam01", "cam02"):
            for f in range(2):
                write_frame(tmp_path, camera, f, [person(rng, count)])
        capture = read_openpose(tmp_path, skeleton=name)
        assert capture.num_landmarks == count
        joints, _ = capture.joints
        assert joints.shape == (2, 2, 17, 2)

    def test_typed_coco_person(self, tmp_path):
        for camera in ("cam01", "cam02"):
            write_frame(tmp_path, camera, 0, [COCO_PERSON])
        capture = read_openpose(tmp_path, skeleton="coco17")
        np.testing.assert_allclose(capture.keypoints[0, 0, 0], [512.3, 201.7])
        assert capture.confidences[1, 0, 16] == 0 and np.isnan(capture.keypoints[1, 0, 16]).all()
        joints, conf = capture.joints
        np.testing.assert_allclose(joints[0, 0, 0], [(535.4 + 488.6) / 2, (420.3 + 421.0) / 2])  # pelvis: the hips
        assert conf[0, 0, 0] == pytest.approx(0.79)  # the lower of the two
        assert conf[0, 0, 3] == 0.0  # r_ankle: COCO's right ankle was not found


class TestSeveralPeople:
    def test_tracks_one_person(self, tmp_path, rng):
        """The most confident first, then the nearest to the previous choice, even when someone else
        is more confident."""
        frames = 5
        walker = [person(rng, 25, centre=(300.0 + 20 * f, 400.0), spread=80, confidence=0.7) for f in range(frames)]
        for camera in ("cam01", "cam02"):
            for f in range(frames):
                other = person(rng, 25, centre=(900.0, 400.0), spread=80, confidence=0.95)
                people = [walker[f]] if f == 0 else ([other, walker[f]] if f % 2 else [walker[f], other])
                write_frame(tmp_path, camera, f, people)
        with pytest.warns(UserWarning, match=r"several people in some frames \(cam01: 4, cam02: 4\)"):
            capture = read_openpose(tmp_path)
        for f in range(frames):
            np.testing.assert_allclose(capture.keypoints[0, f], walker[f][:, :2], rtol=1e-5)

    def test_starts_from_the_most_confident(self, tmp_path, rng):
        weak, strong = person(rng, 25, confidence=0.4), person(rng, 25, centre=(800, 300), confidence=0.9)
        for camera in ("cam01", "cam02"):
            write_frame(tmp_path, camera, 0, [weak, strong])
        with pytest.warns(UserWarning, match="several people"):
            capture = read_openpose(tmp_path)
        np.testing.assert_allclose(capture.confidences[:, 0], 0.9)

    def test_tracking_carries_over_empty_frames(self, tmp_path, rng):
        a = person(rng, 25, centre=(200, 400), confidence=0.6)
        b = person(rng, 25, centre=(800, 400), confidence=0.9)
        for camera in ("cam01", "cam02"):
            write_frame(tmp_path, camera, 0, [a])
            write_frame(tmp_path, camera, 1, [])
            write_frame(tmp_path, camera, 2, [b, a + [5.0, 0.0, 0.0]])
        with pytest.warns(UserWarning, match="several people"):
            capture = read_openpose(tmp_path)
        assert capture.confidences[0, 1].max() == 0
        np.testing.assert_allclose(capture.keypoints[0, 2], a[:, :2] + [5.0, 0.0], rtol=1e-5)

    def test_person_index(self, tmp_path, rng):
        a, b = person(rng, 25, confidence=0.9), person(rng, 25, centre=(900, 300), confidence=0.5)
        for camera in ("cam01", "cam02"):
            write_frame(tmp_path, camera, 0, [a, b])
            write_frame(tmp_path, camera, 1, [a])
        with pytest.warns(UserWarning, match=r"people\[1\]"):
            capture = read_openpose(tmp_path, person=1)
        np.testing.assert_allclose(capture.keypoints[0, 0], b[:, :2], rtol=1e-5)
        assert capture.confidences[0, 1].max() == 0  # no second person in frame 1

    def test_person_index_counts_placeholders_as_the_file_does(self, tmp_path, rng):
        a, b = person(rng, 25), person(rng, 25, centre=(900, 300))
        for camera in ("cam01", "cam02"):  # Pose2Sim's association writes placeholders for absent people
            write_frame(tmp_path, camera, 0, [np.zeros((25, 3)), a, b])
        with pytest.warns(UserWarning, match="several people"):
            capture = read_openpose(tmp_path, person=1)
        np.testing.assert_allclose(capture.keypoints[0, 0], a[:, :2], rtol=1e-5)
        with pytest.warns(UserWarning, match="several people"):
            assert read_openpose(tmp_path, person=0).confidences.max() == 0  # the placeholder: nobody

    def test_people_with_nothing_found_are_nobody(self, tmp_path, rng):
        for camera in ("cam01", "cam02"):
            write_frame(tmp_path, camera, 0, [np.zeros((25, 3)), person(rng, 25)])
        capture = read_openpose(tmp_path)  # no warning: only one person found anything
        assert capture.detected[:, 0].all()


class TestErrors:
    def test_missing_folder(self, tmp_path):
        with pytest.raises(ValueError, match="no such folder"):
            read_openpose(tmp_path / "nope")

    def test_folder_without_json(self, tmp_path):
        (tmp_path / "cam01").mkdir()
        with pytest.raises(ValueError, match="no camera folders with JSON files"):
            read_openpose(tmp_path)

    def test_no_detections(self, tmp_path):
        for camera in ("cam01", "cam02"):
            write_frame(tmp_path, camera, 0, [])
        with pytest.raises(ValueError, match="no detections"):
            read_openpose(tmp_path)

    def test_frame_counts_differ(self, tmp_path, rng):
        for camera, count in (("cam01", 3), ("cam02", 2), ("cam03", 3)):
            for f in range(count):
                write_frame(tmp_path, camera, f, [person(rng, 25)])
        with pytest.raises(ValueError, match=r"different frame counts \(cam01: 3, cam02: 2, cam03: 3\)"):
            read_openpose(tmp_path)

    def test_one_camera(self, tmp_path, rng):
        write_frame(tmp_path, "cam01", 0, [person(rng, 25)])
        with pytest.raises(ValueError, match="at least two are needed"):
            read_openpose(tmp_path)

    def test_unknown_skeleton(self, tmp_path, rng):
        for camera in ("cam01", "cam02"):
            write_frame(tmp_path, camera, 0, [person(rng, 25)])
        with pytest.raises(ValueError, match=r"^skeleton: .*'body25'.*got 'body18'"):
            read_openpose(tmp_path, skeleton="body18")

    def test_count_against_skeleton_suggests_one(self, tmp_path, rng):
        for camera in ("cam01", "cam02"):
            write_frame(tmp_path, camera, 0, [person(rng, 26)])
        with pytest.raises(ValueError, match="26 landmarks per person, but skeleton 'body25' has 25; pass "
                                             "skeleton='halpe26'"):
            read_openpose(tmp_path)

    def test_count_differs_between_files(self, tmp_path, rng):
        write_frame(tmp_path, "cam01", 0, [person(rng, 25)])
        bad = write_frame(tmp_path, "cam02", 0, [person(rng, 17)])
        with pytest.raises(ValueError, match=f"{bad.name}: 17 landmarks per person, but cam01_000000000000_keypoints.json has 25"):
            read_openpose(tmp_path)

    @pytest.mark.parametrize("text, message", [
        ('{"version":1.3,"people":[{"pose_keypoints_2d":[1,2,', "malformed JSON"),
        ('[1, 2, 3]', "expected a JSON object with a 'people' list"),
        ('{"people":[{"face_keypoints_2d":[]}]}', r"people\[0\] has no 'pose_keypoints_2d' list"),
        ('{"people":[{"pose_keypoints_2d":[1, 2, 0.5, 4]}]}', r"4 values, not \[x, y, c\] triples"),
        ('{"people":[{"pose_keypoints_2d":[1, "a", 0.5]}]}', "not numbers"),
        ('{"people":[{"pose_keypoints_2d":[1, 2, -0.5]}]}', "negative confidences"),
    ])
    def test_malformed_file_is_named(self, tmp_path, rng, text, message):
        write_frame(tmp_path, "cam01", 0, [person(rng, 25)])
        bad = tmp_path / "cam02" / "frame_0.json"
        bad.parent.mkdir()
        bad.write_text(text)
        with pytest.raises(ValueError, match=f"frame_0.json: .*{message}"):
            read_openpose(tmp_path)

    def test_file_without_number(self, tmp_path, rng):
        write_frame(tmp_path, "cam01", 0, [person(rng, 25)])
        write_frame(tmp_path, "cam02", 0, [person(rng, 25)], name="keypoints.json")
        with pytest.raises(ValueError, match="keypoints.json: no frame number"):
            read_openpose(tmp_path)

    def test_repeated_frame_number(self, tmp_path, rng):
        write_frame(tmp_path, "cam01", 3, [person(rng, 25)], name="a_{number}.json")
        write_frame(tmp_path, "cam01", 3, [person(rng, 25)], name="b_{number}.json")
        with pytest.raises(ValueError, match="the same frame number 3"):
            read_openpose(tmp_path)

    @pytest.mark.parametrize("value", ["first", -1, 1.5, True])
    def test_bad_person(self, tmp_path, rng, value):
        with pytest.raises(ValueError, match="^person"):
            read_openpose(tmp_path, person=value)

    def test_confidence_above_one_is_clipped(self, tmp_path, rng):
        for camera in ("cam01", "cam02"):
            write_frame(tmp_path, camera, 0, [person(rng, 25, confidence=1.25)])
        with pytest.warns(UserWarning, match="confidences up to 1.25 clipped to 1"):
            capture = read_openpose(tmp_path)
        assert capture.confidences.max() == 1.0


def test_file_text_is_plain_json():
    """The fixtures are what OpenPose writes: parse with json and check the fields."""
    content = json.loads(frame_text([np.arange(75.0).reshape(25, 3)]))
    assert content["version"] == 1.3 and len(content["people"][0]["pose_keypoints_2d"]) == 75
