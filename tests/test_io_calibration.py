"""Calibrations (:mod:`metapose_geom.io.calibration`): the container's checks and geometry,
triangulation, both TOML layouts (exact round trips, aniposelib reading our files and we reading
its own, a Pose2Sim file laid out as Pose2Sim documents it) and every kind of bad file."""

from __future__ import annotations

import contextlib
import dataclasses
import tomllib
from pathlib import Path

import numpy as np
import pytest

import metapose_geom as mg
from metapose_geom import geometry, synth
from metapose_geom.io import Calibration, read_calibration, write_calibration

ARRAY_FIELDS = ("image_size", "rotation_vector", "translation", "intrinsics", "distortion")


def make_calibration(seed: int = 0, count: int = 4, **changes) -> Calibration:
    """A random rig from :func:`metapose_geom.synth.sample_cameras` (mm), in metres."""
    rng = np.random.default_rng([31, seed])
    cameras = synth.sample_cameras(rng, synth.sample_pose(rng), count)
    fields = dict(
        names=tuple(f"cam{c}" for c in range(count)),
        image_size=cameras.image_size,
        rotation_vector=geometry.matrix_to_rodrigues(cameras.rotation),
        translation=cameras.translation,
        intrinsics=cameras.intrinsics,
        distortion=cameras.distortion,
        units="mm",
    )
    fields.update(changes)
    calibration = Calibration(**fields)
    return calibration.in_units("m") if "units" not in changes else calibration


def poses_m(seed: int, frames: int = 3) -> np.ndarray:
    """(frames, 17, 3) random H36M poses in metres, where the rigs of make_calibration look."""
    rng = np.random.default_rng([47, seed])
    return np.stack([synth.sample_pose(rng) for _ in range(frames)]) / 1000.0


def assert_same_arrays(got: Calibration, want: Calibration) -> None:
    """Bit-identical camera arrays and the same names and units."""
    assert got.names == want.names and got.units == want.units
    for name in ARRAY_FIELDS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype == np.float64 and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name


@pytest.fixture(scope="module")
def rig() -> Calibration:
    return make_calibration(0)


@pytest.fixture(scope="module")
def observed(rig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Known points (F, J, 3) m, their exact projections (C, F, J, 2) px, confidences (C, F, J)."""
    points = poses_m(0)
    keypoints = rig.project(points)
    confidences = np.random.default_rng(5).uniform(0.2, 1.0, keypoints.shape[:-1])
    return points, keypoints, confidences


# --------------------------------------------------------------------------- the container


class TestCalibration:
    def test_fields_are_read_only_float64_copies(self):
        translation = np.array([[0.0, 0.0, 3.0], [1.0, 0.0, 3.0]])
        calibration = Calibration(("a", "b"), [[640, 480]] * 2, np.zeros((2, 3)), translation,
                                  [[500.0, 500.0, 320.0, 240.0]] * 2, np.zeros((2, 5)))
        translation[0, 0] = 9.0
        assert calibration.translation[0, 0] == 0.0
        assert calibration.image_size.dtype == np.float64
        for name in ARRAY_FIELDS + ("frames_used",):
            with pytest.raises(ValueError):
                getattr(calibration, name)[...] = 0
        with pytest.raises(dataclasses.FrozenInstanceError):
            calibration.units = "mm"
        with pytest.raises(TypeError):
            calibration.metadata["x"] = 1
        assert calibration.units == "m" and calibration.num_cameras == 2 and calibration.residuals == {}

    def test_derived_cameras(self, rig):
        np.testing.assert_array_equal(rig.rotation, geometry.rodrigues_to_matrix(rig.rotation_vector))
        # the centre is where the camera frame's origin is: R c + t = 0
        np.testing.assert_allclose(np.einsum("cij,cj->ci", rig.rotation, rig.centre) + rig.translation, 0.0,
                                   atol=1e-14)
        fx, fy, cx, cy = rig.intrinsics[1]
        np.testing.assert_array_equal(rig.matrix[1], [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
        cameras = rig.cameras.validated()
        np.testing.assert_array_equal(cameras.translation, rig.translation)
        np.testing.assert_array_equal(cameras.distortion, rig.distortion)

    def test_in_units(self, rig):
        mm = rig.in_units("mm")
        assert mm.units == "mm" and rig.in_units("m") is rig
        np.testing.assert_allclose(mm.translation, rig.translation * 1000.0, rtol=1e-15)
        np.testing.assert_allclose(mm.centre, rig.centre * 1000.0, rtol=1e-13)
        np.testing.assert_array_equal(mm.rotation_vector, rig.rotation_vector)
        unknown = dataclasses.replace(rig, units="unknown")
        for calibration, units in ((unknown, "m"), (rig, "unknown")):
            with pytest.raises(ValueError, match="units: cannot convert"):
                calibration.in_units(units)
        with pytest.raises(ValueError, match="units: expected one of"):
            rig.in_units("cm")

    def test_project_is_the_geometry_kernel_per_camera(self, rig, observed):
        points, keypoints, _ = observed
        assert keypoints.shape == (4,) + points.shape[:-1] + (2,)
        for c in range(rig.num_cameras):
            want = geometry.project_perspective(points, np.broadcast_to(rig.rotation[c], (3, 3, 3)),
                                                np.broadcast_to(rig.translation[c], (3, 3)),
                                                np.broadcast_to(rig.intrinsics[c], (3, 4)),
                                                np.broadcast_to(rig.distortion[c], (3, 5)))
            np.testing.assert_array_equal(keypoints[c], want)
        with pytest.raises(ValueError, match="points"):
            rig.project(np.full((2, 3), np.nan))
        with pytest.raises(ValueError, match="points"):
            rig.project(np.zeros((2, 2)))

    def test_summary(self, rig):
        calibration = dataclasses.replace(rig, residuals={"cam1": [0.5, 1.5, 1.0]}, frames_used=[0, 1],
                                          frames_rejected={7: "seen by one camera"})
        text = calibration.summary()
        assert "4 cameras" in text and "2 frames used, 1 rejected" in text and "median residual 1 px" in text
        assert f"focal {rig.intrinsics[2, 0]:.1f}" in text and "cam3" in text
        assert len(text.splitlines()) == 5

    @pytest.mark.parametrize("change, match", [
        (dict(names="ab"), "names: expected a sequence"),
        (dict(names=("a", "b", "c", "")), "names: expected at least two non-empty"),
        (dict(names=("a", "b", "a", "c")), "names: expected distinct names, 'a' repeated"),
        (dict(names=("a", "b")), r"image_size: expected shape \(C=2, 2\)"),
        (dict(image_size=np.zeros((4, 2))), "image_size: expected width and height > 0"),
        (dict(rotation_vector=np.full((4, 3), np.nan)), "rotation_vector: contains NaN or inf"),
        (dict(rotation_vector=np.zeros((4, 3, 3))), r"rotation_vector: expected shape \(C=4, 3\)"),
        (dict(translation=[["x"] * 3] * 4), "translation: expected a real numeric array"),
        (dict(intrinsics=np.zeros((4, 4))), "intrinsics: expected focal lengths"),
        (dict(distortion=np.zeros((4, 4))), r"distortion: expected shape \(C=4, 5\)"),
        (dict(units="cm"), "units: expected one of"),
        (dict(residuals={"cam9": [1.0]}), "residuals: 'cam9' is not a camera name"),
        (dict(residuals={"cam0": [-1.0]}), r"residuals\['cam0'\]: expected a 1-D array"),
        (dict(residuals={"cam0": [[1.0]]}), r"residuals\['cam0'\]: expected a 1-D array"),
        (dict(residuals=[1.0]), "residuals: expected a mapping"),
        (dict(frames_used=[0.5]), "frames_used: expected a 1-D array of frame numbers"),
        (dict(frames_used=[1, 1]), "frames_used: expected distinct"),
        (dict(frames_rejected={"1": "x"}), "frames_rejected: expected integer frame numbers"),
        (dict(frames_rejected={1: 2}), r"frames_rejected\[1\]: expected the reason"),
        (dict(frames_used=[1], frames_rejected={1: "x"}), "frames_rejected: frame 1 is also in frames_used"),
        (dict(metadata={"units": "m"}), "metadata.units"),
        (dict(metadata={"nested": {"a": 1}}), "metadata.nested: expected a number"),
        (dict(metadata={"big": 2**70}), "metadata.big: integers must fit in 64 bits"),
        (dict(metadata={"x": float("nan")}), "metadata.x: expected a finite number"),
        (dict(metadata={1: "x"}), "metadata: expected non-empty string keys"),
        (dict(metadata={"error": 1.0}, residuals={"cam0": [1.0]}), "metadata.error: is computed from residuals"),
        (dict(metadata={"adjusted": True}, frames_used=[3]), "metadata.adjusted: is computed from frames_used"),
        (dict(metadata={"error": "small"}), "metadata.error: expected a number >= 0"),
        (dict(metadata={"adjusted": 1}), "metadata.adjusted: expected true or false"),
        (dict(metadata={"frames_used": -1}), "metadata.frames_used: expected a count"),
    ])
    def test_bad_fields(self, rig, change, match):
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(rig, **change)


# --------------------------------------------------------------------------- triangulation


class TestTriangulate:
    def test_recovers_points_from_exact_distorted_projections(self, rig, observed):
        points, keypoints, confidences = observed
        assert np.abs(rig.distortion[:, 0]).max() > 0.05  # a lens that matters
        got = rig.triangulate(keypoints, confidences)
        assert got.shape == points.shape
        np.testing.assert_allclose(got, points, rtol=0, atol=1e-12)  # metres
        # the same in millimetres: the solve does not depend on the units
        np.testing.assert_allclose(rig.in_units("mm").triangulate(keypoints, confidences), points * 1000.0,
                                   rtol=0, atol=1e-9)

    def test_invariant_to_scaling_all_confidences(self, rig, observed):
        _, keypoints, confidences = observed
        noisy = keypoints + np.random.default_rng(2).normal(scale=2.0, size=keypoints.shape)
        once = rig.triangulate(noisy, confidences)
        np.testing.assert_allclose(rig.triangulate(noisy, 0.25 * confidences), once, rtol=0, atol=1e-12)
        # ... while the weights between views do matter
        assert np.abs(rig.triangulate(noisy, confidences ** 3) - once).max() > 1e-5

    def test_a_view_with_confidence_zero_is_ignored_whatever_its_keypoint(self, rig, observed):
        points, keypoints, confidences = observed
        noisy = keypoints + np.random.default_rng(3).normal(scale=2.0, size=keypoints.shape)
        conf = confidences.copy()
        conf[1] = 0.0
        want = rig.triangulate(noisy, conf)
        for garbage in (np.nan, 1e12, -np.inf):
            spoiled = noisy.copy()
            spoiled[1] = garbage
            np.testing.assert_array_equal(rig.triangulate(spoiled, conf), want)
        # a NaN keypoint is missing even where its confidence is > 0
        missing = noisy.copy()
        missing[1] = np.nan
        np.testing.assert_array_equal(rig.triangulate(missing, confidences), want)
        # and exact views without it still give the points
        np.testing.assert_allclose(rig.triangulate(np.where(conf[..., None] > 0, keypoints, 1e9), conf), points,
                                   rtol=0, atol=1e-12)

    def test_nan_below_min_views(self, rig, observed):
        points, keypoints, confidences = observed
        conf = confidences.copy()
        conf[1:, 0, 5] = 0.0  # frame 0, joint 5: one view
        conf[2:, 1, 6] = 0.0  # frame 1, joint 6: two views
        got = rig.triangulate(keypoints, conf)
        assert np.isnan(got[0, 5]).all() and np.isfinite(np.delete(got.reshape(-1, 3), 5, axis=0)).all()
        np.testing.assert_allclose(got[1, 6], points[1, 6], rtol=0, atol=1e-12)
        three = rig.triangulate(keypoints, conf, min_views=3)
        assert np.isnan(three[0, 5]).all() and np.isnan(three[1, 6]).all()
        assert np.isfinite(three).all(axis=-1).sum() == three.shape[0] * three.shape[1] - 2
        assert np.isnan(rig.triangulate(keypoints, np.zeros_like(conf))).all()

    def test_leading_shapes(self, rig, observed):
        points, keypoints, confidences = observed
        one = rig.triangulate(keypoints[:, 0, 0], confidences[:, 0, 0])
        assert one.shape == (3,)
        np.testing.assert_allclose(one, points[0, 0], rtol=0, atol=1e-12)
        assert rig.triangulate(keypoints[:, :0], confidences[:, :0]).shape == (0, 17, 3)

    @pytest.mark.parametrize("change, match", [
        (lambda k, c: (k[:2], c[:2]), r"keypoints: expected shape \(C=4, F, J, 2\)"),
        (lambda k, c: (k[..., :1], c), r"keypoints: expected shape \(C=4, F, J, 2\)"),
        (lambda k, c: (k, c[:, :1]), "confidences: expected shape"),
        (lambda k, c: (k, c * 2.0), r"confidences: expected finite values in \[0, 1\]"),
        (lambda k, c: (k, -c), r"confidences: expected finite values in \[0, 1\]"),
        (lambda k, c: (np.where(np.arange(2) == 0, np.inf, k), c), "keypoints: inf where the confidence is > 0"),
        (lambda k, c: (k.astype(str), c), "keypoints: expected a real numeric array"),
    ])
    def test_bad_input(self, rig, observed, change, match):
        _, keypoints, confidences = observed
        with pytest.raises(ValueError, match=match):
            rig.triangulate(*change(keypoints, confidences))
        with pytest.raises(ValueError, match=match):
            rig.reprojection_errors(np.zeros(keypoints.shape[1:-1] + (3,)), *change(keypoints, confidences))

    @pytest.mark.parametrize("min_views", [1, 5, 2.0, True])
    def test_bad_min_views(self, rig, observed, min_views):
        _, keypoints, confidences = observed
        with pytest.raises(ValueError, match=r"min_views: expected an integer in \[2, 4\]"):
            rig.triangulate(keypoints, confidences, min_views=min_views)

    def test_a_pixel_the_lens_cannot_undistort_names_the_camera(self):
        calibration = make_calibration(0, distortion=np.tile([-2.0, 0.0, 0.0, 0.0, 0.0], (4, 1)))
        keypoints = (calibration.intrinsics[:, 2:] + 0.5 * calibration.intrinsics[:, :2])[:, None]  # beyond the fold
        with pytest.raises(ValueError, match="keypoints: camera 'cam0'"):
            calibration.triangulate(keypoints, np.ones((4, 1)))


class TestReprojectionErrors:
    def test_zero_on_exact_data_and_nan_where_missing(self, rig, observed):
        points, keypoints, confidences = observed
        conf = confidences.copy()
        conf[2, 1] = 0.0
        errors = rig.reprojection_errors(points, keypoints, conf)
        assert errors.shape == confidences.shape
        assert np.isnan(errors[2, 1]).all()
        np.testing.assert_allclose(np.delete(errors.reshape(4, -1), np.s_[17:34], axis=1)[2], 0.0, atol=1e-9)
        np.testing.assert_allclose(errors[[0, 1, 3]], 0.0, atol=1e-9)
        triangulated = rig.triangulate(keypoints, conf)
        assert np.nanmax(rig.reprojection_errors(triangulated, keypoints, conf)) < 1e-8

    def test_the_pixel_distance(self, rig, observed):
        points, keypoints, confidences = observed
        errors = rig.reprojection_errors(points, keypoints + np.array([3.0, -4.0]), confidences)
        np.testing.assert_allclose(errors, 5.0, rtol=1e-9)

    def test_nan_for_a_missing_point_or_one_behind_the_camera(self, rig, observed):
        points, keypoints, confidences = observed
        changed = points.copy()
        changed[0, 0] = np.nan
        changed[0, 1] = 2 * rig.centre[0] - points[0, 1]  # mirrored through camera 0's centre: behind it
        errors = rig.reprojection_errors(changed, keypoints, confidences)
        depth = np.einsum("cij,j->ci", rig.rotation, changed[0, 1])[:, 2] + rig.translation[:, 2]
        assert depth[0] < 0 and (depth > 0).any()
        assert np.isnan(errors[:, 0, 0]).all()
        np.testing.assert_array_equal(np.isnan(errors[:, 0, 1]), depth <= 0)
        assert np.isfinite(errors[:, 0, 2:]).all() and np.isfinite(errors[:, 1:]).all()
        with pytest.raises(ValueError, match=r"points3d: expected shape \(3, 17, 3\)"):
            rig.reprojection_errors(points[0], keypoints, confidences)
        with pytest.raises(ValueError, match="points3d: contains inf"):
            rig.reprojection_errors(np.full_like(points, np.inf), keypoints, confidences)


# --------------------------------------------------------------------------- files


def with_diagnostics(calibration: Calibration) -> Calibration:
    rng = np.random.default_rng(9)
    return dataclasses.replace(
        calibration,
        residuals={name: rng.uniform(0, 2, 40) for name in calibration.names[:3]},
        frames_used=np.arange(0, 40, 2),
        frames_rejected={1: "seen by one camera", 3: 'a "bad" frame'},
        metadata={"method": "rig", "subject_height_m": 1.75, "iterations": 12, "robust": True},
    )


class TestFiles:
    @pytest.mark.parametrize("seed, count", [(0, 2), (1, 3), (2, 5), (3, 8)])
    def test_anipose_round_trip_is_exact(self, tmp_path, seed, count):
        calibration = make_calibration(seed, count)
        path = write_calibration(tmp_path / "calibration.toml", calibration)
        assert path == tmp_path / "calibration.toml"
        again = read_calibration(path)
        assert_same_arrays(again, calibration)
        assert dict(again.metadata) == {"adjusted": False, "error": 0.0}
        write_calibration(tmp_path / "again.toml", again, format="anipose")
        assert (tmp_path / "again.toml").read_bytes() == path.read_bytes()

    def test_anipose_layout(self, tmp_path, rig):
        document = tomllib.loads(rig.save(tmp_path / "c.toml").read_text())
        assert list(document) == ["cam_0", "cam_1", "cam_2", "cam_3", "metadata"]
        camera = document["cam_2"]
        assert list(camera) == ["name", "size", "matrix", "distortions", "rotation", "translation"]
        fx, fy, cx, cy = rig.intrinsics[2]
        assert camera["matrix"] == [[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]
        assert camera["distortions"] == rig.distortion[2].tolist() and camera["name"] == "cam2"
        assert document["metadata"] == {"adjusted": False, "error": 0.0, "units": "m"}

    @pytest.mark.parametrize("seed, count", [(0, 2), (4, 4), (3, 8)])
    def test_pose2sim_round_trip_is_exact_in_metres_without_k3(self, tmp_path, seed, count):
        calibration = make_calibration(seed, count)
        distortion = calibration.distortion.copy()
        distortion[:, 4] = 0.0  # not -0.0: Pose2Sim's file has no k3, which reads back as +0.0
        calibration = dataclasses.replace(calibration, distortion=distortion)
        path = calibration.save(tmp_path / "Calib.toml", format="pose2sim")
        again = read_calibration(path)
        assert_same_arrays(again, calibration)
        assert dict(again.metadata) == {"adjusted": False, "error": 0.0}
        write_calibration(tmp_path / "again.toml", again, format="pose2sim")
        assert (tmp_path / "again.toml").read_bytes() == path.read_bytes()

    def test_pose2sim_layout_metres_and_k3(self, tmp_path, rig):
        mm = rig.in_units("mm")
        with pytest.warns(UserWarning, match="k3 of cam0, cam1, cam2, cam3 is dropped"):
            path = write_calibration(tmp_path / "Calib.toml", mm, format="pose2sim")
        document = tomllib.loads(path.read_text())
        assert list(document) == ["cam0", "cam1", "cam2", "cam3", "metadata"]
        assert list(document["cam1"]) == ["name", "size", "matrix", "distortions", "rotation", "translation",
                                          "fisheye"]
        assert document["cam1"]["fisheye"] is False and len(document["cam1"]["distortions"]) == 4
        assert document["metadata"] == {"adjusted": False, "error": 0.0, "units": "m"}
        again = read_calibration(path, format="pose2sim")
        assert again.units == "m"
        np.testing.assert_array_equal(again.translation, mm.in_units("m").translation)
        np.testing.assert_array_equal(again.distortion, rig.distortion * [1, 1, 1, 1, 0])
        with pytest.raises(ValueError, match="units: a Pose2Sim calibration is in metres"):
            write_calibration(tmp_path / "x.toml", dataclasses.replace(rig, units="unknown"), format="pose2sim")
        with pytest.raises(ValueError, match="names: Pose2Sim does not read a table named 'metadata'"):
            write_calibration(tmp_path / "x.toml", dataclasses.replace(rig, names=("a", "metadata", "b", "c")),
                              format="pose2sim")

    def test_extreme_floats_round_trip(self, tmp_path, rig):
        translation = np.array([[5e-324, -0.0, 1e16], [1.7976931348623157e308, -2.2250738585072014e-308, 1e-7],
                                [0.1, 1 / 3, 1e22], [-1e-310, 123456789.125, 6.02214076e23]])
        calibration = dataclasses.replace(rig, translation=translation, metadata={"tiny": 1e-300, "big": 2**63 - 1})
        again = read_calibration(calibration.save(tmp_path / "c.toml"))
        assert_same_arrays(again, calibration)
        assert again.metadata["tiny"] == 1e-300 and again.metadata["big"] == 2**63 - 1

    def test_units_and_unusual_names_round_trip(self, tmp_path):
        names = ('say "hi"', "back\\slash", "tab\there é ✓", "cam.1 [x]")
        for units in ("mm", "unknown"):
            calibration = make_calibration(5, units=units, names=names)
            for fmt in ("anipose", "pose2sim") if units == "mm" else ("anipose",):
                with pytest.warns(UserWarning) if fmt == "pose2sim" else contextlib.nullcontext():
                    path = calibration.save(tmp_path / f"{units}-{fmt}.toml", format=fmt)
                again = read_calibration(path)
                assert again.names == names
                assert again.units == ("m" if fmt == "pose2sim" else units)

    def test_diagnostics_are_summarised_in_metadata(self, tmp_path, rig):
        calibration = with_diagnostics(rig)
        path = calibration.save(tmp_path / "c.toml")
        median = float(np.median(np.concatenate(list(calibration.residuals.values()))))
        table = tomllib.loads(path.read_text())["metadata"]
        assert table == {"adjusted": True, "error": median, "units": "m", "frames_used": 20, "frames_rejected": 2,
                         "method": "rig", "subject_height_m": 1.75, "iterations": 12, "robust": True}
        again = read_calibration(path)
        assert again.residuals == {} and again.frames_used.size == 0 and again.frames_rejected == {}
        assert dict(again.metadata) == {key: value for key, value in table.items() if key != "units"}
        again.save(tmp_path / "again.toml")
        assert (tmp_path / "again.toml").read_bytes() == path.read_bytes()
        assert f"median residual {median:.3g} px (file)" in again.summary()

    def test_eleven_cameras_keep_their_order(self, tmp_path):
        first, second = make_calibration(6, 6), make_calibration(7, 5)
        calibration = Calibration(
            tuple(f"camera {c}" for c in range(11)),
            *(np.concatenate([getattr(first, name), getattr(second, name)]) for name in ARRAY_FIELDS))
        path = calibration.save(tmp_path / "c.toml")
        assert list(tomllib.loads(path.read_text()))[:3] == ["cam_00", "cam_01", "cam_02"]
        assert_same_arrays(read_calibration(path), calibration)

    def test_a_pose2sim_file_as_documented(self, tmp_path):
        # Pose2Sim's documented Calib.toml: a table per camera, its own spacing, four distortions,
        # fisheye = false, then [metadata]; cameras in file order
        path = tmp_path / "Calib_scene.toml"
        path.write_text(
            '[cam_2]\nname = "cam2"\nsize = [ 1088.0, 1920.0]\n'
            'matrix = [ [ 1677.5, 0.0, 540.25], [ 0.0, 1676.125, 955.5], [ 0.0, 0.0, 1.0]]\n'
            'distortions = [ -0.0123, 0.0456, 1.5e-05, -2.5e-06]\n'
            'rotation = [ 1.25, 1.0625, -0.375]\ntranslation = [ 0.3125, 0.96875, 2.875]\nfisheye = false\n\n'
            '[int_cam01_img]\nsize = [ 1088.0, 1920.0]\n'
            'matrix = [ [ 1681.0, 0.0, 533.0], [ 0.0, 1681.5, 948.0], [ 0.0, 0.0, 1.0]]\n'
            'distortions = [ -0.0007, 0.0022, 9.5e-06, 1.078125e-05]\n'
            'rotation = [ 1.5, -1.0, 0.5]\ntranslation = [ -0.11, 0.77, 3.06]\nfisheye = false\n\n'
            '[metadata]\nadjusted = false\nerror = 0.0\n')
        calibration = read_calibration(path)
        assert calibration.names == ("cam2", "int_cam01_img") and calibration.units == "m"
        np.testing.assert_array_equal(calibration.intrinsics, [[1677.5, 1676.125, 540.25, 955.5],
                                                               [1681.0, 1681.5, 533.0, 948.0]])
        np.testing.assert_array_equal(calibration.distortion[0], [-0.0123, 0.0456, 1.5e-05, -2.5e-06, 0.0])
        np.testing.assert_array_equal(calibration.image_size, [[1088.0, 1920.0]] * 2)
        np.testing.assert_array_equal(calibration.rotation_vector[1], [1.5, -1.0, 0.5])
        np.testing.assert_array_equal(calibration.translation[0], [0.3125, 0.96875, 2.875])
        assert dict(calibration.metadata) == {"adjusted": False, "error": 0.0}

    def test_pose2sim_skips_the_tables_it_skips(self, tmp_path, rig):
        with pytest.warns(UserWarning):
            path = rig.save(tmp_path / "c.toml", format="pose2sim")
        text = "top = 1\n[checkerboard]\nsquare_size = 0.06\n" + path.read_text() + "\n[capture_volume]\nx = 1\n"
        path.write_text(text)
        assert read_calibration(path).names == rig.names


class TestAniposelib:
    """aniposelib reads our files and triangulates as we do; we read what it writes."""

    @pytest.fixture(autouse=True)
    def _needs_aniposelib(self):
        pytest.importorskip("aniposelib")

    def test_camera_group_load_reads_our_file(self, tmp_path):
        from aniposelib.cameras import CameraGroup

        names = ('left "A"', "right\\B", "top é", "d", "e", "f", "g", "h", "i", "j", "k")
        first, second = make_calibration(8, 6), make_calibration(9, 5)
        calibration = with_diagnostics(Calibration(
            names, *(np.concatenate([getattr(first, name), getattr(second, name)]) for name in ARRAY_FIELDS)))
        group = CameraGroup.load(str(calibration.save(tmp_path / "c.toml")))
        assert group.get_names() == list(names)  # eleven cameras, in order
        for c, camera in enumerate(group.cameras):
            np.testing.assert_array_equal(camera.get_camera_matrix(), calibration.matrix[c])
            np.testing.assert_array_equal(camera.get_distortions(), calibration.distortion[c])
            np.testing.assert_array_equal(camera.get_rotation(), calibration.rotation_vector[c])
            np.testing.assert_array_equal(camera.get_translation(), calibration.translation[c])
            assert list(camera.get_size()) == calibration.image_size[c].tolist()
        assert group.metadata["adjusted"] is True and group.metadata["units"] == "m"
        assert group.metadata["method"] == "rig"

    def test_its_triangulation_agrees_with_ours(self, tmp_path, rig, observed):
        from aniposelib.cameras import CameraGroup

        points, keypoints, confidences = observed
        group = CameraGroup.load(str(rig.save(tmp_path / "c.toml")))
        theirs = np.asarray(group.triangulate(keypoints.reshape(4, -1, 2), undistort=True)).reshape(points.shape)
        ours = rig.triangulate(keypoints, confidences)
        np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-6)  # metres
        np.testing.assert_allclose(theirs, points, rtol=0, atol=1e-6)
        np.testing.assert_allclose(ours, points, rtol=0, atol=1e-12)

    def test_we_read_its_dump(self, tmp_path, rig):
        from aniposelib.cameras import Camera, CameraGroup

        cameras = [Camera(matrix=rig.matrix[c], dist=rig.distortion[c], size=[1920, 1080],
                          rvec=rig.rotation_vector[c], tvec=rig.translation[c], name=name)
                   for c, name in enumerate(rig.names)]
        group = CameraGroup(cameras, metadata={"adjusted": True, "error": 0.75})
        group.dump(str(tmp_path / "dumped.toml"))
        calibration = read_calibration(tmp_path / "dumped.toml")
        assert_same_arrays(calibration, dataclasses.replace(rig, image_size=[[1920, 1080]] * 4, units="unknown"))
        assert dict(calibration.metadata) == {"adjusted": True, "error": 0.75}
        CameraGroup([cam.copy() for cam in cameras]).dump(str(tmp_path / "bare.toml"))  # an empty [metadata]
        assert read_calibration(tmp_path / "bare.toml", format="anipose").metadata == {}


# --------------------------------------------------------------------------- bad files


def _edit(text: str, old: str, new: str, count: int = 1) -> str:
    assert old in text, old
    return text.replace(old, new, count)


def _edit_in(text: str, section: str, old: str, new: str) -> str:
    """``_edit`` within the table ``[section]`` only."""
    head, tail = text.split(f"[{section}]\n")
    body, rest = tail.split("\n\n", 1)
    return f"{head}[{section}]\n{_edit(body, old, new)}\n\n{rest}"


BAD_ANIPOSE = [
    (lambda t: _edit(t, "[metadata]", "[metadata"), None, "not valid TOML"),
    (lambda t: _edit_in(t, "cam_1", "matrix = ", "matrix_ = "), "cam_1.matrix", "missing"),
    (lambda t: _edit(t, "size = [1920.0, 1080.0]", "size = [1920.0, 1080.0, 3.0]"), "cam_0.size", "expected"),
    (lambda t: _edit(t, "size = [1920.0, 1080.0]", "size = [true, 1080.0]"), "cam_0.size", "expected"),
    (lambda t: _edit(t, "rotation = [", "rotation = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]\nx = ["),
     "cam_0.rotation", "Rodrigues"),
    (lambda t: _edit(t, "distortions = [", "distortions = [0.0, "), "cam_0.distortions", "4 or 5 numbers"),
    (lambda t: _edit(t, "translation = [", 'translation = ["0.5", '), "cam_0.translation", "expected 3 numbers"),
    (lambda t: _edit(t, "translation = [", "translation = [nan, "), "cam_0.translation", "finite"),
    (lambda t: _edit(t, ", 0.0, 1.0]]", ", 0.5, 1.0]]"), "cam_0.matrix", "no skew"),
    (lambda t: _edit(t, "[[", "[[2.0, 3.0], ["), "cam_0.matrix", "3x3"),
    (lambda t: _edit(t, 'name = "cam0"\n', 'name = "cam0"\nfisheye = true\n'), "cam_0.fisheye", "not supported"),
    (lambda t: _edit(t, 'name = "cam0"\n', ""), "cam_0.name", "missing"),
    (lambda t: _edit(t, 'name = "cam0"', "name = 7"), "cam_0.name", "non-empty string"),
    (lambda t: _edit(t, 'name = "cam1"', 'name = "cam0"'), "names", "distinct"),
    (lambda t: _edit(t, "[[1", "[[-1"), "intrinsics", "focal"),
    (lambda t: t.split("[cam_1]")[0] + "[metadata]\n", None, "at least two camera tables"),
    (lambda t: t + "[metadata.more]\na = 1\n", "metadata.more", "not read: dict"),
    (lambda t: _edit(t, 'units = "m"', 'units = "cm"'), "metadata.units", "expected one of"),
    (lambda t: _edit(t, "error = 0.0", "error = -1.0"), "metadata.error", ">= 0"),
    (lambda t: _edit(t, "error = 0.0", "error = inf"), "metadata.error", "finite"),
    (lambda t: "metadata = 3\n" + t.split("[metadata]")[0], "metadata", "expected a table"),
    (lambda t: "stray = 3\n" + t, "stray", "format="),
    (lambda t: "[metadata]\n", None, "no camera tables"),
    (lambda t: "", None, "empty file"),
]


class TestBadFiles:
    @pytest.fixture
    def anipose_text(self, tmp_path, rig) -> str:
        calibration = dataclasses.replace(rig, image_size=[[1920.0, 1080.0]] * 4,
                                          intrinsics=rig.intrinsics * [0, 1, 1, 1] + [1, 0, 0, 0])
        return calibration.save(tmp_path / "good.toml").read_text()

    @pytest.mark.parametrize("edit, key, problem", BAD_ANIPOSE)
    def test_anipose(self, tmp_path, anipose_text, edit, key, problem):
        path = tmp_path / "bad.toml"
        path.write_text(edit(anipose_text))
        with pytest.raises(ValueError) as caught:
            read_calibration(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: ") and problem in message, message
        if key is not None:
            assert key in message, message

    def test_explicit_anipose_format_with_a_stray_key(self, tmp_path, anipose_text):
        path = tmp_path / "bad.toml"
        path.write_text("stray = 3\n" + anipose_text)
        with pytest.raises(ValueError, match=f"{path}: stray: expected a table of camera parameters"):
            read_calibration(path, format="anipose")

    def test_pose2sim(self, tmp_path, rig):
        with pytest.warns(UserWarning):
            text = rig.save(tmp_path / "good.toml", format="pose2sim").read_text()
        path = tmp_path / "bad.toml"
        for edit, key, problem in [
            (lambda t: _edit(t, 'units = "m"', 'units = "mm"'), "metadata.units", "in metres"),
            (lambda t: _edit(t, "fisheye = false", "fisheye = 0"), "cam0.fisheye", "true or false"),
            (lambda t: _edit(t, "rotation = ", "rotations = "), "cam0.rotation", "missing"),
        ]:
            path.write_text(edit(text))
            with pytest.raises(ValueError) as caught:
                read_calibration(path)
            message = str(caught.value)
            assert message.startswith(f"{path}: ") and key in message and problem in message, message

    def test_not_a_file_not_utf8_and_bad_arguments(self, tmp_path, rig):
        with pytest.raises(ValueError, match="no such file"):
            read_calibration(tmp_path / "absent.toml")
        with pytest.raises(ValueError, match="no such file"):
            read_calibration(tmp_path)
        path = tmp_path / "latin1.toml"
        path.write_bytes('[cam_0]\nname = "café"\n'.encode("latin-1"))
        with pytest.raises(ValueError, match=f"{path}: not a UTF-8 text file"):
            read_calibration(path)
        with pytest.raises(ValueError, match="format: expected one of"):
            read_calibration(path, format="opencv")
        with pytest.raises(ValueError, match="format: expected one of"):
            write_calibration(tmp_path / "x.toml", rig, format="json")
        with pytest.raises(ValueError, match="calibration: expected a Calibration"):
            write_calibration(tmp_path / "x.toml", rig.cameras)
        with pytest.raises(ValueError, match="names: .* cannot be written as UTF-8"):
            dataclasses.replace(rig, names=("\udc80", "b", "c", "d"))


def test_exported():
    assert mg.io.Calibration is Calibration
    assert mg.io.read_calibration is read_calibration and mg.io.write_calibration is write_calibration
    assert {"Calibration", "read_calibration", "write_calibration"} <= set(mg.io.__all__)
    assert Path(mg.io.calibration.__file__).name == "calibration.py"
