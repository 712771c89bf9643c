"""Writers: metric poses from the per-frame box-unit solutions, TRC and CSV parsed back by the formats'
own rules, and the cameras' npz."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from metapose_geom import H36M_17
from metapose_geom.io import (DEFAULT_FPS, Capture, CaptureSolution, metric_poses, write_cameras, write_csv,
                              write_trc)
from metapose_geom.solver import Solution, WeakCameras

FRAMES, CAMERAS = 4, 3
HEIGHT = 1.8
#: H36M-17's rest pose (x left, y up, z forward, mm) as the solver's camera frames hold poses: y down, z away.
REST_IN_CAMERA = H36M_17.rest_pose() * [1.0, -1.0, -1.0]


def fake_solution(rng, pose: np.ndarray, cameras: int) -> Solution:
    rotation = np.repeat(np.eye(3)[None], cameras, axis=0)
    cams = WeakCameras(rotation, np.ones(cameras), rng.normal(size=(cameras, 3)))
    reprojection = np.repeat(pose[None, :, :2], cameras, axis=0)
    return Solution("ir", pose, cams, reprojection, reprojection * 100.0, 1.5, np.zeros(1))


def solved_capture(rng, fps=25.0, skip=(2,), camera0_missing=(3,)) -> tuple[CaptureSolution, np.ndarray]:
    """Frames whose pose is the rest pose at a different box-unit scale and place each (frame 2 skipped,
    camera 0 missing in frame 3), with the scales."""
    capture = Capture(rng.uniform(0, 500, (CAMERAS, FRAMES, 17, 2)), np.full((CAMERAS, FRAMES, 17), 0.9), "h36m17",
                      camera_names=("left", "mid", "right"), fps=fps, frame_numbers=np.arange(10, 10 + FRAMES))
    scales = rng.uniform(1e-4, 1e-3, FRAMES)
    used = np.ones((FRAMES, CAMERAS), dtype=bool)
    used[list(camera0_missing), 0] = False
    solutions, skipped = [], {}
    for f in range(FRAMES):
        if f in skip:
            solutions.append(None)
            skipped[f] = "seen by fewer than two cameras"
            used[f] = False
            continue
        pose = scales[f] * REST_IN_CAMERA + rng.normal(size=3)  # in camera 1's frame where camera 0 is missing
        solutions.append(fake_solution(rng, pose, int(used[f].sum())))
    boxes = np.where(used[..., None], rng.uniform(1, 100, (FRAMES, CAMERAS, 4)), np.nan)
    return CaptureSolution(capture, "ir", tuple(solutions), used, boxes, skipped), scales


def expected_metres(height=HEIGHT) -> np.ndarray:
    """The rest pose back in its own axes (y up; it faces the camera, so its forward z is towards the
    camera), scaled to ``height``, metres."""
    return H36M_17.rest_pose() * height / 1.7 / 1000.0


def read_trc(path):
    """Header fields and values, marker names, and data (F, 2 + 3M) with NaN for empty cells."""
    lines = path.read_text().split("\n")
    assert lines[-1] == ""
    first = lines[0].split("\t")
    keys, values = lines[1].split("\t"), lines[2].split("\t")
    names = [name for name in lines[3].split("\t")[2:] if name]
    assert lines[3].split("\t")[:2] == ["Frame#", "Time"]
    axes = lines[4].split("\t")
    rows = [[float(cell) if cell else np.nan for cell in line.split("\t")] for line in lines[5:-1]]
    return first, dict(zip(keys, values)), names, axes, np.array(rows)


class TestMetricPoses:
    def test_rest_pose_at_any_scale_and_place(self, rng):
        result, _ = solved_capture(rng)
        poses = metric_poses(result, HEIGHT)
        assert poses.shape == (FRAMES, 17, 3) and np.isnan(poses[2]).all()
        for f in (0, 1, 3):
            np.testing.assert_allclose(poses[f], expected_metres(), atol=1e-12)

    def test_median_over_bones_ignores_one_wrong_bone(self, rng):
        result, scales = solved_capture(rng, skip=())
        poses = result.poses.copy()
        solutions = list(result.solutions)
        pose = solutions[0].pose3d.copy()
        pose[16] += 50 * scales[0] * (pose[16] - pose[15])  # r_wrist far out: one long bone
        solutions[0] = fake_solution(rng, pose, CAMERAS)
        bent = CaptureSolution(result.capture, "ir", tuple(solutions), result.used, result.boxes, {})
        metric = metric_poses(bent, HEIGHT)
        np.testing.assert_allclose(np.delete(metric[0], 16, axis=0), np.delete(expected_metres(), 16, axis=0),
                                   atol=1e-12)
        assert poses.shape == metric.shape

    def test_height_default_warns(self, rng):
        result, _ = solved_capture(rng)
        with pytest.warns(UserWarning, match="subject_height not given: poses are scaled to a 1.75 m subject"):
            poses = metric_poses(result)
        np.testing.assert_allclose(poses[0], expected_metres(1.75), atol=1e-12)

    @pytest.mark.parametrize("height", [1750, 0.1, -1.0, np.nan, "1.8"])
    def test_height_must_be_metres(self, rng, height):
        result, _ = solved_capture(rng)
        with pytest.raises(ValueError, match="^subject_height: expected"):
            metric_poses(result, height)


class TestTrc:
    def test_header_and_values(self, rng, tmp_path):
        result, _ = solved_capture(rng, camera0_missing=())
        path = write_trc(tmp_path / "walk.trc", result, HEIGHT)
        first, header, names, axes, rows = read_trc(path)
        assert first == ["PathFileType", "4", "(X/Y/Z)", "walk.trc"]
        assert header == {"DataRate": "25", "CameraRate": "25", "NumFrames": "4", "NumMarkers": "17", "Units": "m",
                          "OrigDataRate": "25", "OrigDataStartFrame": "10", "OrigNumFrames": "4"}
        assert names == list(H36M_17.joints)
        assert axes[:2] == ["", ""] and axes[2:5] == ["X1", "Y1", "Z1"] and axes[-2:] == ["Z17", ""]
        assert rows.shape == (FRAMES, 2 + 3 * 17)
        np.testing.assert_array_equal(rows[:, 0], [10, 11, 12, 13])
        np.testing.assert_allclose(rows[:, 1], np.arange(10, 14) / 25.0, atol=1e-6)
        for f in (0, 1, 3):
            np.testing.assert_allclose(rows[f, 2:].reshape(17, 3), expected_metres(), atol=1e-6)
        assert np.isnan(rows[2, 2:]).all()  # the skipped frame: empty cells

    def test_read_as_pose2sim_reads_trc(self, rng, tmp_path):
        """Pose2Sim's own reading rules: marker names every third cell of line 4 from the third,
        values by numpy.genfromtxt after five header lines, tab-separated."""
        result, _ = solved_capture(rng, camera0_missing=())
        path = write_trc(tmp_path / "a.trc", result, HEIGHT)
        markers = [name.strip() for name in path.read_text().split("\n")[3].split("\t")[2::3] if name.strip()]
        assert markers == list(H36M_17.joints)
        values = np.genfromtxt(path, skip_header=5, delimiter="\t")
        assert values.shape == (FRAMES, 2 + 3 * 17)
        np.testing.assert_allclose(values[0, 2:].reshape(17, 3), expected_metres(), atol=1e-6)
        assert np.isnan(values[2, 2:]).all() and values[2, 0] == 12

    def test_skipped_row_has_every_tab(self, rng, tmp_path):
        result, _ = solved_capture(rng, camera0_missing=())
        line = (write_trc(tmp_path / "a.trc", result, HEIGHT)).read_text().split("\n")[5 + 2]
        assert line.startswith("12\t0.480000\t") and line.count("\t") == 1 + 3 * 17 and not line[13:].strip()

    def test_no_negative_zero(self, rng, tmp_path):
        result, _ = solved_capture(rng, camera0_missing=())
        assert "-0.000000" not in write_trc(tmp_path / "a.trc", result, HEIGHT).read_text()

    def test_unknown_rate_warns(self, rng, tmp_path):
        result, _ = solved_capture(rng, fps=None, camera0_missing=())
        with pytest.warns(UserWarning, match="fps unknown: times written at 30 frames per second"):
            _, header, _, _, rows = read_trc(write_trc(tmp_path / "a.trc", result, HEIGHT))
        assert header["DataRate"] == "30" and DEFAULT_FPS == 30.0
        np.testing.assert_allclose(rows[:, 1], np.arange(10, 14) / 30.0, atol=1e-6)
        _, header, _, _, _ = read_trc(write_trc(tmp_path / "b.trc", result, HEIGHT, fps=120))
        assert header["DataRate"] == "120"


    def test_frames_in_another_cameras_axes_warn(self, rng, tmp_path):
        result, _ = solved_capture(rng)
        with pytest.warns(UserWarning, match=r"1 frame\(s\) \(the first: frame 13\) are in another camera's axes than "
                                             "left's"):
            write_trc(tmp_path / "a.trc", result, HEIGHT)


class TestCsv:
    def test_columns_and_values(self, rng, tmp_path):
        result, _ = solved_capture(rng)
        with write_csv(tmp_path / "a.csv", result, HEIGHT).open(newline="") as handle:
            records = list(csv.DictReader(handle))
        assert len(records) == FRAMES
        columns = list(records[0])
        assert columns[:6] == ["frame", "time_s", "reference_camera", "pelvis_x_m", "pelvis_y_m", "pelvis_z_m"]
        assert columns[-1] == "r_wrist_z_m" and len(columns) == 3 + 3 * 17
        assert [r["reference_camera"] for r in records] == ["left", "left", "", "mid"]
        assert [r["frame"] for r in records] == ["10", "11", "12", "13"] and records[1]["time_s"] == "0.440000"
        values = np.array([[float(r[c]) if r[c] else np.nan for c in columns[3:]] for r in records])
        for f in (0, 1, 3):
            np.testing.assert_allclose(values[f].reshape(17, 3), expected_metres(), atol=1e-6)
        assert np.isnan(values[2]).all()


class TestCameras:
    def test_fields(self, rng, tmp_path):
        result, _ = solved_capture(rng)
        path = write_cameras(tmp_path / "cameras.npz", result, HEIGHT)
        with np.load(path) as data:
            assert data["camera_names"].tolist() == ["left", "mid", "right"]
            np.testing.assert_array_equal(data["frame_numbers"], [10, 11, 12, 13])
            np.testing.assert_array_equal(data["solved"], [True, True, False, True])
            np.testing.assert_array_equal(data["reference"], [0, 0, -1, 1])
            np.testing.assert_array_equal(data["used"], result.used)
            assert data["rotation"].shape == (FRAMES, CAMERAS, 3, 3) and np.isnan(data["rotation"][3, 0]).all()
            np.testing.assert_array_equal(data["shift"][3, 1:], result.solutions[3].cameras.shift)
            np.testing.assert_array_equal(data["pose3d"][0], result.solutions[0].pose3d)
            pose, scale = data["pose3d"], data["metres_per_unit"]
            np.testing.assert_allclose(data["pose3d_m"], (pose - pose[:, :1]) * scale[:, None, None] * [1, -1, -1])
            np.testing.assert_allclose(data["pose3d_m"][0], expected_metres(), atol=1e-12)
            assert float(data["subject_height"]) == HEIGHT and str(data["method"]) == "ir"
            np.testing.assert_array_equal(data["boxes"], result.boxes)
