"""calibrate: a fixed rig from the person it filmed, end to end on synthetic rigs (exact and noisy),
with its bad inputs, its files and its command."""

import dataclasses
import warnings

import numpy as np
import pytest

import metapose_geom as mg
from metapose_geom.evaluation.calibration import compare_cameras
from metapose_geom.io import Calibration, read_calibration
from metapose_geom.rig.pipeline import ANKLE_HEIGHT


@pytest.fixture(scope="module")
def exact():
    """60 noise-free frames through an ideal rig (square pixels, centred principal point) with
    radial distortion: what the camera model can represent exactly."""
    return mg.synth.make_rig_sequence(3, num_cameras=4, frames=60, pixel_noise=0.0, occlusion_rate=0.0,
                                      confusion_rate=0.0, distortion="radial", intrinsics="ideal")


@pytest.fixture(scope="module")
def noisy():
    """80 frames a third of a second apart (a whole loop of the walk: the depth varies, so the focal
    lengths are observable), noise, 5% of the views swapped left for right and 10% empty."""
    return mg.synth.make_rig_sequence(5, num_cameras=3, frames=80, fps=3.0, intrinsics="ideal", swap_rate=0.05,
                                      dropout_rate=0.1)


def centres_mm(calibration):
    return calibration.in_units("mm").centre


def test_exact_keypoints_give_the_exact_rig(exact):
    names = exact.camera_names
    truth_centres = exact.cameras.centres
    metres = float(np.linalg.norm(truth_centres[0] - truth_centres[2])) / 1000.0
    calibration = mg.calibrate(exact.capture(), camera_distance=(names[0], names[2], metres), distortion="k1k2",
                               progress=False)
    errors = compare_cameras(calibration.in_units("mm").cameras, exact.cameras)
    assert errors.rotation_deg.max() < 1e-4
    assert np.abs(errors.focal_percent).max() < 1e-4
    assert errors.centre.max() < 0.05  # mm
    np.testing.assert_allclose(calibration.distortion[:, :2], exact.cameras.distortion[:, :2], atol=1e-5)
    # the metric scale from the known distance: centres equal the truth's after a rigid motion
    fit = mg.geometry.procrustes(centres_mm(calibration), truth_centres)
    np.testing.assert_allclose(fit.scale, 1.0, rtol=1e-6)
    assert max(np.median(errors) for errors in calibration.residuals.values()) < 1e-3
    assert calibration.units == "m" and len(calibration.frames_used) == 60 and not calibration.frames_rejected


def test_the_world_is_the_floor_with_z_up(exact):
    calibration = mg.calibrate(exact.capture(), subject_height=1.75, distortion="k1k2", progress=False)
    points = calibration.triangulate(*exact.capture().joints)
    # the truth's up is +y (mm, ground at y = 0): our z axis is the same direction
    truth_up_in_camera = exact.cameras.rotation @ np.array([0.0, 1.0, 0.0])
    ours_up_in_camera = calibration.rotation @ np.array([0.0, 0.0, 1.0])
    angle = np.degrees(np.arccos(np.clip((truth_up_in_camera * ours_up_in_camera).sum(axis=1), -1, 1)))
    assert angle.max() < 0.5  # the plane through the foot contacts
    ankles = points[:, [3, 6], 2]
    assert abs(np.percentile(ankles, 5) - ANKLE_HEIGHT * 1.75) < 1e-6
    pelvis = np.median(points[:, 0], axis=0)
    np.testing.assert_allclose(pelvis[:2], 0.0, atol=1e-9)
    assert 0.6 < pelvis[2] < 1.2  # metres: a standing adult's pelvis


def test_noisy_rig_with_swaps_and_dropouts(noisy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the assumed subject height
        calibration = mg.calibrate(noisy.capture(), progress=False)
    errors = compare_cameras(calibration.in_units("mm").cameras, noisy.cameras)
    assert errors.rotation_deg.max() < 0.5
    assert np.abs(errors.focal_percent).max() < 5.0  # 3 cameras, 80 frames: see docs/calibration for 200
    assert calibration.metadata["scale_from"] == "subject_height (assumed)"
    assert sum(len(errors) for errors in calibration.residuals.values()) > 0.8 * 3 * 80 * 17 * 0.9 * 0.8


def test_known_intrinsics_solve_the_extrinsics_only(noisy, tmp_path):
    cameras = noisy.cameras
    given = Calibration(names=noisy.camera_names, image_size=cameras.image_size,
                        rotation_vector=np.zeros((3, 3)), translation=np.zeros((3, 3)) + [0, 0, 1],
                        intrinsics=cameras.intrinsics, distortion=cameras.distortion, units="m")
    path = given.save(tmp_path / "intrinsics.toml")
    calibration = mg.calibrate(noisy.capture(), subject_height=1.7, intrinsics=path, progress=False)
    np.testing.assert_array_equal(calibration.intrinsics, cameras.intrinsics)
    np.testing.assert_array_equal(calibration.distortion, cameras.distortion)
    assert compare_cameras(calibration.cameras, cameras).rotation_deg.max() < 0.3
    assert calibration.metadata["distortion"] == "given"


def test_the_files_it_writes_are_read_by_aniposelib(noisy, tmp_path):
    from metapose_geom.anipose import require_aniposelib

    cameras = require_aniposelib()
    calibration = mg.calibrate(noisy.capture(), subject_height=1.7, progress=False)
    for form in ("anipose", "pose2sim"):
        path = calibration.save(tmp_path / f"{form}.toml", format=form)
        again = read_calibration(path)
        np.testing.assert_array_equal(again.rotation_vector, calibration.rotation_vector)
        np.testing.assert_array_equal(again.translation, calibration.translation)
    group = cameras.CameraGroup.load(str(tmp_path / "anipose.toml"))
    points = calibration.triangulate(*noisy.capture().joints)[:10].reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1)]
    theirs = np.asarray(group.project(points), dtype=np.float64)  # (C, N, 2), their camera model
    np.testing.assert_allclose(theirs, calibration.project(points), atol=1e-6)


def capture_of(sequence, **changes):
    return dataclasses.replace(sequence.capture(), **changes)


def test_bad_inputs_get_clear_errors(noisy):
    capture = noisy.capture()
    with pytest.raises(ValueError, match="capture: expected a metapose_geom.io.Capture"):
        mg.calibrate(noisy.keypoints, progress=False)
    with pytest.raises(ValueError, match="at least two cameras"):
        mg.io.Capture(noisy.keypoints[:1], noisy.confidences[:1], "h36m17")
    with pytest.raises(ValueError, match="subject_height"):
        mg.calibrate(capture, subject_height=-1.0, progress=False)
    with pytest.raises(ValueError, match="subject_height"):
        mg.calibrate(capture, subject_height=0.0, progress=False)
    with pytest.raises(ValueError, match="camera_distance: no camera named 'nope'"):
        mg.calibrate(capture, camera_distance=("nope", noisy.camera_names[0], 2.0), progress=False)
    with pytest.raises(ValueError, match="distortion"):
        mg.calibrate(capture, distortion="k7", progress=False)
    with pytest.raises(ValueError, match="image_size"):
        mg.calibrate(capture_of(noisy, image_size=None), subject_height=1.7, progress=False)
    zero = capture_of(noisy, confidences=np.zeros_like(noisy.confidences))
    with pytest.raises(ValueError, match="no frame could be solved"):
        mg.calibrate(zero, subject_height=1.7, progress=False)
    alone = np.zeros_like(noisy.confidences)  # every frame seen by one camera only, in turn
    for f in range(alone.shape[1]):
        alone[f % 3, f] = noisy.confidences[f % 3, f]
    with pytest.raises(ValueError, match="no frame could be solved"):
        mg.calibrate(capture_of(noisy, confidences=alone), subject_height=1.7, progress=False)


@pytest.fixture(scope="module")
def capture_npz(tmp_path_factory, noisy):
    path = tmp_path_factory.mktemp("calibrate") / "rig.npz"
    keypoints = np.nan_to_num(noisy.keypoints)
    np.savez(path, keypoints=keypoints, confidences=noisy.confidences, mono3d=np.nan_to_num(noisy.mono3d),
             skeleton="h36m17", camera_names=np.array(noisy.camera_names), image_size=noisy.cameras.image_size,
             fps=noisy.fps)
    return path


@pytest.mark.parametrize("form", ["anipose", "pose2sim"])
def test_the_command_writes_the_calibration_and_its_figure(capture_npz, noisy, tmp_path, form, capsys):
    from metapose_geom import cli

    out = tmp_path / "calib.toml"
    code = cli.main(["calibrate", str(capture_npz), "--out", str(out), "--format", form, "--subject-height", "1.7",
                     "--no-progress"])
    assert code == 0, capsys.readouterr().err
    calibration = read_calibration(out)
    assert calibration.names == noisy.camera_names and calibration.units == "m"
    assert compare_cameras(calibration.cameras, noisy.cameras).rotation_deg.max() < 0.5
    figure = out.with_suffix(".png")
    assert figure.stat().st_size > 20_000
    printed = capsys.readouterr().out
    assert "frames used" in printed and str(out) in printed


@pytest.mark.parametrize("argv, message", [
    (["--out", "{tmp}/calib.txt"], "expected a .toml file name"),
    (["--out", "{tmp}/missing/calib.toml"], "does not exist"),
    (["--out", "{tmp}/calib.toml", "--subject-height", "0"], "subject_height"),
    (["--out", "{tmp}/calib.toml", "--camera-distance", "cam0", "cam9", "2"], "no camera named 'cam9'"),
    (["--out", "{tmp}/calib.toml", "--camera-distance", "cam0", "cam1", "far"], "--camera-distance"),
    (["--out", "{tmp}/calib.toml", "--intrinsics", "{tmp}/none.toml"], "none.toml"),
])
def test_the_command_refuses_bad_arguments_in_one_line(capture_npz, tmp_path, argv, message, capsys):
    from metapose_geom import cli

    argv = [part.format(tmp=tmp_path) for part in argv]
    assert cli.main(["calibrate", str(capture_npz), *argv, "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "calib.toml").exists()


def test_a_failed_run_leaves_an_existing_file_alone(capture_npz, tmp_path, capsys):
    from metapose_geom import cli

    out = tmp_path / "calib.toml"
    out.write_text("# an earlier calibration\n")
    assert cli.main(["calibrate", str(capture_npz), "--out", str(out), "--subject-height", "0", "--no-progress"]) == 2
    assert out.read_text() == "# an earlier calibration\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.toml"]


def test_known_intrinsics_are_kept_exactly_even_with_unequal_focal_lengths():
    sequence = mg.synth.make_rig_sequence(9, num_cameras=3, frames=60, fps=3.0)  # drawn: fy != fx, off-centre
    cameras = sequence.cameras
    assert (cameras.intrinsics[:, 0] != cameras.intrinsics[:, 1]).all()
    calibration = mg.calibrate(sequence.capture(), subject_height=1.7, intrinsics=cameras, progress=False)
    np.testing.assert_array_equal(calibration.intrinsics, cameras.intrinsics)
    np.testing.assert_array_equal(calibration.distortion, cameras.distortion)
    assert compare_cameras(calibration.cameras, cameras).rotation_deg.max() < 0.3


def test_intrinsics_that_do_not_fit_the_capture_are_refused(noisy):
    capture = noisy.capture()
    cameras = noisy.cameras
    half = mg.PerspectiveCameras(cameras.rotation, cameras.translation, cameras.intrinsics / 2, cameras.distortion,
                                 cameras.image_size / 2)
    with pytest.raises(ValueError, match="intrinsics: image sizes"):
        mg.calibrate(capture, subject_height=1.7, intrinsics=half, progress=False)
    with pytest.raises(ValueError, match="distortion: not used with known intrinsics"):
        mg.calibrate(capture, subject_height=1.7, intrinsics=cameras, distortion="k1", progress=False)


def test_a_camera_that_never_sees_the_person_is_named(noisy):
    confidences = noisy.confidences.copy()
    confidences[2] = 0.0
    with pytest.raises(ValueError, match=r"camera\(s\) \['cam2'\]"):
        mg.calibrate(capture_of(noisy, confidences=confidences), subject_height=1.7, progress=False)


def test_the_scores_do_not_see_the_world_frame(noisy):
    from metapose_geom.geometry import rodrigues_to_matrix

    cameras = noisy.cameras
    turn = rodrigues_to_matrix(np.array([0.3, -1.2, 0.5]))
    scale, shift = 1e-3, np.array([4.0, -2.0, 7.0])  # mm -> m, and moved: X' = s G^T X + o
    moved = mg.PerspectiveCameras(cameras.rotation @ turn, cameras.translation * scale
                                  - np.einsum("cab,b->ca", cameras.rotation @ turn, shift), cameras.intrinsics,
                                  cameras.distortion, cameras.image_size)
    errors = compare_cameras(moved, cameras)
    assert errors.rotation_deg.max() < 1e-6 and errors.centre.max() < 1e-6
    np.testing.assert_allclose(errors.focal_percent, 0.0, atol=1e-12)
    bent = mg.PerspectiveCameras(rodrigues_to_matrix(np.array([0.0, np.radians(2.0), 0.0]))[None] @ cameras.rotation,
                                 cameras.translation, cameras.intrinsics * 1.05, cameras.distortion,
                                 cameras.image_size)
    errors = compare_cameras(bent, cameras)
    np.testing.assert_allclose(errors.focal_percent, 5.0, rtol=1e-9)
    assert 0.0 < errors.rotation_deg.max() <= 2.0 + 1e-9  # each turned by 2 degrees, less the common part


def test_max_frames_spreads_the_frames_used_over_the_capture(noisy):
    calibration = mg.calibrate(noisy.capture(), subject_height=1.7, max_frames=20, progress=False)
    used = calibration.frames_used
    assert 15 <= len(used) <= 20 and used[0] < 8 and used[-1] > 70
    with pytest.raises(ValueError, match="max_frames"):
        mg.calibrate(noisy.capture(), subject_height=1.7, max_frames=3, progress=False)


def test_two_cameras_without_intrinsics_are_warned_of(noisy):
    pair = capture_of(noisy, keypoints=noisy.keypoints[:2], confidences=noisy.confidences[:2],
                      mono3d=noisy.mono3d[:2], camera_names=noisy.camera_names[:2],
                      image_size=noisy.cameras.image_size[:2])
    with pytest.warns(UserWarning, match="with two cameras the focal lengths are weakly determined"):
        mg.calibrate(pair, subject_height=1.7, progress=False)
