"""Perspective upgrade pieces (metapose_geom.rig.perspective): the optical-axis rotations, the
linear start, and the bundle adjustment against exact synthetic rigs."""

import numpy as np
import pytest

from metapose_geom.geometry import PerspectiveCameras, project_perspective, rodrigues_to_matrix
from metapose_geom.rig.averaging import rotation_angles
from metapose_geom.rig.perspective import bundle_adjust, initial_translations, towards
from metapose_geom.synth import sample_cameras, sample_pose


def test_towards_turns_the_optical_axis_onto_the_direction():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=(20, 3))
    direction[:, 2] = np.abs(direction[:, 2]) + 0.1
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    rotation = towards(direction)
    np.testing.assert_allclose(rotation[:, :, 2], direction, atol=1e-12)
    # the smallest such rotation: its axis is perpendicular to both
    angle = rotation_angles(rotation)
    np.testing.assert_allclose(angle, np.arccos(direction[:, 2]), atol=1e-9)
    np.testing.assert_allclose(towards(np.array([0.0, 0.0, 1.0])), np.eye(3), atol=1e-15)


def test_initial_translations_solve_the_exact_linear_problem():
    rng = np.random.default_rng(1)
    rotation = rodrigues_to_matrix(rng.normal(size=(3, 3)))
    translation = rng.normal(size=(3, 3))
    positions = rng.normal(size=(6, 3))
    positions -= positions.mean(axis=0)
    seen = np.einsum("cab,fb->fca", rotation, positions) + translation[None]
    used = np.ones((6, 3), dtype=bool)
    used[0, 1] = False
    garbage = seen.copy()
    garbage[0, 1] = 1e6
    found_t, found_p = initial_translations(rotation, garbage, used)
    np.testing.assert_allclose(found_t, translation, atol=1e-8)
    np.testing.assert_allclose(found_p, positions, atol=1e-8)


def exact_rig(seed=2, cameras=4, frames=12, radial=True):
    rng = np.random.default_rng(seed)
    poses = []
    for _ in range(frames):
        pose = sample_pose(rng)
        poses.append(pose + np.array([rng.uniform(-600, 600), 0.0, rng.uniform(-600, 600)]))
    rig = sample_cameras(rng, poses[0], cameras, distance=(4000.0, 5000.0))
    distortion = rig.distortion.copy()
    if radial:
        distortion[:, 2:] = 0.0
    intrinsics = rig.intrinsics.copy()
    intrinsics[:, 1] = intrinsics[:, 0]  # one focal length, as the adjustment models
    rig = PerspectiveCameras(rig.rotation, rig.translation, intrinsics, distortion, rig.image_size)
    points = np.stack(poses)  # (F, J, 3) mm
    keypoints = np.stack([project_perspective(points, np.repeat(rig.rotation[c][None], frames, 0),
                                              np.repeat(rig.translation[c][None], frames, 0),
                                              np.repeat(rig.intrinsics[c][None], frames, 0),
                                              np.repeat(rig.distortion[c][None], frames, 0)) for c in range(cameras)])
    return rig, points, keypoints


def perturbed(rig, rng, degrees=2.0, shift=80.0, focal=1.0, radial_unknown=False):
    """The rig turned by about ``degrees`` per camera, moved by ``shift`` mm, its focal lengths times
    ``focal``; ``radial_unknown``: k1 = k2 = 0 (to be found)."""
    turn = rodrigues_to_matrix(np.radians(degrees) * rng.normal(size=(rig.num_cameras, 3)) / np.sqrt(3))
    intrinsics = rig.intrinsics.copy()
    intrinsics[:, :2] *= focal
    distortion = rig.distortion.copy()
    if radial_unknown:
        distortion[:, :2] = 0.0
    return PerspectiveCameras(turn @ rig.rotation, rig.translation + rng.normal(0, shift, rig.translation.shape),
                              intrinsics, distortion, rig.image_size)


def test_bundle_adjustment_recovers_exact_extrinsics():
    rig, points, keypoints = exact_rig()
    rng = np.random.default_rng(3)
    start = perturbed(rig, rng)
    noisy_points = points + rng.normal(0, 30.0, points.shape)
    weights = np.ones(keypoints.shape[:3])
    result = bundle_adjust(start, noisy_points, keypoints, weights, free=("rotation", "translation"),
                           robust_scale=5.0, fixed_cameras=(0,))
    assert np.nanmax(result.residuals) < 1e-4
    camera0 = PerspectiveCameras(*(np.asarray(part) for part in result.cameras))
    # a world rotation G gives R_c G for every camera: R_c R_0^T is free of it
    relative = rig.rotation @ rig.rotation[0].T
    found = camera0.rotation @ camera0.rotation[0].T
    assert np.degrees(rotation_angles(np.swapaxes(found, -1, -2) @ relative)).max() < 1e-4


def test_bundle_adjustment_recovers_focal_and_radial_distortion_in_stages():
    rig, points, keypoints = exact_rig(seed=4, frames=20)
    rng = np.random.default_rng(5)
    start = perturbed(rig, rng, degrees=1.0, shift=40.0, focal=1.1, radial_unknown=True)
    weights = np.ones(keypoints.shape[:3])
    cameras, current = start, points + rng.normal(0, 20.0, points.shape)
    for free in (("rotation", "translation"), ("rotation", "translation", "focal"),
                 ("rotation", "translation", "focal", "k1", "k2")):
        result = bundle_adjust(cameras, current, keypoints, weights, free=free, robust_scale=5.0, max_iterations=200)
        cameras, current = result.cameras, result.points
    assert np.nanmax(result.residuals) < 1e-3
    np.testing.assert_allclose(cameras.intrinsics[:, 0], rig.intrinsics[:, 0], rtol=1e-4)
    np.testing.assert_allclose(cameras.distortion[:, :2], rig.distortion[:, :2], atol=1e-3)


def test_robust_loss_keeps_a_few_wild_keypoints_from_moving_the_cameras():
    rig, points, keypoints = exact_rig(seed=6, frames=20)
    rng = np.random.default_rng(7)
    wild = keypoints.copy()
    bad = rng.uniform(size=wild.shape[:3]) < 0.03
    wild[bad] += rng.uniform(-300, 300, (int(bad.sum()), 2))
    weights = np.ones(keypoints.shape[:3])
    start = perturbed(rig, rng, degrees=1.0, shift=40.0)
    result = bundle_adjust(start, points, wild, weights, free=("rotation", "translation"), robust_scale=3.0,
                           fixed_cameras=(0,), max_iterations=200)
    relative = rig.rotation @ rig.rotation[0].T
    found = result.cameras.rotation @ result.cameras.rotation[0].T
    assert np.degrees(rotation_angles(np.swapaxes(found, -1, -2) @ relative)).max() < 0.05
    assert np.nanmedian(result.residuals[~bad]) < 0.1


def test_points_seen_once_are_left_out_and_zero_weights_ignore_garbage():
    rig, points, keypoints = exact_rig(seed=8, frames=6)
    weights = np.ones(keypoints.shape[:3])
    weights[1:, 0, 0] = 0.0  # frame 0's pelvis only in camera 0
    keypoints = keypoints.copy()
    keypoints[1:, 0, 0] = np.nan
    result = bundle_adjust(rig, points, np.nan_to_num(keypoints), weights, free=("rotation", "translation"))
    assert np.isnan(result.points[0, 0]).all()
    assert np.isfinite(result.points[1:]).all()
    with pytest.raises(ValueError, match="free"):
        bundle_adjust(rig, points, keypoints, weights, free=("skew",))


def test_bad_arguments_are_named():
    rig, points, keypoints = exact_rig(seed=10, frames=3)
    weights = np.ones(keypoints.shape[:3])
    with pytest.raises(ValueError, match="weights: no point is seen"):
        bundle_adjust(rig, points, keypoints, np.zeros_like(weights))
    bad = weights.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="weights: expected finite"):
        bundle_adjust(rig, points, keypoints, bad)
    wild = keypoints.copy()
    wild[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="keypoints: NaN or inf where the weight is > 0"):
        bundle_adjust(rig, points, wild, weights)
    with pytest.raises(ValueError, match="points: expected shape"):
        bundle_adjust(rig, points[:, :5], keypoints, weights)
    behind = points.copy()
    behind[0, 0] = -1e5 * rig.rotation[0, 2] + points[0, 0]  # far behind camera 0
    behind[0, 0] = -np.einsum("ba,b->a", rig.rotation[0], rig.translation[0]) - 100.0 * rig.rotation[0, 2]
    with pytest.raises(ValueError, match="behind a camera"):
        bundle_adjust(rig, behind, keypoints, weights)
    with pytest.raises(ValueError, match="fixed_cameras"):
        bundle_adjust(rig, points, keypoints, weights, fixed_cameras=(9,))
