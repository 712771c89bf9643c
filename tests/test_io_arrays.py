"""read_npz: arrays written here with numpy, under the default field names and others, and the shared capture."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from metapose_geom.io import read_npz

def _shared_capture() -> Path:
    """The shared Pose2Sim capture: $METAPOSE_SHARED_DATA, else ../shared/data beside the repository,
    else /work/shared/data."""
    name = "pose2sim_single_person.npz"
    folders = [os.environ.get("METAPOSE_SHARED_DATA", ""), Path(__file__).resolve().parents[2] / "shared" / "data",
               "/work/shared/data"]
    for folder in folders:
        if folder and (Path(folder) / name).is_file():
            return Path(folder) / name
    return Path(name)


SHARED = _shared_capture()


def arrays(rng, cameras=3, frames=4, landmarks=17):
    keypoints = rng.uniform(100, 900, size=(cameras, frames, landmarks, 2)).astype(np.float32)
    confidences = rng.uniform(0.2, 1.0, size=(cameras, frames, landmarks)).astype(np.float32)
    mono3d = rng.normal(scale=0.4, size=(cameras, frames, landmarks, 3)).astype(np.float32)
    return keypoints, confidences, mono3d


class TestDefaults:
    def test_every_field(self, tmp_path, rng):
        keypoints, confidences, mono3d = arrays(rng)
        path = tmp_path / "capture.npz"
        np.savez(path, keypoints=keypoints, confidences=confidences, mono3d=mono3d, skeleton="coco17",
                 camera_names=np.array(["left", "mid", "right"]), image_size=np.array([[1920, 1080]] * 3),
                 fps=np.float64(50), frame_numbers=np.arange(10, 14))
        capture = read_npz(path)
        assert capture.skeleton.name == "coco17" and capture.camera_names == ("left", "mid", "right")
        assert capture.fps == 50.0 and capture.image_size.tolist() == [[1920, 1080]] * 3
        np.testing.assert_array_equal(capture.frame_numbers, [10, 11, 12, 13])
        np.testing.assert_array_equal(capture.keypoints, keypoints.astype(np.float64))
        np.testing.assert_array_equal(capture.confidences, confidences.astype(np.float64))
        np.testing.assert_array_equal(capture.mono3d, mono3d.astype(np.float64))
        assert capture.keypoints.dtype == np.float64

    def test_optional_fields_absent(self, tmp_path, rng):
        keypoints, confidences, _ = arrays(rng, landmarks=25)
        np.savez(tmp_path / "a.npz", keypoints=keypoints, confidences=confidences)
        capture = read_npz(tmp_path / "a.npz", skeleton="openpose")
        assert capture.skeleton.name == "body25" and capture.mono3d is None and capture.fps is None
        assert capture.camera_names == ("cam0", "cam1", "cam2") and capture.image_size is None

    def test_without_confidences(self, tmp_path, rng):
        keypoints, _, _ = arrays(rng)
        keypoints[0, 1, 3] = np.nan
        np.savez(tmp_path / "a.npz", keypoints=keypoints)
        capture = read_npz(tmp_path / "a.npz", skeleton="coco17", confidences=None)
        assert capture.confidences[0, 1, 3] == 0 and capture.confidences.sum() == capture.confidences.size - 1

    def test_skeleton_argument_overrides_the_field(self, tmp_path, rng):
        keypoints, confidences, _ = arrays(rng)
        np.savez(tmp_path / "a.npz", keypoints=keypoints, confidences=confidences, skeleton="coco17")
        assert read_npz(tmp_path / "a.npz", skeleton="h36m17").skeleton.name == "h36m17"

    def test_mono3d_none_leaves_it_out(self, tmp_path, rng):
        keypoints, confidences, mono3d = arrays(rng)
        np.savez(tmp_path / "a.npz", keypoints=keypoints, confidences=confidences, mono3d=mono3d)
        assert read_npz(tmp_path / "a.npz", skeleton="coco17", mono3d=None).mono3d is None


class TestFieldNames:
    def test_other_names(self, tmp_path, rng):
        keypoints, confidences, mono3d = arrays(rng, landmarks=33)
        np.savez(tmp_path / "a.npz", pts=keypoints, vis=confidences, world=mono3d, cams=np.array(["a", "b", "c"]),
                 rate=np.array([30.0]))
        capture = read_npz(tmp_path / "a.npz", skeleton="blazepose33", keypoints="pts", confidences="vis",
                           mono3d="world", camera_names="cams", fps="rate")
        assert capture.camera_names == ("a", "b", "c") and capture.fps == 30.0
        np.testing.assert_array_equal(capture.mono3d, mono3d.astype(np.float64))

    @pytest.mark.parametrize("field", ["keypoints", "confidences", "mono3d", "fps"])
    def test_a_named_field_must_exist(self, tmp_path, rng, field):
        keypoints, confidences, _ = arrays(rng)
        np.savez(tmp_path / "a.npz", keypoints=keypoints, confidences=confidences)
        with pytest.raises(ValueError, match=rf"no field 'missing' \({field}\); the file has confidences, keypoints"):
            read_npz(tmp_path / "a.npz", skeleton="coco17", **{field: "missing"})


class TestErrors:
    def test_missing_file(self, tmp_path):
        with pytest.raises(ValueError, match="no such file"):
            read_npz(tmp_path / "none.npz", skeleton="coco17")

    def test_not_an_npz(self, tmp_path):
        (tmp_path / "a.npz").write_text("hello")
        with pytest.raises(ValueError, match="not a readable .npz file"):
            read_npz(tmp_path / "a.npz", skeleton="coco17")

    def test_no_skeleton_anywhere(self, tmp_path, rng):
        keypoints, confidences, _ = arrays(rng)
        np.savez(tmp_path / "a.npz", keypoints=keypoints, confidences=confidences)
        with pytest.raises(ValueError, match="^skeleton: .* has no 'skeleton' field; name the landmark set"):
            read_npz(tmp_path / "a.npz")

    def test_unknown_skeleton(self, tmp_path, rng):
        keypoints, confidences, _ = arrays(rng)
        np.savez(tmp_path / "a.npz", keypoints=keypoints, confidences=confidences, skeleton="body18")
        with pytest.raises(ValueError, match="^skeleton: expected a known landmark set.*got 'body18'"):
            read_npz(tmp_path / "a.npz")

    def test_landmark_count_against_skeleton(self, tmp_path, rng):
        keypoints, confidences, _ = arrays(rng)
        np.savez(tmp_path / "a.npz", keypoints=keypoints, confidences=confidences)
        with pytest.raises(ValueError, match="^keypoints: N = 17 landmarks, but skeleton 'body25' has 25"):
            read_npz(tmp_path / "a.npz", skeleton="body25")

    def test_text_where_numbers_belong(self, tmp_path, rng):
        keypoints, _, _ = arrays(rng)
        np.savez(tmp_path / "a.npz", keypoints=keypoints, confidences=np.full(keypoints.shape[:3], "x"))
        with pytest.raises(ValueError, match="^confidences: expected a numeric array"):
            read_npz(tmp_path / "a.npz", skeleton="coco17")

    def test_confidences_out_of_range(self, tmp_path, rng):
        keypoints, confidences, _ = arrays(rng)
        np.savez(tmp_path / "a.npz", keypoints=keypoints, confidences=confidences * 100)
        with pytest.raises(ValueError, match=r"^confidences: expected finite values in \[0, 1\]"):
            read_npz(tmp_path / "a.npz", skeleton="coco17")


@pytest.mark.skipif(not SHARED.is_file(), reason="the shared Pose2Sim capture is not on this machine")
class TestSharedCapture:
    @pytest.fixture(scope="class")
    def capture(self):
        return read_npz(SHARED, skeleton="blazepose33", keypoints="blazepose_keypoints",
                        confidences="blazepose_visibility", mono3d="blazepose_world")

    def test_reads(self, capture):
        assert (capture.num_cameras, capture.num_frames, capture.num_landmarks) == (4, 100, 33)
        assert capture.camera_names == ("cam01", "cam02", "cam03", "cam04") and capture.fps == 60.0
        assert capture.image_size.shape == (4, 2) and capture.detected.all()

    def test_mapping_matches_the_files_own_h36m_table(self, capture):
        """The file carries the detections mapped by its own table; ours must agree."""
        with np.load(SHARED) as data:
            reference_points, reference_conf = data["h36m_keypoints"], data["h36m_confidence"]
            reference_world = data["h36m_world"]
        points, conf = capture.joints
        np.testing.assert_allclose(points, reference_points, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(conf, reference_conf, atol=1e-6)
        np.testing.assert_allclose(capture.mono3d_joints, reference_world, atol=1e-6)
